//! The validator against miners it did not write: a Python SDK axon built on the original
//! subnet's class exactly as published, one that answers garbage, one that is not there, and
//! one that answers 200 MB; what gets scored, charged and stored.

use std::process::{Command, Stdio};
use std::time::Duration;

use agentao::dataset::RecordStore;
use agentao::eval::{EvalConfig, Outcome};
use agentao::neurons::forecast::{ForecastBook, Forecasting};
use agentao::neurons::validator::{AnswerOutcome, EMA_ALPHA, Scores, Validator};
use agentao::subnet::{CallFailure, Dendrite, Keypair, Neuron};
use agentao::tasks::{Task, TaskStore};

use crate::axon_limits::hostile_axon;
use crate::forge::forged_tinycalc;
use crate::subnet::{ORIGINAL, free_port};
use crate::support::{
    Response, TestServer, assert_no_containers, base_image, engine, run_id, sdk_axon, sdk_hotkey,
};

fn miner(uid: u16, hotkey: &str, port: u16) -> Neuron {
    Neuron {
        uid,
        hotkey: hotkey.to_owned(),
        coldkey: String::new(),
        stake: 0.0,
        ip: "127.0.0.1".into(),
        port,
        validator_permit: false,
    }
}

/// Issue 17, item 1: an SDK axon with the original class (no defaults, no hash fields) builds
/// its synapse from `bt_header_input_obj_*` headers and hashes nothing; our validator gets its
/// patch and scores it. A miner answering garbage and one that is down are recorded as
/// `protocol_error` and `unreachable`, not as empty patches; the garbage is charged a 0 (issue
/// 20: garbage keeps lowering the average), the miner that is down keeps its average.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_round_scores_an_original_protocol_miner_and_records_failures_apart() {
    let task = forged_tinycalc()
        .await
        .into_iter()
        .next()
        .expect("a forged task");
    let engine = engine().await;
    let run = run_id("validator-original");
    let dir = tempfile::tempdir().unwrap();
    let key = sdk_hotkey(dir.path(), "miner");
    let gold = dir.path().join("gold.diff");
    std::fs::write(&gold, &task.patch).unwrap();
    let port = free_port();
    let script = format!(
        r#"{ORIGINAL}
w = bt.Wallet(name="miner", hotkey="default", path=sys.argv[1])
gold = open(sys.argv[2]).read()
def forward(s: CodingTask) -> CodingTask:
    # The task's text must have come through the body.
    s.patch = gold if (s.repo, s.problem_statement) == (sys.argv[3], sys.argv[4]) else ""
    return s
ax = bt.Axon(wallet=w, port={port}, ip="127.0.0.1", external_ip="127.0.0.1")
ax.attach(forward_fn=forward)
ax.start()
time.sleep(600)
"#
    );
    let mut child = sdk_axon(
        &script,
        &[
            std::ffi::OsStr::new(&dir.path()),
            std::ffi::OsStr::new(&gold),
            // A forged task's `repo` on the wire names its release (issue 16).
            std::ffi::OsStr::new(&format!("pypi:{}=={}", task.package, task.pypi_version)),
            std::ffi::OsStr::new(&task.problem_statement),
        ],
        port,
        Stdio::null(),
    )
    .await;
    let garbage =
        TestServer::start(|_| Response::new(200, "text/html", "<html>not a synapse</html>")).await;
    let garbage_port: u16 = garbage.url.rsplit(':').next().unwrap().parse().unwrap();
    let (g, d) = (Keypair::generate().0, Keypair::generate().0);
    let miners = [
        miner(1, &key.ss58(), port),
        miner(2, &g.ss58(), garbage_port),
        miner(3, &d.ss58(), free_port()),
    ];
    let v = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(Keypair::generate().0),
        eval: EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
        time_limit: Duration::from_secs(120),
        judge: None,
        describer: None,
        // None of these miners answers `Forecast`: each is scored 0.5 imputed.
        forecasts: Some(Forecasting::new(
            agentao::cerebro::shipped_model().unwrap(),
            &dir.path().join("forecasts.json"),
        )),
    };
    let mut scores = Scores::load(&dir.path().join("scores.json"));
    for m in &miners {
        scores.by_hotkey.insert(m.hotkey.clone(), 0.5);
    }
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let results = v
        .round(&task, &miners, &mut scores, &mut records, "original")
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let python_miner = &results[0];
    assert_eq!(python_miner.status_code, 200, "{python_miner:?}");
    assert_eq!(python_miner.outcome, Outcome::Resolved, "{python_miner:?}");
    assert!(python_miner.charged && python_miner.score > 0.0);
    assert!(
        (scores.by_hotkey[&key.ss58()] - (EMA_ALPHA * python_miner.score + 0.45)).abs() < 1e-12
    );
    for (r, kind, charged, average) in [
        (&results[1], CallFailure::ProtocolError, true, 0.45),
        (&results[2], CallFailure::Unreachable, false, 0.5),
    ] {
        assert!(
            matches!(&r.outcome, AnswerOutcome::NoAnswer { kind: k, .. } if *k == kind),
            "{r:?}"
        );
        assert!(
            r.charged == charged && r.score == 0.0 && !r.resolved,
            "{r:?}"
        );
        assert!(
            (scores.by_hotkey[&r.hotkey] - average).abs() < 1e-12,
            "{r:?}"
        );
    }
    assert_eq!(scores.health[&results[1].hotkey].malformed, 1);
    assert_eq!(scores.health[&results[2].hotkey].unreachable, 1);
    assert_eq!(scores.health[&results[0].hotkey].resolved, 1);
    // Records go in as answers are scored: those without a patch first.
    let all: Vec<_> = records.iter().unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), 3);
    let stored: Vec<_> = results
        .iter()
        .map(|r| {
            all.iter()
                .find(|s| s.miner_hotkey == r.hotkey)
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(stored[0].model_patch, task.patch);
    assert_eq!(stored[0].outcome, "resolved");
    assert!(stored[0].resolved);
    assert_eq!(
        (stored[1].outcome.as_str(), stored[1].model_patch.as_str()),
        ("protocol_error", "")
    );
    assert_eq!(
        (stored[2].outcome.as_str(), stored[2].model_patch.as_str()),
        ("unreachable", "")
    );
    assert!(
        stored[1..]
            .iter()
            .all(|r| r.final_score == 0.0 && r.time_score == 0.0)
    );
    // The forecasts sit beside the outcome in every record; the book scored each miner's
    // missing forecast as 0.5, apart from the coding scores.
    let beta = task.predicted_difficulty.as_ref().unwrap().beta;
    for r in &stored {
        assert_eq!(r.miner_forecast, None);
        assert!((r.forecast_difficulty.unwrap() - beta).abs() < 1e-9);
        assert!(r.forecast_p_resolve.is_some_and(|p| p > 0.0 && p < 1.0));
    }
    let book = ForecastBook::load(&dir.path().join("forecasts.json"));
    for m in &miners {
        assert_eq!(book.brier(&m.hotkey), Some(0.25), "{}", m.hotkey);
    }
    assert_no_containers(&run, 20);
}

/// Peak resident memory (VmHWM) of a process in bytes, read from /proc.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// `agentao validator --rounds 1` against a miner at `port`: its peak RSS (sampled from
/// /proc while it runs), the round's JSON and the dataset's records file.
async fn validator_round_against(
    port: u16,
    task: &Task,
    model: &TestServer,
) -> (
    u64,
    serde_json::Value,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    TaskStore::open(&data.join("tasks.db"))
        .unwrap()
        .put(task)
        .unwrap();
    let run = run_id("validator-rss");
    let command = |hotkey: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
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
    let ok = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    ok(command("miner").args(["subnet", "create-hotkey"]));
    ok(command("validator").args(["subnet", "create-hotkey"]));
    ok(command("miner").args([
        "subnet",
        "register",
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]));
    ok(command("validator").args(["subnet", "register", "--validator", "--stake", "100"]));
    let child = command("validator")
        .args(["validator", "--rounds", "1", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let sampler = tokio::task::spawn_blocking(move || {
        let mut peak = 0;
        while let Some(p) = peak_rss(pid) {
            peak = peak.max(p);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let peak = sampler.await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let round: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let records = data.join("dataset").join("records.jsonl");
    (peak, round, records, dir)
}

/// Issue 13: a miner answering 200 MB pushed the validator to 798 MB RSS and added 200 MB to
/// `records.jsonl`. Measured on the real `agentao validator` process against the same round
/// with a miner that is down: the peak RSS grows by less than 100 MB, and the record holds no
/// patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_answer_leaves_the_validator_small_and_the_store_clean() {
    let engine = engine().await;
    let image = base_image(&engine).await;
    let task: Task = serde_json::from_value(serde_json::json!({
        "instance_id": "hostile__1", "repo": "pypi/hostile", "patch": "diff",
        "problem_statement": "fix it", "FAIL_TO_PASS": ["t::a"], "PASS_TO_PASS": [],
        "image": image}))
    .unwrap();
    let model = TestServer::start(|_| Response::new(500, "text/plain", "not used")).await;
    let (baseline, round, records, _d1) = validator_round_against(free_port(), &task, &model).await;
    assert_eq!(
        round["miners"][0]["outcome"]["kind"], "unreachable",
        "{round}"
    );
    let base_bytes = std::fs::metadata(&records).unwrap().len();

    let (port, sent) = hostile_axon(true).await;
    let (hostile, round, records, _d2) = validator_round_against(port, &task, &model).await;
    let bytes = std::fs::metadata(&records).unwrap().len();
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "validator peak RSS: {:.1} MB with a miner that is down, {:.1} MB with one streaming 200 MB \
         ({:.1} MB sent before the hang-up); records.jsonl {base_bytes} and {bytes} bytes",
        baseline as f64 / 1e6,
        hostile as f64 / 1e6,
        sent as f64 / 1e6
    );
    assert!(baseline > 0 && hostile > 0);
    assert!(
        hostile < baseline + 100_000_000,
        "peak RSS {hostile} against a baseline of {baseline}"
    );
    let m = &round["miners"][0];
    assert_eq!(m["outcome"]["kind"], "protocol_error", "{round}");
    assert!(
        m["outcome"]["message"].as_str().unwrap().contains("cap"),
        "{round}"
    );
    assert_eq!(
        m["charged"], true,
        "an answer over the cap is garbage, charged a 0"
    );
    let stored: Vec<_> = RecordStore::open(&records)
        .unwrap()
        .iter()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].outcome.as_str(), stored[0].model_patch.as_str()),
        ("protocol_error", "")
    );
    assert!(bytes < base_bytes + 4096, "{bytes} bytes stored");
}

/// Starts an SDK axon on the original class that answers every task with the patch in
/// `patch_file`; returns the child and the miner's hotkey once it listens.
async fn python_miner(
    dir: &std::path::Path,
    name: &str,
    patch_file: &std::path::Path,
    port: u16,
) -> (std::process::Child, String) {
    let key = sdk_hotkey(dir, name);
    let script = format!(
        r#"{ORIGINAL}
w = bt.Wallet(name=sys.argv[2], hotkey="default", path=sys.argv[1])
answer = open(sys.argv[3]).read()
def forward(s: CodingTask) -> CodingTask:
    s.patch = answer
    return s
ax = bt.Axon(wallet=w, port={port}, ip="127.0.0.1", external_ip="127.0.0.1")
ax.attach(forward_fn=forward)
ax.start()
time.sleep(600)
"#
    );
    let child = sdk_axon(
        &script,
        &[
            std::ffi::OsStr::new(&dir),
            std::ffi::OsStr::new(&name),
            std::ffi::OsStr::new(&patch_file),
        ],
        port,
        Stdio::null(),
    )
    .await;
    (child, key.ss58())
}

/// Issue 13: miners answering with harness bypasses (one refused on what applying changed,
/// one forging results at run time) score 0, are charged for it, and the record says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_answering_with_bypasses_score_zero_with_the_reason_recorded() {
    let tasks = forged_tinycalc().await;
    let (task, cases) = tasks
        .iter()
        .find_map(|t| agentao::eval::adversarial::corpus(t).ok().map(|c| (t, c)))
        .expect("a forged task the corpus can aim at");
    let engine = engine().await;
    let run = run_id("validator-bypass");
    let dir = tempfile::tempdir().unwrap();
    let pick = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name}"))
            .patch
            .clone()
    };
    let bypasses = [
        (
            "prefix",
            pick("test file behind an arbitrary -p1 prefix"),
            "patch_rejected",
            "tests that judge",
        ),
        (
            "records",
            pick("fake records printed, marker built at run time"),
            "tampered",
            "forged signature",
        ),
    ];
    let mut children = Vec::new();
    let mut miners = Vec::new();
    for (i, (name, patch, ..)) in bypasses.iter().enumerate() {
        let file = dir.path().join(format!("{name}.diff"));
        std::fs::write(&file, patch).unwrap();
        let port = free_port();
        let (child, hotkey) = python_miner(dir.path(), name, &file, port).await;
        children.push(child);
        miners.push(miner(i as u16 + 1, &hotkey, port));
    }
    let v = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(Keypair::generate().0),
        eval: EvalConfig {
            run_id: run.clone(),
            test_timeout: Duration::from_secs(30),
            ..EvalConfig::default()
        },
        time_limit: Duration::from_secs(120),
        judge: None,
        describer: None,
        forecasts: None,
    };
    let mut scores = Scores::load(&dir.path().join("scores.json"));
    for m in &miners {
        scores.by_hotkey.insert(m.hotkey.clone(), 0.5);
    }
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let results = v
        .round(task, &miners, &mut scores, &mut records, "bypass")
        .await
        .unwrap();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let all: Vec<_> = records.iter().unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), bypasses.len());
    // Evaluated at once, recorded as each ends: matched by hotkey.
    let stored: Vec<_> = results
        .iter()
        .map(|r| all.iter().find(|s| s.miner_hotkey == r.hotkey).unwrap())
        .collect();
    for ((_, _, kind, why), (r, rec)) in bypasses.iter().zip(results.iter().zip(stored)) {
        assert_eq!(r.status_code, 200, "{r:?}");
        assert!(!r.resolved && r.score == 0.0 && r.charged, "{r:?}");
        assert!(
            (scores.by_hotkey[&r.hotkey] - 0.45).abs() < 1e-12,
            "average moved toward 0"
        );
        assert_eq!(rec.outcome, *kind, "{rec:?}");
        assert!(rec.outcome_reason.contains(why), "{}", rec.outcome_reason);
        assert_eq!(rec.final_score, 0.0);
        assert!(!rec.resolved);
    }
    assert_no_containers(&run, 20);
}
