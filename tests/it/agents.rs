//! Agents as code: the model proxy against a scripted OpenAI-compatible server (key, model
//! list, cap, rate, seed, accounting to the token; through the real async-openai client too),
//! and agent files run in a forged task's sandbox behind the proxy in its container: a solver
//! resolves, a hostile agent's escapes all fail and it is scored, and the key is nowhere in
//! the agent's sandbox.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentao::llm::proxy::{ProxyConfig, seed_for, spawn};
use agentao::llm::{Budget, LlmClient, LlmConfig, Message};
use serde_json::{Value, json};

use crate::support::{Request, Response, TestServer};

/// A scripted model: every answer has `content` and a fixed usage (prompt, completion).
pub fn scripted_answer(content: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion}
    })
}

async fn post(url: &str, body: Value, auth: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .bearer_auth(auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_proxy_holds_the_key_allows_models_caps_dollars_and_counts_every_token() {
    // Usage varies per answer so a miscount cannot cancel out.
    let n = Arc::new(Mutex::new(0u64));
    let seen = n.clone();
    let model = TestServer::start(move |_: &Request| {
        let mut n = seen.lock().unwrap();
        *n += 1;
        Response::new(
            200,
            "application/json",
            scripted_answer("ok", 1000 + *n, 100 + 7 * *n).to_string(),
        )
    })
    .await;
    let mut cfg = ProxyConfig::new(&format!("{}/v1", model.url), &["gpt4omini"], 0);
    cfg.api_key = Some("sk-validator-secret".into());
    cfg.seed = seed_for("tinycalc-7");
    // gpt-4o-mini: $0.15 / $0.60 per million: each answer costs about $0.00021.
    cfg.cap_usd = 0.0005;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = spawn(listener, cfg).unwrap();
    let url = format!("http://{}/v1", proxy.addr);

    // A model outside the list: 403, never forwarded.
    let (status, body) = post(
        &url,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        "whatever",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "model_not_allowed");
    assert!(model.requests.lock().unwrap().is_empty());

    // The real async-openai client, through our LlmClient, with the agent's own placeholder
    // key; the alias resolves to the allowed id.
    let mut client_cfg = LlmConfig::new(&url, "gpt4omini");
    client_cfg.api_key = Some("agent-placeholder".into());
    client_cfg.seed = Some(12345);
    let client = LlmClient::new(client_cfg);
    let mut budget = Budget::new(1.0);
    let done = client
        .chat(&[Message::user("fix the bug")], &[], &mut budget)
        .await
        .unwrap();
    assert_eq!(done.message.content, "ok");
    assert_eq!(done.usage.prompt_tokens, 1001);

    // Raw requests until the cap: the one crossing it is the last answered.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body) = post(
            &url,
            json!({"model": "gpt-4o-mini", "stream": true, "seed": 1,
                   "messages": [{"role": "user", "content": "again"}]}),
            "agent-guess",
        )
        .await;
        statuses.push((status, body["error"]["type"].clone()));
    }
    assert_eq!(statuses[0].0, 200);
    assert_eq!(statuses[1].0, 200);
    assert_eq!(statuses[2], (429, json!("insufficient_quota")));
    assert_eq!(statuses[3].0, 429);

    let seen = model.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "refused requests never reach the model");
    for req in &seen {
        assert_eq!(
            req.header("authorization"),
            Some("Bearer sk-validator-secret"),
            "the validator's key goes out, the agent's never"
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body["seed"],
            json!(seed_for("tinycalc-7")),
            "seed fixed per task"
        );
        assert_eq!(body["stream"], json!(false));
        assert_eq!(body["model"], "gpt-4o-mini");
    }
    let usage = proxy.usage();
    // Answers 1..=3: prompt 1000+n, completion 100+7n.
    assert_eq!(usage.prompt_tokens, 1001 + 1002 + 1003);
    assert_eq!(usage.completion_tokens, 107 + 114 + 121);
    assert_eq!(usage.requests, 3);
    assert_eq!(usage.refused_model, 1);
    assert_eq!(usage.refused_cap, 2);
    assert!(!usage.estimated);
    let dollars = (3006.0 * 0.15 + 342.0 * 0.60) / 1e6;
    assert!((usage.cost_usd - dollars).abs() < 1e-12, "{usage:?}");
}

#[tokio::test]
async fn the_proxy_refuses_past_its_rate_and_says_so_for_bad_input() {
    let model = TestServer::start(|_: &Request| {
        Response::new(
            200,
            "application/json",
            scripted_answer("ok", 10, 1).to_string(),
        )
    })
    .await;
    let mut cfg = ProxyConfig::new(&format!("{}/v1", model.url), &["gpt-4o-mini"], 3);
    cfg.per_minute = 2;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = spawn(listener, cfg).unwrap();
    let url = format!("http://{}/v1", proxy.addr);
    let ask = json!({"messages": [{"role": "user", "content": "x"}]});
    assert_eq!(post(&url, ask.clone(), "k").await.0, 200);
    assert_eq!(post(&url, ask.clone(), "k").await.0, 200);
    let (status, body) = post(&url, ask, "k").await;
    assert_eq!(
        (status, body["error"]["type"].clone()),
        (429, json!("rate_limit_exceeded"))
    );
    let bad = reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .body("[not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let listed: Value = reqwest::get(format!("{url}/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["id"], "gpt-4o-mini");
    let usage = proxy.usage();
    assert_eq!(
        (usage.requests, usage.refused_rate, usage.failed),
        (2, 1, 1)
    );
    assert_eq!(
        model.requests.lock().unwrap().len(),
        2,
        "only the answered requests reached the model"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// A miner submits two versions; a validator fetches the current one and an older one by hash
/// over the signed wire (`AgentCode`), checks the hashes and keeps both; a tampered answer is
/// not taken.
#[tokio::test]
async fn a_validator_fetches_a_miners_agent_versions_over_agent_code() {
    use agentao::neurons::agents::{AgentVault, MinerAgents, submission_from};
    use agentao::subnet::{AgentCode, Axon, AxonConfig, AxonTarget, Dendrite, Keypair, Metagraph};

    let dir = tempfile::tempdir().unwrap();
    let miner_files = MinerAgents::new(&dir.path().join("miner"));
    let v1 = miner_files
        .submit(include_bytes!("../fixtures/agents/solver.py"))
        .unwrap();
    let v2 = miner_files
        .submit(include_bytes!("../../docker/agent/example_agent.py"))
        .unwrap();
    let (validator, miner) = (Keypair::generate().0, Keypair::generate().0);
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![crate::concurrent::neuron(0, &validator, 0, true)],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = Arc::new(miner_files);
    let served = Axon::new(miner.clone(), metagraph, AxonConfig::default())
        .agent_code(move |s| {
            let files = files.clone();
            async move { files.answer(s.body) }
        })
        .serve(listener);
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: miner.ss58(),
    };
    let dendrite = Dendrite::new(validator);
    let vault = AgentVault::new(&dir.path().join("validator"));
    let current = dendrite
        .call(&target, AgentCode::default(), Duration::from_secs(5))
        .await;
    let current = current.synapse.expect("answered").body;
    assert_eq!((current.version, &current.code_sha256), (2, &v2.sha256));
    let old = dendrite
        .call(
            &target,
            AgentCode {
                sha256: v1.sha256.clone(),
                ..AgentCode::default()
            },
            Duration::from_secs(5),
        )
        .await
        .synapse
        .expect("answered")
        .body;
    assert_eq!(old.version, 1);
    for answer in [&current, &old] {
        let sub = submission_from(&miner.ss58(), 1, answer, 0).expect("hash checks out");
        vault.keep(&sub.code).unwrap();
    }
    assert!(vault.get(&v1.sha256).is_some() && vault.get(&v2.sha256).is_some());
    let mut tampered = current.clone();
    tampered.code = Some(format!("{}\n# changed\n", tampered.code.unwrap()));
    assert!(submission_from(&miner.ss58(), 1, &tampered, 0).is_none());
    served.abort();
}
