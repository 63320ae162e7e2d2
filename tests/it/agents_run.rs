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
        .find(|t| {
            let changed = |p: &str| {
                t.patch
                    .lines()
                    .filter(|l| l.starts_with(p) && !l.starts_with(&p.repeat(3)))
                    .count()
            };
            changed("-") == 1 && changed("+") == 1
        })
        .expect("a one-line forged bug")
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

    // The solver, with the memory of the run's containers sampled meanwhile.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, run) = (sampling.clone(), run.clone());
        std::thread::spawn(move || peak_memory(&run, &sampling))
    };
    let solved = run_agent_code(&engine, &task, SOLVER.as_bytes(), &cfg)
        .await
        .unwrap();
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let peaks = sampler.join().unwrap();
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

    // The figures: the same fix by the built-in agent (scripted tool calls: str_replace,
    // submit) against the agent file's run behind the proxy in its container.
    let builtin = builtin_solves(&engine, &task, &run).await;
    eprintln!(
        "FIGURES agent file run {:.2}s (proxy + sandbox + network, 1 model call) vs built-in \
         agent {:.2}s (2 model calls); peak memory per container (MiB): {peaks:?}",
        solved.elapsed_s, builtin
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

/// Peak memory (MiB) per image of the run's containers, sampled with `docker stats` until
/// `sampling` is cleared.
fn peak_memory(
    run: &str,
    sampling: &std::sync::atomic::AtomicBool,
) -> std::collections::BTreeMap<String, f64> {
    let mut peaks = std::collections::BTreeMap::new();
    while sampling.load(std::sync::atomic::Ordering::SeqCst) {
        let ids = crate::support::containers_of(run);
        for id in ids {
            let out = std::process::Command::new("docker")
                .args(["stats", "--no-stream", "--format", "{{.MemUsage}}", &id])
                .output()
                .unwrap();
            let image = std::process::Command::new("docker")
                .args(["inspect", "-f", "{{.Config.Image}}", &id])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let used = text.split('/').next().unwrap_or("").trim().to_owned();
            let mib = if let Some(v) = used.strip_suffix("MiB") {
                v.parse::<f64>().unwrap_or(0.0)
            } else if let Some(v) = used.strip_suffix("GiB") {
                v.parse::<f64>().unwrap_or(0.0) * 1024.0
            } else if let Some(v) = used.strip_suffix("KiB") {
                v.parse::<f64>().unwrap_or(0.0) / 1024.0
            } else {
                continue;
            };
            let name = String::from_utf8_lossy(&image.stdout).trim().to_owned();
            let peak = peaks.entry(name).or_insert(0.0f64);
            *peak = peak.max(mib);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    peaks
}

/// Seconds the built-in agent takes to make the task's one-line fix with a scripted model.
async fn builtin_solves(
    engine: &agentao::sandbox::Engine,
    task: &agentao::tasks::Task,
    run: &str,
) -> f64 {
    use agentao::agent::{AgentConfig, Protocol, solve};
    use agentao::llm::{LlmClient, LlmConfig};
    let (file, buggy, fixed) = crate::agent::one_line_fix(task);
    let n = Arc::new(Mutex::new(0));
    let script = move |_: &Request| {
        let mut n = n.lock().unwrap();
        *n += 1;
        let body = if *n == 1 {
            crate::agent::tool_call(
                "c1",
                "str_replace",
                &serde_json::json!({"path": file, "old_str": buggy, "new_str": fixed}).to_string(),
            )
        } else {
            crate::agent::tool_call("c2", "submit", "{}")
        };
        Response::new(200, "application/json", body.to_string())
    };
    let model = TestServer::start(script).await;
    let llm = LlmClient::new(LlmConfig::new(&format!("{}/v1", model.url), "gpt-4o-mini"));
    let cfg = AgentConfig {
        protocol: Protocol::ToolCalls,
        run_id: run.to_owned(),
        ..AgentConfig::default()
    };
    let episode = solve(engine, task, &llm, &cfg).await.unwrap();
    assert!(!episode.patch.is_empty(), "the built-in agent made the fix");
    episode.elapsed_s
}
