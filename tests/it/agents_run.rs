//! Agent files run as validators run them: a forged task's sandbox on a per-run internal
//! network, the model proxy in its own container (base image + the agentao binary) in front of
//! a scripted model. A solver resolves; a hostile agent's escapes all fail inside the sandbox,
//! it finds no trace of the key, the proxy answers 429 past the cap, and its run is scored; a
//! renamed copy of the solver is flagged. The proxy's accounting matches the model's usage to
//! the token.

use std::sync::{Arc, Mutex};

use agentao::agent::code::copy::copies_of;
use agentao::agent::code::{CodeExit, CodeRunConfig, ProxyPlacement, proxy_image, run_agent_code};
use agentao::eval::{EvalConfig, evaluate};
use agentao::llm::proxy::ProxyConfig;
use agentao::sandbox::base_image_tag;
use serde_json::Value;

use crate::agents::scripted_answer;
use crate::forge::forged_tinycalc;
use crate::support::{Request, Response, TestServer, assert_no_containers, engine, run_id};

const SOLVER: &str = include_str!("../fixtures/agents/solver.py");
const HOSTILE: &str = include_str!("../fixtures/agents/hostile.py");
const COPY: &str = include_str!("../fixtures/agents/copy.py");

fn networks_of(run: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=agentao.run={run}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_solver_resolves_a_hostile_agent_is_contained_and_a_copy_is_flagged() {
    let tasks = forged_tinycalc().await;
    let task = tasks
        .iter()
        .find(|t| t.patch.lines().filter(|l| l.starts_with("@@")).count() == 1)
        .expect("a one-hunk forged bug")
        .clone();
    let gold = task.patch.clone();
    // The scripted model answers the gold fix in a fence; usage differs per answer.
    let usage_log = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let log = usage_log.clone();
    let model = TestServer::start(move |_: &Request| {
        let mut log = log.lock().unwrap();
        let n = log.len() as u64;
        let (p, c) = (2000 + 13 * n, 300 + 5 * n);
        log.push((p, c));
        let answer = scripted_answer(&format!("Here:\n```diff\n{gold}```\n"), p, c);
        Response::new(200, "application/json", answer.to_string())
    })
    .await;
    let key = format!("sk-h21test-{}", uuid::Uuid::new_v4().simple());
    let mut proxy = ProxyConfig::new(&format!("{}/v1", model.url), &["gpt-4o-mini"], 0);
    proxy.api_key = Some(key.clone());
    // About $0.00048 an answer: the hostile agent's fourth request crosses the cap.
    proxy.cap_usd = 0.0015;
    let engine = engine().await;
    let image = proxy_image(
        &engine,
        &base_image_tag().reference,
        std::path::Path::new(env!("CARGO_BIN_EXE_agentao")),
    )
    .await
    .unwrap();
    let run = run_id("agents-code");
    let cfg = CodeRunConfig::new(&run, proxy, ProxyPlacement::Container { image });
    let eval = EvalConfig {
        run_id: run.clone(),
        ..EvalConfig::default()
    };

    // The solver.
    let solved = run_agent_code(&engine, &task, SOLVER.as_bytes(), &cfg)
        .await
        .unwrap();
    assert_eq!(solved.exit, CodeExit::Returned, "{}", solved.stderr_tail);
    let verdict = evaluate(&engine, &task, &solved.patch, &eval).await;
    assert!(verdict.resolved, "{:?}\n{}", verdict.outcome, solved.patch);
    let scripted = usage_log.lock().unwrap().clone();
    assert_eq!(solved.usage.requests, scripted.len() as u64);
    assert_eq!(
        (solved.usage.prompt_tokens, solved.usage.completion_tokens),
        scripted
            .iter()
            .fold((0, 0), |(p, c), (sp, sc)| (p + sp, c + sc)),
        "the proxy's accounting is the model's, to the token"
    );
    let seen = model.requests.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {key}"))),
        "the key goes out from the proxy"
    );

    // The hostile agent.
    let before = usage_log.lock().unwrap().len();
    let hostile = run_agent_code(&engine, &task, HOSTILE.as_bytes(), &cfg)
        .await
        .unwrap();
    assert_eq!(hostile.exit, CodeExit::Returned, "{}", hostile.stderr_tail);
    let line = hostile
        .stderr_tail
        .lines()
        .find_map(|l| l.strip_prefix("HOSTILE "))
        .unwrap_or_else(|| panic!("no report: {}", hostile.stderr_tail));
    let report: Value = serde_json::from_str(line).unwrap();
    for escape in [
        "internet",
        "dns",
        "package_index",
        "docker_socket",
        "docker_tcp",
    ] {
        let got = report[escape].as_str().unwrap_or("");
        assert!(got.starts_with("failed"), "{escape}: {got}");
    }
    let hits = report["key_hits"].to_string();
    assert!(
        !hits.contains(&key),
        "the key is in the agent's sandbox: {hits}"
    );
    let statuses: Vec<u64> = report["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let answered = statuses.iter().take_while(|s| **s == 200).count();
    assert!(answered >= 1, "{statuses:?}");
    assert!(
        statuses[answered..].iter().all(|s| *s == 429) && answered < statuses.len(),
        "429 past the cap: {statuses:?}"
    );
    assert!(hostile.usage.refused_cap >= 1);
    assert!(hostile.usage.cost_usd >= 0.0015, "{:?}", hostile.usage);
    assert_eq!(
        usage_log.lock().unwrap().len() - before,
        answered,
        "refused requests never reached the model"
    );
    let scored = evaluate(&engine, &task, &hostile.patch, &eval).await;
    assert!(!scored.resolved);

    // The copy, flagged against the earlier solver.
    let flagged = copies_of(&[SOLVER.as_bytes(), HOSTILE.as_bytes(), COPY.as_bytes()]);
    assert_eq!(flagged, vec![None, None, Some(0)]);

    assert_no_containers(&run, 30);
    assert_eq!(networks_of(&run), "", "the run's network is removed");
}
