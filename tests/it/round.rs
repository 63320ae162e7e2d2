//! A subnet round over the real wire on one machine: the validator's dendrite sends a signed
//! task to miner axons, each miner's agent (driven by a scripted model that fixes the bug)
//! answers from a sandbox, the validator evaluates every patch in a fresh container, scores it,
//! moves the averages, sets weights on the local chain and records the dataset.

use std::time::Duration;

use agentao::agent::{AgentConfig, Protocol};
use agentao::dataset::RecordStore;
use agentao::eval::{EvalConfig, Outcome};
use agentao::llm::{LlmClient, LlmConfig};
use agentao::neurons::forecast::{ForecastBook, brier_event};
use agentao::neurons::local::{RoundConfig, run_round};
use agentao::neurons::miner::Miner;
use agentao::neurons::scoring::{final_score, judged_quality, time_score};
use agentao::neurons::validator::{DUPLICATE_FLOOR, EMA_ALPHA, Scores, Validator};
use agentao::sandbox::Engine;
use agentao::subnet::{
    Axon, AxonConfig, Chain, Dendrite, Keypair, LocalChain, Metagraph, Neuron, Wallet,
};
use agentao::tasks::{Grading, Task, TaskStore};
use serde_json::json;

use crate::agent::{one_line_fix, tool_call};
use crate::forge::forged_tinycalc;
use crate::support::{Response, TestServer, assert_no_containers, engine, run_id};

/// A forged task whose bug is one line, and a model that fixes it: str_replace, then submit.
/// Asked as the judge (a request without tools), it answers a judgement the first time and
/// prose after that.
pub(crate) async fn task_and_model() -> (Task, TestServer) {
    let task = forged_tinycalc()
        .await
        .into_iter()
        .find(|t| {
            let count = |p: char| {
                t.patch
                    .lines()
                    .filter(|l| l.starts_with(p) && !l.starts_with(&p.to_string().repeat(3)))
                    .count()
            };
            count('-') == 1 && count('+') == 1
        })
        .expect("a one-line forged bug");
    let (file, buggy, fixed) = one_line_fix(&task);
    let judged = std::sync::atomic::AtomicUsize::new(0);
    let server = TestServer::start(move |req| {
        // Each episode is a fresh conversation: the first answer edits, the next submits.
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let turns = body["messages"].as_array().map_or(0, |m| m.len());
        let answer = if body.get("tools").is_none() {
            let content = match judged.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => r#"{"quality": 0.8, "brevity": 1.0, "reason": "minimal fix"}"#,
                _ => "Looks fine to me.",
            };
            json!({"id": "j", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 500, "completion_tokens": 20, "total_tokens": 520}})
        } else if turns <= 2 {
            tool_call(
                "c1",
                "str_replace",
                &json!({"path": file, "old_str": buggy, "new_str": fixed}).to_string(),
            )
        } else {
            tool_call("c2", "submit", "{}")
        };
        Response::new(200, "application/json", answer.to_string())
    })
    .await;
    (task, server)
}

fn llm(server: &TestServer) -> LlmClient {
    LlmClient::new(LlmConfig::new(&format!("{}/v1", server.url), "gpt-4o-mini"))
}

fn agent(run: &str) -> AgentConfig {
    AgentConfig {
        protocol: Protocol::ToolCalls,
        max_steps: 4,
        run_id: run.to_owned(),
        ..AgentConfig::default()
    }
}

#[tokio::test]
async fn a_local_round_goes_over_the_wire_and_sets_weights() {
    a_local_round_goes_over_the_wire_and_sets_weights_on(&engine().await).await;
}

/// [`a_local_round_goes_over_the_wire_and_sets_weights`] on any engine: the swarm tests run it through that backend.
pub async fn a_local_round_goes_over_the_wire_and_sets_weights_on(engine: &Engine) {
    let (task, model) = task_and_model().await;
    let run = run_id("round-local");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tasks.db");
    TaskStore::open(&store).unwrap().put(&task).unwrap();
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let cfg = RoundConfig {
        agent: agent(&run),
        eval: EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
        paths: agentao::config::Paths::new(dir.path(), dir.path()),
        netuid: 62,
        store,
        model_server: None,
        repair_miner: None,
    };
    let report = run_round(engine, &task, &llm(&model), &mut records, &cfg, "r1")
        .await
        .unwrap();

    let miner = Wallet::new(&dir.path().join("wallets"), "miner", "default")
        .load_hotkey()
        .unwrap()
        .ss58();
    let validator = Wallet::new(&dir.path().join("wallets"), "validator", "default")
        .load_hotkey()
        .unwrap()
        .ss58();
    assert_eq!(report.validator_hotkey, validator);
    assert_eq!(report.miners.len(), 1);
    let m = &report.miners[0];
    assert_eq!((m.hotkey.as_str(), m.status_code), (miner.as_str(), 200));
    assert_eq!(m.outcome, Outcome::Resolved, "{report:?}");
    // The judge's quality and brevity went into the score; speed is from the measured latency.
    assert_eq!(m.judged, Some((0.8, 1.0)), "{report:?}");
    let limit = (cfg.agent.wall + Duration::from_secs(150)).as_secs_f64();
    let speed = time_score(m.latency_s, limit);
    let expected = final_score(Grading::Tests, true, Some(judged_quality(0.8, 1.0)), speed).value();
    assert!((m.score - expected).abs() < 1e-12, "{report:?}");

    // The chain: both registered, the validator with its permit; the weights went to the miner.
    let chain = LocalChain::new(&dir.path().join("chain"), 62);
    let mg = chain.metagraph().await.unwrap();
    assert_eq!(mg.neurons.len(), 2);
    assert!(mg.by_hotkey(&validator).unwrap().validator_permit);
    let miner_uid = mg.by_hotkey(&miner).unwrap().uid;
    assert_eq!(report.weights, [(miner_uid, 65535)]);
    let log = std::fs::read_to_string(dir.path().join("chain/weights.log")).unwrap();
    assert!(log.contains(&validator) && log.contains("65535"), "{log}");

    // The record carries what came over the wire.
    let records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let all: Vec<_> = records.iter().unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(all.len(), 1);
    let r = &all[0];
    assert_eq!(
        (r.miner_hotkey.as_str(), r.miner_uid),
        (miner.as_str(), miner_uid as i64)
    );
    assert!(r.resolved && !r.model_patch.is_empty());
    assert_eq!((r.judge_quality, r.judge_brevity), (Some(0.8), Some(1.0)));
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(r.agent, "agentao-tools");
    assert_eq!(
        r.prompt_tokens, 2000,
        "two model calls of 1000 prompt tokens"
    );
    assert!(r.cost_usd > 0.0 && r.response_seconds > 0.0);
    // The miner's trajectory came over the wire into the record: both model calls as steps,
    // and the conversation with the model's replies.
    let t: serde_json::Value = serde_json::from_str(&r.trajectory).unwrap();
    assert_eq!(t["steps"].as_array().map(Vec::len), Some(2), "{t}");
    let replies = t["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count());
    assert!(replies.is_some_and(|n| n >= 2), "{t}");
    assert!(t.get("patch").is_none(), "the patch travels on its own");
    // The miner answered `Forecast` with Cerebro before the task; both forecasts sit beside
    // the outcome, and the forecast was scored apart from the coding score.
    let p = r.miner_forecast.expect("the miner's forecast");
    assert!(p > 0.0 && p < 1.0);
    assert!(r.forecast_p_resolve.is_some() && r.forecast_difficulty.is_some());
    let book = ForecastBook::load(&dir.path().join("validator/forecasts.json"));
    let brier = book.brier(&miner).unwrap();
    assert!(
        (brier - brier_event(Some(p), true)).abs() < 1e-12,
        "{brier}"
    );

    // The moving average moved by alpha from zero, and a second round moves it again.
    let scores = Scores::load(&dir.path().join("validator/scores.json"));
    assert!((scores.by_hotkey[&miner] - EMA_ALPHA * m.score).abs() < 1e-12);
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let again = run_round(engine, &task, &llm(&model), &mut records, &cfg, "r2")
        .await
        .unwrap();
    // This time the judge answers prose: no judgement, the score falls back to correctness.
    let m2 = &again.miners[0];
    assert_eq!(m2.judged, None);
    let s2 = m2.score;
    assert!(
        (s2 - final_score(Grading::Tests, true, None, time_score(m2.latency_s, limit)).value())
            .abs()
            < 1e-12
    );
    let scores = Scores::load(&dir.path().join("validator/scores.json"));
    let expected = EMA_ALPHA * s2 + (1.0 - EMA_ALPHA) * EMA_ALPHA * m.score;
    assert!((scores.by_hotkey[&miner] - expected).abs() < 1e-12);
    assert_eq!(
        LocalChain::new(&dir.path().join("chain"), 62)
            .metagraph()
            .await
            .unwrap()
            .neurons
            .len(),
        2
    );
    assert_no_containers(&run, 20);
}

#[tokio::test]
async fn an_identical_later_patch_gets_the_floor_and_silent_miners_keep_their_average() {
    let (task, model) = task_and_model().await;
    let engine = engine().await;
    let run = run_id("round-dup");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tasks.db");
    TaskStore::open(&store).unwrap().put(&task).unwrap();
    let validator = Keypair::generate().0;
    let neuron = |key: &Keypair, port: u16, permit: bool| Neuron {
        uid: 0,
        hotkey: key.ss58(),
        coldkey: String::new(),
        stake: 10.0,
        ip: "127.0.0.1".into(),
        port,
        validator_permit: permit,
    };
    // Two miners with the same agent and model send the same patch; a third is not listening.
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate().0).collect();
    let mut listeners = Vec::new();
    for _ in 0..2 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut neurons = vec![neuron(&validator, 0, true)];
    for (i, key) in keys.iter().enumerate() {
        let port = listeners
            .get(i)
            .map_or(dead_port, |l| l.local_addr().unwrap().port());
        let mut n = neuron(key, port, false);
        n.uid = i as u16 + 1;
        neurons.push(n);
    }
    let mg = Metagraph {
        netuid: 62,
        neurons: neurons.clone(),
    };
    let mut servers = Vec::new();
    for (key, listener) in keys.iter().zip(listeners) {
        let miner = Miner {
            engine: engine.clone(),
            llm: llm(&model),
            agent: agent(&run),
            store: store.clone(),
            model_server: None,
            materializer: None,
            repair: None,
        };
        let axon = miner.serve_on(Axon::new(key.clone(), mg.clone(), AxonConfig::default()));
        servers.push(axon.serve(listener));
    }
    let v = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(validator),
        eval: EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
        time_limit: Duration::from_secs(240),
        judge: Some((llm(&model), 1.0)),
        describer: None,
        forecasts: None,
    };
    let mut scores = Scores::load(&dir.path().join("scores.json"));
    scores.by_hotkey.insert(keys[2].ss58(), 0.5);
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let results = v
        .round(&task, &neurons[1..], &mut scores, &mut records, "dup")
        .await
        .unwrap();
    for s in &servers {
        s.abort();
    }
    assert_eq!(results.len(), 3);
    // Evaluated at once: whichever was judged first got the judgement, the other prose.
    let mut judged: Vec<_> = results[..2].iter().map(|r| r.judged).collect();
    judged.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(judged, [None, Some((0.8, 1.0))]);
    // The answer that came back first keeps its score; the later copy gets the floor.
    let (first, later) = if results[0].latency_s <= results[1].latency_s {
        (&results[0], &results[1])
    } else {
        (&results[1], &results[0])
    };
    for r in [first, later] {
        assert_eq!(r.status_code, 200);
        assert!(r.resolved, "{r:?}");
    }
    assert!(
        !first.duplicate && first.score > DUPLICATE_FLOOR,
        "{first:?}"
    );
    assert!(
        later.duplicate && later.score == DUPLICATE_FLOOR,
        "{later:?}"
    );
    assert_eq!(later.copy_of.as_deref(), Some(first.hotkey.as_str()));
    assert!((scores.by_hotkey[&later.hotkey] - EMA_ALPHA * DUPLICATE_FLOOR).abs() < 1e-12);
    assert!((scores.by_hotkey[&first.hotkey] - EMA_ALPHA * first.score).abs() < 1e-12);
    let silent = &results[2];
    assert_ne!(silent.status_code, 200);
    assert!(!silent.resolved && !silent.duplicate && silent.score == 0.0);
    assert_eq!(
        scores.by_hotkey[&keys[2].ss58()],
        0.5,
        "no answer, no change"
    );
    assert_eq!(records.len(), 3);
    assert_no_containers(&run, 20);
}

/// `agentao miner` and `agentao validator` as two processes on the local chain: the miner
/// publishes its axon's address, the validator's round reaches it, the patch resolves, and the
/// weights land in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_and_validator_commands_run_a_round_between_two_processes() {
    let (task, model) = task_and_model().await;
    let run = run_id("round-cli");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    TaskStore::open(&data.join("tasks.db"))
        .unwrap()
        .put(&task)
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let command = |hotkey: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_agentao"));
        c.env("AGENTAO_DATA_DIR", &data)
            .env("AGENTAO_WALLET_PATH", dir.path().join("wallets"))
            .env("AGENTAO_WALLET_HOTKEY", hotkey)
            .env("AGENTAO_RUN_ID", &run)
            .env("AGENTAO_LOG_FORMAT", "json")
            .env("OPENAI_API_KEY", "test")
            .env("OPENAI_BASE_URL", format!("{}/v1", model.url))
            .env("AGENTAO_MODEL", "gpt-4o-mini")
            .env_remove("AGENTAO_SUBTENSOR_NETWORK");
        c
    };
    let ok = |c: &mut std::process::Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let miner_key = ok(command("miner").args(["subnet", "create-hotkey"]));
    ok(command("validator").args(["subnet", "create-hotkey"]));
    // Registered with a stale address: the miner publishes its real one when it starts.
    ok(command("miner").args(["subnet", "register", "--ip", "10.9.9.9", "--port", "1"]));
    ok(command("validator").args(["subnet", "register", "--validator", "--stake", "100"]));

    // Not registered: the validator says how to register, with exit code 2.
    let out = command("nobody")
        .args(["subnet", "create-hotkey"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = command("nobody")
        .args(["validator", "--rounds", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));

    let mut miner = command("miner")
        .args([
            "miner",
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            &port.to_string(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the axon to listen.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the miner never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mg: serde_json::Value =
        serde_json::from_str(&ok(command("miner").args(["subnet", "metagraph"]))).unwrap();
    let published = mg["neurons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["hotkey"] == miner_key.trim())
        .unwrap()
        .clone();
    assert_eq!(
        (published["ip"].as_str(), published["port"].as_u64()),
        (Some("127.0.0.1"), Some(port as u64))
    );
    let out = ok(command("validator").args(["validator", "--rounds", "1", "--timeout", "240"]));
    let _ = miner.kill();
    let _ = miner.wait();
    let round: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let m = &round["miners"][0];
    assert_eq!(m["hotkey"], miner_key.trim());
    assert_eq!(m["status_code"], 200, "{round}");
    assert_eq!(m["resolved"], true, "{round}");
    // The validator asked the miner's axon for a forecast first and scored it apart.
    let standings = round["forecast_standings"].as_array().unwrap();
    assert_eq!(standings.len(), 1, "{round}");
    assert_eq!(standings[0]["hotkey"], miner_key.trim());
    let book = ForecastBook::load(&data.join("validator/forecasts.json"));
    let event = &book.miners[miner_key.trim()].events[0];
    let p = event.forecast.expect("the miner answered Forecast");
    let brier = standings[0]["brier"].as_f64().unwrap();
    assert!(
        (brier - brier_event(Some(p), true)).abs() < 1e-12,
        "{round}"
    );
    let log = std::fs::read_to_string(data.join("chain/weights.log")).unwrap();
    assert!(log.contains("65535"), "{log}");
    assert_no_containers(&run, 20);
}

/// The local round's second miner: the model-free repair baseline answers beside an agent
/// whose model only submits (an empty patch), over the same wire and through the same harness;
/// its resolved patch gets a score and the weight.
#[tokio::test]
async fn the_repair_miner_resolves_beside_the_agent_and_gets_the_weight() {
    use agentao::forge::repair::RepairConfig;
    let task = forged_tinycalc()
        .await
        .into_iter()
        .find(|t| t.repair.as_ref().is_some_and(|r| r.solved))
        .expect("the repair baseline solved a tinycalc task when it was forged");
    let engine = engine().await;
    let run = run_id("round-repair");
    let server = TestServer::start(move |req| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let answer = if body.get("tools").is_none() {
            json!({"id": "j", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                    "content": r#"{"quality": 0.5, "brevity": 1.0, "reason": "ok"}"#}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
        } else {
            tool_call("c1", "submit", "{}")
        };
        Response::new(200, "application/json", answer.to_string())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tasks.db");
    TaskStore::open(&store).unwrap().put(&task).unwrap();
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let cfg = RoundConfig {
        agent: agent(&run),
        eval: EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
        paths: agentao::config::Paths::new(dir.path(), dir.path()),
        netuid: 62,
        store,
        model_server: None,
        repair_miner: Some(RepairConfig {
            run_id: run.clone(),
            ..RepairConfig::default()
        }),
    };
    let report = run_round(&engine, &task, &llm(&server), &mut records, &cfg, "r1")
        .await
        .unwrap();
    let hotkey = |name: &str| {
        Wallet::new(&dir.path().join("wallets"), name, "default")
            .load_hotkey()
            .unwrap()
            .ss58()
    };
    assert_eq!(report.miners.len(), 2, "{report:?}");
    let repair = report
        .miners
        .iter()
        .find(|m| m.hotkey == hotkey("miner-repair"))
        .unwrap();
    let agent_miner = report
        .miners
        .iter()
        .find(|m| m.hotkey == hotkey("miner"))
        .unwrap();
    assert_eq!(repair.outcome, Outcome::Resolved, "{report:?}");
    assert!(repair.score > 0.0 && repair.charged, "{report:?}");
    assert!(!agent_miner.resolved, "{report:?}");
    let weight = report
        .weights
        .iter()
        .find(|(uid, _)| *uid == repair.uid)
        .map_or(0, |(_, w)| *w);
    assert_eq!(weight, 65535, "{report:?}");
    let records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let rows: Vec<_> = records.iter().unwrap().map(|r| r.unwrap()).collect();
    let row = rows
        .iter()
        .find(|r| r.miner_hotkey == hotkey("miner-repair"))
        .unwrap();
    assert!(row.resolved && row.agent == "agentao-repair" && !row.patch.is_empty());
    assert_no_containers(&run, 20);
}
