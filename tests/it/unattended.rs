//! The neurons run unattended: `agentao validator` and `agentao miner` as real processes
//! stopped with SIGTERM (what systemd and `docker stop` send), and the validator's loop riding
//! out a chain node that fails before it recovers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentao::dataset::RecordStore;
use agentao::eval::EvalConfig;
use agentao::neurons::lifecycle::Backoff;
use agentao::neurons::local::TaskSource;
use agentao::neurons::validator::{EMA_ALPHA, Scores, Validator, ValidatorConfig, ValidatorError};
use agentao::subnet::{
    AnyChain, AxonTarget, CodingTask, Dendrite, Keypair, LocalChain, SHUT_DOWN_MID_REQUEST, Wallet,
};
use agentao::tasks::{Task, TaskStore};
use parity_scale_codec::Encode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::agent::{one_line_fix, tool_call};
use crate::concurrent::{gold_with, neuron, one_line_task, scripted_miners};
use crate::support::{Response, TestServer, assert_no_containers, base_image, engine, run_id};

/// A model server: judgements for requests without tools, an edit then a submit for the
/// agent's, each agent answer after `delay`.
async fn model(task: &Task, delay: Duration) -> TestServer {
    let (file, buggy, fixed) = one_line_fix(task);
    TestServer::start(move |req| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let answer = if body.get("tools").is_none() {
            json!({"id": "j", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                "content": r#"{"quality": 0.9, "brevity": 1.0, "reason": "ok"}"#}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})
        } else {
            std::thread::sleep(delay);
            if body["messages"].as_array().map_or(0, |m| m.len()) <= 2 {
                let edit = json!({"path": file, "old_str": buggy, "new_str": fixed});
                tool_call("c1", "str_replace", &edit.to_string())
            } else {
                tool_call("c2", "submit", "{}")
            }
        };
        Response::new(200, "application/json", answer.to_string())
    })
    .await
}

/// `agentao` with the data dir, wallets, run id and model of one test.
pub(crate) fn agentao(data: &Path, run: &str, model: &TestServer, hotkey: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
    c.env("AGENTAO_DATA_DIR", data)
        .env("AGENTAO_WALLET_PATH", data.join("wallets"))
        .env("AGENTAO_WALLET_HOTKEY", hotkey)
        .env("AGENTAO_RUN_ID", run)
        .env("AGENTAO_LOG_FORMAT", "json")
        .env("OPENAI_API_KEY", "test")
        .env("OPENAI_BASE_URL", format!("{}/v1", model.url))
        .env("AGENTAO_MODEL", "gpt-4o-mini")
        .env_remove("AGENTAO_SUBTENSOR_NETWORK");
    c
}

pub(crate) fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits up to `secs` for the child to exit; its exit code.
pub(crate) fn exit_within(child: &mut Child, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {secs} s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn records(path: &Path) -> Vec<agentao::dataset::Record> {
    RecordStore::open(path)
        .unwrap()
        .iter()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Issue 20: SIGTERM to `agentao validator` while it evaluates a round's answers one at a
/// time: it exits 0 within the deadline, leaves no container, keeps every score written so far,
/// and a restarted validator carries on from them (its averages are the moving averages over
/// all the recorded scores of both runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_round_keeps_the_scores_and_a_restart_carries_on() {
    let task = one_line_task().await;
    let model = model(&task, Duration::ZERO).await;
    let run = run_id("sigterm-validator");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    TaskStore::open(&data.join("tasks.db"))
        .unwrap()
        .put(&task)
        .unwrap();
    let key = Wallet::new(&data.join("wallets"), "default", "validator")
        .create_hotkey()
        .unwrap();
    let answers = (0..3)
        .map(|i| (gold_with(&task, &format!("n{i} = {i}")), Duration::ZERO))
        .collect();
    let miners = scripted_miners(&key, answers).await;
    let chain = LocalChain::new(&data.join("chain"), 62);
    chain.register(neuron(0, &key, 0, true)).unwrap();
    for n in &miners.neurons {
        chain.register(n.clone()).unwrap();
    }
    let validator = |rounds: &str| {
        agentao(&data, &run, &model, "validator")
            .args([
                "validator",
                "--rounds",
                rounds,
                "--interval",
                "1",
                "--timeout",
                "60",
            ])
            .args(["--max-sandboxes", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let store = data.join("dataset/records.jsonl");
    let mut child = validator("5");
    // Stop it once the first answer is scored: the others are being evaluated or waiting.
    let deadline = Instant::now() + Duration::from_secs(300);
    // Read as text: opening the store would cut a line the validator is writing.
    let scored = || {
        std::fs::read_to_string(&store)
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .count()
    };
    while scored() == 0 {
        assert!(Instant::now() < deadline, "no answer scored");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the validator ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Instant::now();
    sigterm(&child);
    let code = exit_within(&mut child, 30);
    let stopped = signalled.elapsed();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let left = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label=agentao.run={run}")])
        .output()
        .unwrap();
    eprintln!("after SIGTERM: {}", String::from_utf8_lossy(&left.stdout));
    assert!(
        crate::support::containers_of(&run).is_empty(),
        "left behind after SIGTERM; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = records(&store);
    assert!(
        !first.is_empty() && first.len() < 3,
        "{} records",
        first.len()
    );
    let scores = Scores::load(&data.join("validator/scores.json"));
    for r in &first {
        assert!(scores.by_hotkey.contains_key(&r.miner_hotkey), "{r:?}");
    }
    eprintln!(
        "validator stopped {:.2} s after SIGTERM with {} of 3 answers scored",
        stopped.as_secs_f64(),
        first.len()
    );

    let mut child = validator("1");
    let code = exit_within(&mut child, 300);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let all = records(&store);
    assert_eq!(all.len(), first.len() + 3);
    let scores = Scores::load(&data.join("validator/scores.json"));
    for n in &miners.neurons {
        let expected = all
            .iter()
            .filter(|r| r.miner_hotkey == n.hotkey)
            .fold(0.0, |avg, r| {
                EMA_ALPHA * r.final_score + (1.0 - EMA_ALPHA) * avg
            });
        let got = scores.by_hotkey[&n.hotkey];
        assert!((got - expected).abs() < 1e-9, "{got} != {expected}");
    }
    assert_no_containers(&run, 5);
}

/// Issue 20: SIGTERM to `agentao miner` while its agent works on a validator's request: the
/// request is answered 503 by the deadline (`--shutdown-grace`), the agent's sandbox is
/// removed, and the miner exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_to_a_miner_with_a_request_in_flight_refuses_it_cleanly_and_exits_0() {
    let task = one_line_task().await;
    // Every agent step takes 4 s: the request is still in flight at the 1 s deadline.
    let model = model(&task, Duration::from_secs(4)).await;
    let run = run_id("sigterm-miner");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    TaskStore::open(&data.join("tasks.db"))
        .unwrap()
        .put(&task)
        .unwrap();
    let miner_key = Wallet::new(&data.join("wallets"), "default", "miner")
        .create_hotkey()
        .unwrap();
    let validator = Keypair::generate().0;
    let port = crate::subnet::free_port();
    let chain = LocalChain::new(&data.join("chain"), 62);
    chain.register(neuron(0, &validator, 0, true)).unwrap();
    chain.register(neuron(1, &miner_key, port, false)).unwrap();
    let mut child = agentao(&data, &run, &model, "miner")
        .args([
            "miner",
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            &port.to_string(),
        ])
        .args(["--shutdown-grace", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_listening(port, "the miner");
    let deadline = Instant::now() + Duration::from_secs(60);
    let dendrite = Arc::new(Dendrite::new(validator));
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: miner_key.ss58(),
    };
    let body = CodingTask {
        repo: task.repo.clone(),
        problem_statement: task.problem_statement.clone(),
        task_id: task.instance_id.clone(),
        time_limit: 120.0,
        ..CodingTask::default()
    };
    let call = tokio::spawn(async move {
        dendrite
            .fan_out(&[target], &body, Duration::from_secs(120))
            .await
            .remove(0)
    });
    // The agent is at work once the model got its first request.
    while model.requests.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the agent never asked its model");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !crate::support::containers_of(&run).is_empty(),
        "the agent's sandbox runs"
    );
    let signalled = Instant::now();
    sigterm(&child);
    let answer = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the request was answered")
        .unwrap();
    let code = tokio::task::spawn_blocking(move || {
        let code = exit_within(&mut child, 30);
        (code, child.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    eprintln!(
        "miner answered {} ({}) and exited {:?} {:.2} s after SIGTERM",
        answer.status_code,
        answer.status_message,
        code.0,
        signalled.elapsed().as_secs_f64()
    );
    assert_eq!(
        code.0,
        Some(0),
        "{}",
        String::from_utf8_lossy(&code.1.stderr)
    );
    assert!(
        answer.status_code == 200
            || (answer.status_code == 503 && answer.status_message == SHUT_DOWN_MID_REQUEST),
        "{answer:?}"
    );
    assert_eq!(
        answer.status_code, 503,
        "4 s steps cannot finish in a 1 s grace"
    );
    assert!(
        String::from_utf8_lossy(&code.1.stderr).contains("still handled at the shutdown deadline")
    );
    assert_no_containers(&run, 10);
    // Stopped: nothing listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Issue 20: a chain node that answers the metagraph's call with errors three times and then
/// recovers does not stop the validator: both rounds run and weights are set; a node that
/// never recovers ends it after the policy's bound, with the chain error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_failing_three_times_then_recovering_does_not_stop_the_validator() {
    use crate::subtensor::{Fate, chain, hex, node, sdk_keys};
    let key = Keypair::from_seed(&[1; 32]);
    let keys = sdk_keys(&key.ss58()).await;
    let (server, state) = node(&keys, Fate::Lands).await;
    // Uid 0 is the validator (its key is seed [1; 32]); uid 1 a miner nobody answers for.
    let neurons = vec![
        crate::subtensor::neuron(0, [127, 0, 0, 1], true, &[1_000_000_000_000]),
        crate::subtensor::neuron(1, [127, 0, 0, 1], false, &[]),
    ];
    state.lock().unwrap().neurons = hex(&neurons.encode());
    let method = "state_call";
    state.lock().unwrap().flaky.insert(method, 3);
    let engine = engine().await;
    let image = base_image(&engine).await;
    let dir = tempfile::tempdir().unwrap();
    let task: Task = serde_json::from_value(json!({
        "instance_id": "flaky__1", "repo": "pypi/flaky", "patch": "diff",
        "problem_statement": "fix it", "FAIL_TO_PASS": ["t::a"], "PASS_TO_PASS": [],
        "image": image}))
    .unwrap();
    let store = TaskStore::open(&dir.path().join("tasks.db")).unwrap();
    store.put(&task).unwrap();
    let config = |chain: AnyChain, give_up: Duration| ValidatorConfig {
        validator: Validator {
            engine: engine.clone(),
            dendrite: Dendrite::new(key.clone()),
            eval: EvalConfig::default(),
            time_limit: Duration::from_secs(5),
            judge: None,
            describer: None,
            forecasts: None,
        },
        chain,
        hotkey: key.ss58(),
        netuid: 62,
        store: TaskStore::open(&dir.path().join("tasks.db")).unwrap(),
        records: RecordStore::open(&dir.path().join("records.jsonl")).unwrap(),
        scores: {
            // Some weight to set: the miner's average from an earlier round.
            let mut s = Scores::load(&dir.path().join("scores.json"));
            s.by_hotkey.insert(Keypair::from_seed(&[2; 32]).ss58(), 0.5);
            s
        },
        source: TaskSource {
            packages: Vec::new(),
            forge: agentao::forge::ForgeConfig::new(dir.path()),
            prefer_repair_solved: false,
            skip_repair_solved_within: 0,
        },
        kinds: agentao::neurons::remote::RemoteKinds::parse("all").unwrap(),
        sample: 5,
        rounds: Some(2),
        interval: Duration::ZERO,
        run_id: "flaky".into(),
        retry: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(100),
            give_up_after: give_up,
        },
        report: Box::new(|_| {}),
        serve_bundles: None,
    };
    let signer = Some(key.clone());
    let cfg = config(
        AnyChain::Subtensor(Box::new(chain(&server.url, signer.clone(), false))),
        Duration::from_secs(60),
    );
    agentao::neurons::validator::run(cfg, CancellationToken::new())
        .await
        .expect("three failures are ridden out");
    {
        let st = state.lock().unwrap();
        assert_eq!(st.flaky[method], 0);
        assert!(st.calls[method] >= 3 + 2, "{:?}", st.calls);
        assert!(!st.submitted.is_empty(), "weights were set");
    }
    assert_eq!(
        RecordStore::open(&dir.path().join("records.jsonl"))
            .unwrap()
            .len(),
        2,
        "both rounds ran"
    );

    state.lock().unwrap().flaky.insert(method, u32::MAX);
    let cfg = config(
        AnyChain::Subtensor(Box::new(chain(&server.url, signer, false))),
        Duration::from_millis(300),
    );
    let err = agentao::neurons::validator::run(cfg, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ValidatorError::ChainDown { .. }), "{err}");
    assert!(err.to_string().contains("giving up"), "{err}");
}
