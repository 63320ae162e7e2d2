//! A round with nothing shared (issue 16) and the original protocol's miner side (issue 17,
//! item 2): real processes, real clients.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agentao::materialize::{MaterializeConfig, Materializer};
use agentao::subnet::{Axon, AxonConfig, Keypair, Metagraph};
use agentao::tasks::TaskStore;

use crate::materialize::{at_version, describe, index, remove_image};
use crate::round::task_and_model;
use crate::subnet::{ORIGINAL, neuron};
use crate::support::{
    assert_no_containers, base_image, engine, run_id, scripted_miner, sdk_axon, sdk_hotkey,
    sdk_json,
};

/// Seconds of the miner's `materialised (<kind>)` log lines (JSON logs).
fn materialised(log: &str, kind: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(&format!("materialised ({kind})")))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v.pointer("/fields/seconds")
                .or_else(|| v.get("seconds"))
                .and_then(|s| s.as_f64())
        })
        .collect()
}

/// Two processes, two data directories, two cache directories, two wallet folders. The one
/// thing shared is the local chain's folder (the miner's `<data>/chain` is a symlink to the
/// validator's), standing in for the chain. The miner has never seen the task: it downloads
/// the sdist from its index, fetches the pinned wheels, gets the validator's image tag, the
/// scripted model fixes the bug, the validator scores it resolved; the second round is warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_with_nothing_shared_resolves_a_task_the_miner_never_saw() {
    let (task, model) = task_and_model().await;
    let engine = engine().await;
    base_image(&engine).await;
    let run = run_id("travel");
    let version = "1.0.2";
    let root = tempfile::tempdir().unwrap();
    let idx = index(version, &root.path().join("ran")).await;
    let url = format!("{}/simple", idx.url);
    let task = at_version(&task, version);
    let side = |who: &str, what: &str| root.path().join(who).join(what);
    let d = describe(&task, &side("validator", "cache"), &url, &run).await;
    let mut stored = task.clone();
    stored.image = d.spec.environment.image.clone();
    TaskStore::open(&side("validator", "data").join("tasks.db"))
        .unwrap()
        .put(&stored)
        .unwrap();
    std::fs::create_dir_all(side("validator", "data").join("chain")).unwrap();
    std::fs::create_dir_all(side("miner", "data")).unwrap();
    std::os::unix::fs::symlink(
        side("validator", "data").join("chain"),
        side("miner", "data").join("chain"),
    )
    .unwrap();
    let command = |who: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
        c.env("AGENTAO_DATA_DIR", side(who, "data"))
            .env("AGENTAO_CACHE_DIR", side(who, "cache"))
            .env("AGENTAO_WALLET_PATH", side(who, "wallets"))
            .env("AGENTAO_WALLET_HOTKEY", who)
            .env("AGENTAO_RUN_ID", &run)
            .env("AGENTAO_LOG_FORMAT", "json")
            .env("PIP_INDEX_URL", &url)
            .env("OPENAI_API_KEY", "test")
            .env("OPENAI_BASE_URL", format!("{}/v1", model.url))
            .env("AGENTAO_MODEL", "gpt-4o-mini")
            .env_remove("AGENTAO_SUBTENSOR_NETWORK");
        c
    };
    let ok = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    ok(command("miner").args(["subnet", "create-hotkey"]));
    ok(command("validator").args(["subnet", "create-hotkey"]));
    let port = crate::subnet::free_port();
    ok(command("miner").args([
        "subnet",
        "register",
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]));
    ok(command("validator").args(["subnet", "register", "--validator", "--stake", "100"]));
    let log_path = root.path().join("miner.log");
    let mut miner = command("miner")
        .args([
            "miner",
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            &port.to_string(),
        ])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the miner never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = command("validator")
        .args([
            "validator",
            "--rounds",
            "2",
            "--interval",
            "1",
            "--timeout",
            "240",
        ])
        .output()
        .unwrap();
    let _ = miner.kill();
    let _ = miner.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(out.status.success(), "{out:?}\nminer log:\n{log}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remote task kinds: none, public-answer"),
        "{stderr}"
    );
    let rounds: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("miners").is_some())
        .collect();
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    for r in &rounds {
        let m = &r["miners"][0];
        assert_eq!(m["status_code"], 200, "{r}\n{log}");
        assert_eq!(m["resolved"], true, "{r}\n{log}");
    }
    let (cold, warm) = (materialised(&log, "cold"), materialised(&log, "warm"));
    assert_eq!((cold.len(), warm.len()), (1, 1), "{log}");
    eprintln!(
        "nothing shared: materialised cold {:.2}s, warm {:.3}s",
        cold[0], warm[0]
    );
    // The miner's own cache holds the sdist it fetched; its data directory no task.
    assert!(
        side("miner", "cache")
            .join("materialize/sdists/tinycalc-1.0.2.tar.gz")
            .is_file()
    );
    assert!(
        !side("miner", "data").join("tasks.db").exists() || {
            TaskStore::open(&side("miner", "data").join("tasks.db"))
                .unwrap()
                .all(None)
                .unwrap()
                .is_empty()
        }
    );
    assert_no_containers(&run, 20);
    remove_image(&stored.image);
}

/// Writes the tinycalc fixture with `bug` applied as a one-commit repository at `dir`.
fn buggy_repository(dir: &Path, bug: &str) {
    let fixtures = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tinycalc"
    ));
    for (path, bytes) in crate::forge::tree(fixtures) {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    std::fs::write(dir.join("bug.diff"), bug).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["apply", "bug.diff"]);
    std::fs::remove_file(dir.join("bug.diff")).unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "buggy"]);
}

/// Issue 17, item 2: the original validator's request (`repo` = owner/name and a statement,
/// through the Python SDK 10.5 with the original class, no defaults) makes our miner clone the
/// repository (a local one behind a `file://` base URL), build its environment from the
/// checkout and run the agent: a 200 with a non-empty patch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_dendrite_with_the_original_fields_gets_a_patch_from_the_cloned_repository() {
    let (task, model) = task_and_model().await;
    let engine = engine().await;
    base_image(&engine).await;
    let run = run_id("original");
    let dir = tempfile::tempdir().unwrap();
    buggy_repository(&dir.path().join("git/acme/tinycalc"), &task.bug_patch);
    let caller = sdk_hotkey(dir.path(), "validator");
    let (ours, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &caller.ss58(), true, 100.0)],
    };
    let materializer = Materializer::new(
        engine.clone(),
        MaterializeConfig {
            git_base_url: format!("file://{}", dir.path().join("git").display()),
            ..MaterializeConfig::new(&dir.path().join("cache"))
        },
    );
    let miner = scripted_miner(
        &engine,
        &model.url,
        &run,
        dir.path().join("none.db"),
        Some(std::sync::Arc::new(materializer)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = miner
        .serve_on(Axon::new(ours.clone(), metagraph, AxonConfig::default()))
        .serve(listener);
    let script = format!(
        r#"{ORIGINAL}
w = bt.Wallet(name="validator", hotkey="default", path=sys.argv[1])
d = bt.Dendrite(wallet=w)
info = bt.AxonInfo(version=1, ip="127.0.0.1", port={port}, ip_type=4, hotkey=sys.argv[2], coldkey=sys.argv[2])
out = []
for repo in ["acme/tinycalc", "acme/missing"]:
    r = d.query(info, CodingTask(repo=repo, problem_statement=sys.argv[3]), timeout=300)
    out.append([r.axon.status_code, r.patch])
print(json.dumps(out))
"#
    );
    let got = sdk_json(
        script,
        vec![
            dir.path().display().to_string(),
            ours.ss58(),
            task.problem_statement.clone(),
        ],
    )
    .await;
    server.abort();
    let (file, buggy, fixed) = crate::agent::one_line_fix(&task);
    let patch = got[0][1].as_str().unwrap_or_default();
    assert_eq!(got[0][0], 200, "{got}");
    assert!(patch.contains(&format!("+++ b/{file}")), "{got}");
    assert!(
        patch.contains(&format!("-{buggy}")) && patch.contains(&format!("+{fixed}")),
        "{got}"
    );
    // A repository that is not there: still a 200, with an empty patch.
    assert_eq!(got[1][0], 200, "{got}");
    assert_eq!(got[1][1], "", "{got}");
    assert_no_containers(&run, 20);
}

/// Issue 16, item 5: rows of tasks still in rotation go out without their answers (the gold
/// patch, SWE-bench's `patch`, and a miner's `model_patch` that resolved them); a retired
/// task's rows carry them.
#[test]
fn the_export_withholds_the_answers_of_tasks_in_rotation() {
    use agentao::dataset::{ExportOptions, Record, RecordStore, export};
    use arrow_array::Array as _;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = tempfile::tempdir().unwrap();
    let mut store = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let task = |id: &str| -> agentao::tasks::Task {
        serde_json::from_value(serde_json::json!({
            "instance_id": id, "repo": "pypi/x", "patch": "GOLD", "problem_statement": "s",
            "FAIL_TO_PASS": [], "PASS_TO_PASS": []
        }))
        .unwrap()
    };
    for (id, resolved) in [("serving", true), ("serving", false), ("retired", true)] {
        let mut r = Record::for_task(&task(id));
        r.resolved = resolved;
        r.model_patch = format!("MINER-{resolved}");
        store.append(&mut r).unwrap();
    }
    let out = dir.path().join("export");
    let opts = ExportOptions {
        withhold: ["serving".to_owned()].into(),
        ..ExportOptions::default()
    };
    export(&store, &out, &opts).unwrap();
    let shard = std::fs::read_dir(out.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(shard).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |name: &str| {
            let c = batch.column_by_name(name).unwrap();
            let c = c
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap()
                .clone();
            (0..c.len()).map(move |i| c.value(i).to_owned())
        };
        let ids: Vec<String> = col("instance_id").collect();
        let gold: Vec<String> = col("patch").collect();
        let patch: Vec<String> = col("model_patch").collect();
        for i in 0..ids.len() {
            rows.push((ids[i].clone(), gold[i].clone(), patch[i].clone()));
        }
    }
    assert_eq!(
        rows,
        [
            ("serving".into(), "".into(), "".into()),
            ("serving".into(), "".into(), "MINER-false".into()),
            ("retired".into(), "GOLD".into(), "MINER-true".into()),
        ]
    );
}

/// The description's fields round-trip through a Python axon speaking agentao's class
/// (`src/cli/bench/coding_task.py`): the SDK verifies the signed body hash, `spec_hash`
/// included, and answers with the description and bundle as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_round_trips_through_a_python_axon() {
    use agentao::subnet::{AxonTarget, CodingTask, Dendrite};
    let dir = tempfile::tempdir().unwrap();
    let miner = sdk_hotkey(dir.path(), "miner");
    let port = crate::subnet::free_port();
    let script = format!(
        r#"{}
w = bt.Wallet(name="miner", hotkey="default", path=sys.argv[1])
def forward(s: CodingTask) -> CodingTask:
    s.patch = "seen " + s.spec["hash"] + " " + str(len(s.bundle))
    return s
ax = bt.Axon(wallet=w, port={port}, ip="127.0.0.1", external_ip="127.0.0.1")
ax.attach(forward_fn=forward)
ax.start()
time.sleep(120)
"#,
        crate::subnet::AGENTAO
    );
    let mut child = sdk_axon(
        &script,
        &[std::ffi::OsStr::new(&dir.path())],
        port,
        std::process::Stdio::null(),
    )
    .await;
    let spec =
        serde_json::json!({"spec_version": 1, "hash": "ab".repeat(32), "nested": {"a": [1, 2]}});
    let task = CodingTask {
        repo: "pypi:tinycalc==1.0.0".into(),
        problem_statement: "fix it".into(),
        task_id: "t".into(),
        time_limit: 60.0,
        spec_hash: "ab".repeat(32),
        spec: Some(spec.clone()),
        bundle: "KLUv/QA=".into(),
        ..CodingTask::default()
    };
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: miner.ss58(),
    };
    let r = Dendrite::new(Keypair::generate().0)
        .call(&target, task, Duration::from_secs(20))
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status_code, 200, "{}", r.status_message);
    let body = r.synapse.unwrap().body;
    assert_eq!(
        body.patch.as_deref(),
        Some(format!("seen {} 8", "ab".repeat(32)).as_str())
    );
    assert_eq!(body.spec, Some(spec));
    assert_eq!(
        (body.spec_hash, body.bundle),
        ("ab".repeat(32), "KLUv/QA=".to_owned())
    );
}

/// Issue 16, item 4: a miner answering for another description (its echoed hash differs from
/// the one sent) gets `invalid_answer` and a 0, even with the right patch; it is not evaluated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_another_description_is_recorded_as_invalid() {
    use agentao::dataset::RecordStore;
    use agentao::eval::EvalConfig;
    use agentao::forge::ForgeConfig;
    use agentao::neurons::validator::{Scores, Validator};
    use agentao::subnet::Dendrite;
    let (task, _model) = task_and_model().await;
    let engine = engine().await;
    let run = run_id("invalid-echo");
    let dir = tempfile::tempdir().unwrap();
    let idx = index("1.0.0", &dir.path().join("ran")).await;
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 100.0)],
    };
    let gold = task.patch.clone();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = sent.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Axon::new(ours.clone(), metagraph, AxonConfig::default())
        .coding_task(move |s| {
            let (gold, seen) = (gold.clone(), seen.clone());
            async move {
                let mut t = s.body;
                *seen.lock().unwrap() = t.spec_hash.clone();
                t.patch = Some(gold);
                t.spec_hash = "0".repeat(64);
                t
            }
        })
        .serve(listener);
    let mut forge = ForgeConfig::new(&dir.path().join("cache"));
    forge.index_url = Some(format!("{}/simple", idx.url));
    forge.run_id = run.clone();
    let v = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(validator),
        eval: EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
        time_limit: Duration::from_secs(60),
        judge: None,
        describer: Some(agentao::neurons::validator::Describer::new(forge)),
        forecasts: None,
    };
    let mut miner = neuron(1, &ours.ss58(), false, 0.0);
    miner.port = port;
    let mut scores = Scores::load(&dir.path().join("scores.json"));
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let results = v
        .round(&task, &[miner], &mut scores, &mut records, "r")
        .await
        .unwrap();
    server.abort();
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 64, "the validator sent a description");
    let r = &results[0];
    assert_eq!(r.outcome.kind(), "invalid_answer", "{r:?}");
    assert!(r.charged && r.score == 0.0 && !r.resolved, "{r:?}");
    let record = records.iter().unwrap().next().unwrap().unwrap();
    assert_eq!(record.outcome, "invalid_answer");
    assert!(
        record.outcome_reason.contains(&sent),
        "{}",
        record.outcome_reason
    );
}
