//! `agentao validator --mode agents` as a real process on the local chain: two real miner
//! processes serve the agent files they submitted (`miner submit-agent`), the validator fetches
//! them over `AgentCode` and runs them on a forged task behind the model proxy (a scripted
//! model answering the task's fix). The solver, seen first, gets the weight; its renamed copy,
//! first seen by a restarted validator one run later, is flagged and gets none, although its
//! uid comes first (so the earliest-wins order survived the restart). SIGTERM mid-round stops
//! it at once with no container left.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use agentao::agent::code::agent_hash;
use agentao::neurons::validator::Scores;
use agentao::subnet::{Keypair, LocalChain, Wallet};
use agentao::tasks::TaskStore;

use crate::agents::scripted_answer;
use crate::concurrent::{neuron, one_line_task};
use crate::support::{Response, TestServer, run_id};
use crate::unattended::{agentao, exit_within, records, sigterm};

const SOLVER: &str = include_str!("../fixtures/agents/solver.py");
const COPY: &str = include_str!("../fixtures/agents/copy.py");

/// A miner process in its own data dir (its `chain` a link to the shared one, so each keeps
/// its own submitted agents), serving `agent` on `port`.
fn start_miner(
    dir: &Path,
    data: &Path,
    name: &str,
    agent: &str,
    port: u16,
    run: &str,
    model: &TestServer,
) -> Child {
    let own = dir.join(name);
    std::fs::create_dir_all(&own).unwrap();
    std::os::unix::fs::symlink(data.join("chain"), own.join("chain")).unwrap();
    let file = own.join("agent.py");
    std::fs::write(&file, agent).unwrap();
    let miner = |own: &Path| {
        let mut c = agentao(own, run, model, name);
        c.env("AGENTAO_WALLET_PATH", data.join("wallets"));
        c
    };
    let submitted = miner(&own)
        .args(["miner", "submit-agent", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let child = miner(&own)
        .args(["miner", "--agent", "repair", "--axon.ip", "127.0.0.1"])
        .args(["--axon.port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_listening(port, name);
    child
}

/// Containers whose run label starts with `run` (the agents' runs append their hash).
fn containers_under(run: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", "label=agentao.run"])
        .args(["--format", "{{.ID}} {{.Label \"agentao.run\"}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_once(' ').is_some_and(|(_, r)| r.starts_with(run)))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agents_validator_rewards_the_solver_and_not_its_later_copy() {
    let started = Instant::now();
    let task = one_line_task().await;
    eprintln!("task: {:.0} s", started.elapsed().as_secs_f64());
    let gold = task.patch.clone();
    let model = TestServer::start(move |_| {
        let answer = scripted_answer(&format!("Here:\n```diff\n{gold}```\n"), 2000, 300);
        Response::new(200, "application/json", answer.to_string())
    })
    .await;
    let run = run_id("agents-validator");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    TaskStore::open(&data.join("tasks.db"))
        .unwrap()
        .put(&task)
        .unwrap();
    let wallets = data.join("wallets");
    let key = |name: &str| -> Keypair {
        Wallet::new(&wallets, "default", name)
            .create_hotkey()
            .unwrap()
    };
    let (validator, copier, solver) = (key("validator"), key("copier"), key("solver"));
    let (copier_port, solver_port) = (crate::subnet::free_port(), crate::subnet::free_port());
    let chain = LocalChain::new(&data.join("chain"), 62);
    chain.register(neuron(0, &validator, 0, true)).unwrap();
    assert_eq!(
        chain
            .register(neuron(1, &copier, copier_port, false))
            .unwrap(),
        1
    );
    assert_eq!(
        chain
            .register(neuron(2, &solver, solver_port, false))
            .unwrap(),
        2
    );
    let spawn_validator = || {
        agentao(&data, &run, &model, "validator")
            .args(["validator", "--mode", "agents", "--rounds", "1"])
            .args(["--agents.screening", "1", "--agents.tasks", "1"])
            .args(["--agents.wall", "120"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let validate = || {
        let out = spawn_validator().wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let report: serde_json::Value = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no round report; stderr: {stderr}"));
        (report, stderr)
    };

    // First run: only the solver serves; the copier's uid is registered but unreachable.
    let mut solver_miner = start_miner(
        dir.path(),
        &data,
        "solver",
        SOLVER,
        solver_port,
        &run,
        &model,
    );
    eprintln!("solver miner up: {:.0} s", started.elapsed().as_secs_f64());
    let (first, stderr) = validate();
    eprintln!("first run: {:.0} s", started.elapsed().as_secs_f64());
    let solver_sha = agent_hash(SOLVER.as_bytes());
    let copy_sha = agent_hash(COPY.as_bytes());
    assert_eq!(first["agents"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["agents"][0]["sha256"], solver_sha.as_str());
    assert_eq!(first["skipped"][0][0], 1, "the copier is skipped: {first}");
    assert!(stderr.contains("agent not run"), "{stderr}");
    let scores = Scores::load(&data.join("validator/scores.json"));
    assert!(
        !scores.by_hotkey.contains_key(&copier.ss58()),
        "an unreachable miner is not charged"
    );

    // Second run, restarted, with the copier serving the renamed copy.
    let mut copier_miner =
        start_miner(dir.path(), &data, "copier", COPY, copier_port, &run, &model);
    eprintln!("copier miner up: {:.0} s", started.elapsed().as_secs_f64());
    let (second, _) = validate();
    eprintln!("second run: {:.0} s", started.elapsed().as_secs_f64());
    let agents = second["agents"].as_array().unwrap();
    let by_uid = |uid: u64| {
        agents
            .iter()
            .find(|a| a["uid"] == uid)
            .unwrap_or_else(|| panic!("uid {uid}: {second}"))
    };
    let (copy, solved) = (by_uid(1), by_uid(2));
    assert_eq!(copy["sha256"], copy_sha.as_str());
    assert_eq!(copy["copy_of"], solver_sha.as_str(), "{second}");
    assert_eq!(
        (copy["score"].as_f64(), copy["attempted"].as_u64()),
        (Some(0.0), Some(0))
    );
    assert_eq!(solved["score"], 1.0, "{second}");
    assert_eq!(solved["resolved"], 1);

    // The dataset: every run is the solver's, resolved, with its agent's hash.
    let all = records(&data.join("dataset/records.jsonl"));
    assert_eq!(all.len(), 4, "screening + full set, two runs: {all:?}");
    for r in &all {
        assert_eq!(r.agent, format!("agent:{solver_sha}"));
        assert_eq!(
            (r.miner_hotkey.as_str(), r.miner_uid),
            (solver.ss58().as_str(), 2)
        );
        assert!(r.resolved, "{r:?}");
        assert_eq!(r.validator_hotkey, validator.ss58());
    }
    assert!(
        data.join(format!("validator/agents/{solver_sha}.py"))
            .exists(),
        "the version run is kept"
    );

    // The chain: the weight went to the solver alone, in both runs.
    let log = std::fs::read_to_string(data.join("chain/weights.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    for l in &lines {
        assert_eq!(l["uids"], serde_json::json!([2]), "{log}");
        assert_eq!(l["weights"], serde_json::json!([65535]), "{log}");
    }
    let scores = Scores::load(&data.join("validator/scores.json"));
    assert_eq!(
        scores.by_hotkey[&copier.ss58()],
        0.0,
        "the copy is charged its 0"
    );
    assert_eq!(scores.health[&copier.ss58()].copies, 1);
    assert!(scores.by_hotkey[&solver.ss58()] > 0.18);

    assert!(
        containers_under(&run).is_empty(),
        "{:?}",
        containers_under(&run)
    );

    // SIGTERM while an agent's containers run: the validator stops at once, exits 0, leaves
    // no container, and sets no weights for the round cut short.
    let mut child = spawn_validator();
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while containers_under(&run).is_empty() {
        assert!(Instant::now() < deadline, "no agent run started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the validator ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let signalled = Instant::now();
    sigterm(&child);
    let code = exit_within(&mut child, 30);
    let stopped = signalled.elapsed();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !containers_under(&run).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind after SIGTERM: {:?}",
            containers_under(&run)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(data.join("chain/weights.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    for child in [&mut solver_miner, &mut copier_miner] {
        sigterm(child);
        assert_eq!(exit_within(child, 30), Some(0));
    }
    eprintln!(
        "agents validator stopped {:.2} s after SIGTERM",
        stopped.as_secs_f64()
    );
    eprintln!(
        "agents validator test: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
