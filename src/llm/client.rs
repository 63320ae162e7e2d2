//! The chat client: any OpenAI-compatible API through async-openai (requests and responses as
//! JSON, read tolerantly so servers that omit fields do not break the agent), retries with
//! backoff on 429 and 5xx, token and dollar accounting per request, and a hard budget.

use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::models::lookup;

/// Errors talking to a model.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("model API answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot reach the model API at {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("the model API's answer is unusable: {0}")]
    BadResponse(String),
    #[error("budget exhausted: ${spent:.4} spent of ${limit:.4}")]
    BudgetExceeded { spent: f64, limit: f64 },
}

impl LlmError {
    /// Worth trying again: rate limits, server errors, connection trouble.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Api { status, .. } => *status == 429 || *status >= 500,
            LlmError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// The API used when a key is set but no base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How to reach a model.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Base URL of the API, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8642/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Model id (aliases already resolved).
    pub model: String,
    /// Attempts per request (the first included).
    pub max_attempts: u32,
    /// First retry delay; doubles each time.
    pub backoff: Duration,
    pub temperature: Option<f32>,
    /// Sampling seed sent with every request (servers that honour it repeat their answers).
    pub seed: Option<u64>,
    pub max_tokens: Option<u32>,
}

impl LlmConfig {
    pub fn new(base_url: &str, model: &str) -> LlmConfig {
        LlmConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: None,
            model: model.to_owned(),
            max_attempts: 5,
            backoff: Duration::from_millis(500),
            temperature: None,
            seed: None,
            max_tokens: None,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Message {
        Message::plain("system", text)
    }
    pub fn user(text: impl Into<String>) -> Message {
        Message::plain("user", text)
    }
    pub fn assistant(text: impl Into<String>) -> Message {
        Message::plain("assistant", text)
    }
    pub fn tool(call_id: &str, text: impl Into<String>) -> Message {
        Message {
            tool_call_id: Some(call_id.to_owned()),
            ..Message::plain("tool", text)
        }
    }
    fn plain(role: &str, text: impl Into<String>) -> Message {
        Message {
            role: role.to_owned(),
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    fn to_api(&self) -> Value {
        let mut m = json!({"role": self.role, "content": self.content});
        if !self.tool_calls.is_empty() {
            m["tool_calls"] = self
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
        }
        if let Some(id) = &self.tool_call_id {
            m["tool_call_id"] = json!(id);
        }
        m
    }
}

/// A tool call the model asked for. `arguments` is the raw JSON text the model wrote (it may
/// be malformed; the agent answers that with an error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

/// Tokens of one or more requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when the server reported no usage and tokens were estimated (4 chars a token).
    pub estimated: bool,
}

/// One answer of the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    pub message: Message,
    pub finish_reason: String,
    pub usage: Usage,
    /// Dollars, from the price table (0 for unknown or local models).
    pub cost: f64,
    pub latency_s: f64,
    /// Attempts it took (1 without retries).
    pub attempts: u32,
}

/// A dollar budget shared by the requests of one task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    pub limit: f64,
    pub spent: f64,
}

impl Budget {
    pub fn new(limit: f64) -> Budget {
        Budget { limit, spent: 0.0 }
    }

    /// Refuses once the spending reached the limit.
    pub fn check(&self) -> Result<(), LlmError> {
        if self.spent >= self.limit {
            return Err(LlmError::BudgetExceeded {
                spent: self.spent,
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// A client of one model.
#[derive(Debug, Clone)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    cfg: LlmConfig,
}

impl LlmClient {
    pub fn new(cfg: LlmConfig) -> LlmClient {
        let mut oc = OpenAIConfig::new().with_api_base(&cfg.base_url);
        // Local servers take any key; OpenAI's client insists on sending one.
        oc = oc.with_api_key(cfg.api_key.clone().unwrap_or_else(|| "local".to_owned()));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap_or_default();
        LlmClient {
            client: Client::with_config(oc).with_http_client(http),
            cfg,
        }
    }

    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    /// The API's base URL (`…/v1`).
    pub fn base_url(&self) -> &str {
        &self.cfg.base_url
    }

    /// This client with fixed sampling: `temperature` and `seed` on every request.
    pub fn with_sampling(&self, temperature: f32, seed: u64) -> LlmClient {
        let mut cfg = self.cfg.clone();
        cfg.temperature = Some(temperature);
        cfg.seed = Some(seed);
        LlmClient::new(cfg)
    }

    /// Dollars for `usage` with this client's model (0 when the model is not priced).
    pub fn cost_of(&self, usage: Usage) -> f64 {
        lookup(&self.cfg.model).map_or(0.0, |m| {
            (usage.prompt_tokens as f64 * m.prompt_per_mtok
                + usage.completion_tokens as f64 * m.completion_per_mtok)
                / 1e6
        })
    }

    /// One chat completion, charged to `budget`. async-openai's executor already retries 429
    /// and 5xx (honouring `Retry-After`); this loop retries again, with its own exponential
    /// backoff, what still fails after that, plus connection errors.
    pub async fn chat(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        budget: &mut Budget,
    ) -> Result<Completion, LlmError> {
        budget.check()?;
        let mut request = json!({
            "model": self.cfg.model,
            "messages": messages.iter().map(Message::to_api).collect::<Vec<_>>(),
            "stream": false,
        });
        if !tools.is_empty() {
            request["tools"] = tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
        }
        if let Some(t) = self.cfg.temperature {
            request["temperature"] = json!(t);
        }
        if let Some(seed) = self.cfg.seed {
            request["seed"] = json!(seed);
        }
        if let Some(m) = self.cfg.max_tokens {
            request["max_tokens"] = json!(m);
        }
        let started = Instant::now();
        let mut delay = self.cfg.backoff;
        let mut attempt = 0;
        let raw = loop {
            attempt += 1;
            match self.send(&request).await {
                Ok(v) => break v,
                Err(e) if e.is_retryable() && attempt < self.cfg.max_attempts => {
                    tracing::warn!(attempt, "model request failed, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        };
        let mut completion = parse_completion(&raw, messages)?;
        completion.latency_s = started.elapsed().as_secs_f64();
        completion.attempts = attempt;
        completion.cost = self.cost_of(completion.usage);
        budget.spent += completion.cost;
        Ok(completion)
    }

    async fn send(&self, request: &Value) -> Result<Value, LlmError> {
        let result: Result<Value, OpenAIError> =
            self.client.chat().create_byot(request.clone()).await;
        result.map_err(|e| match e {
            OpenAIError::ApiError(a) => LlmError::Api {
                status: a.status_code.as_u16(),
                message: a.api_error.message,
            },
            OpenAIError::Reqwest(r) => {
                if let Some(s) = r.status() {
                    LlmError::Api {
                        status: s.as_u16(),
                        message: r.to_string(),
                    }
                } else {
                    LlmError::Transport {
                        url: self.cfg.base_url.clone(),
                        reason: full_chain(&r),
                    }
                }
            }
            OpenAIError::JSONDeserialize(err, content) => LlmError::BadResponse(format!(
                "{err}: {}",
                content.chars().take(200).collect::<String>()
            )),
            other => LlmError::BadResponse(other.to_string()),
        })
    }
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s = format!("{s}: {x}");
        src = x.source();
    }
    s
}

/// Reads a chat completion leniently: only `choices[0].message` must be there; content,
/// tool calls, usage and finish reason are optional.
fn parse_completion(raw: &Value, sent: &[Message]) -> Result<Completion, LlmError> {
    let choice = raw
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| LlmError::BadResponse(format!("no choices in {}", clip(raw))))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| LlmError::BadResponse(format!("no message in {}", clip(raw))))?;
    let content = msg
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut tool_calls = Vec::new();
    for (i, c) in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let f = c.get("function").unwrap_or(&Value::Null);
        let arguments = match f.get("arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Object(_)) => v.to_string(),
            _ => String::new(),
        };
        tool_calls.push(ToolCall {
            id: c
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{i}"), str::to_owned),
            name: f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            arguments,
        });
    }
    let usage = match raw.get("usage") {
        Some(u) if u.get("prompt_tokens").is_some() => Usage {
            prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            estimated: false,
        },
        _ => {
            let sent_chars: usize = sent.iter().map(|m| m.content.len()).sum();
            let got = content.len() + tool_calls.iter().map(|c| c.arguments.len()).sum::<usize>();
            Usage {
                prompt_tokens: sent_chars.div_ceil(4) as u64,
                completion_tokens: got.div_ceil(4) as u64,
                estimated: true,
            }
        }
    };
    Ok(Completion {
        message: Message {
            role: "assistant".into(),
            content,
            tool_calls,
            tool_call_id: None,
        },
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        usage,
        cost: 0.0,
        latency_s: 0.0,
        attempts: 1,
    })
}

fn clip(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_answers_parse_and_usage_is_estimated() {
        let raw = json!({"choices": [{"message": {"content": "hello there"}}]});
        let c = parse_completion(&raw, &[Message::user("abcdefgh")]).unwrap();
        assert_eq!(c.message.content, "hello there");
        assert!(c.usage.estimated);
        assert_eq!(c.usage.prompt_tokens, 2);
        let raw = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"function": {"name": "view", "arguments": {"path": "a.py"}}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3}});
        let c = parse_completion(&raw, &[]).unwrap();
        assert_eq!(c.message.tool_calls[0].name, "view");
        assert_eq!(c.message.tool_calls[0].id, "call_0");
        assert_eq!(c.message.tool_calls[0].arguments, r#"{"path":"a.py"}"#);
        assert_eq!(c.usage.completion_tokens, 3);
        assert!(parse_completion(&json!({"error": "x"}), &[]).is_err());
    }

    #[test]
    fn prices_follow_the_table() {
        let c = LlmClient::new(LlmConfig::new("http://127.0.0.1:1/v1", "gpt-4o-mini"));
        let cost = c.cost_of(Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
            estimated: false,
        });
        assert!((cost - 0.75).abs() < 1e-9);
        let local = LlmClient::new(LlmConfig::new(
            "http://127.0.0.1:1/v1",
            "smollm2-135m-instruct",
        ));
        assert_eq!(
            local.cost_of(Usage {
                prompt_tokens: 5,
                completion_tokens: 5,
                estimated: false
            }),
            0.0
        );
    }

    #[test]
    fn the_budget_refuses_once_spent() {
        let mut b = Budget::new(0.01);
        assert!(b.check().is_ok());
        b.spent = 0.01;
        assert!(matches!(b.check(), Err(LlmError::BudgetExceeded { .. })));
    }
}
