//! Cerebro through the real binary (`agentao cerebro train|eval|predict`), its use on agentao's
//! own tasks (a forged task, a GitHub-shaped one, an open issue) and the `Forecast` synapse over
//! the real wire: a miner answering with the model, miners that never answer, the validator's
//! Brier window. No Docker.

use std::process::Command;
use std::time::{Duration, Instant};

use agentao::cerebro::{self, Dataset, Model, TaskFacts};
use agentao::dataset::Record;
use agentao::neurons::forecast::{Forecasting, MinerForecaster, WINDOW, brier_event};
use agentao::subnet::{Axon, AxonConfig, AxonTarget, Dendrite, Keypair, Metagraph};
use agentao::tasks::Task;

use crate::subnet::{free_port, neuron};

fn agentao(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
    c.env("AGENTAO_LOG_FORMAT", "json")
        .env("AGENTAO_DATA_DIR", data_dir)
        .env_remove("RUST_LOG");
    c
}

/// The forged fixture task (tinycalc: an arithmetic swap, F2P tests, no test patch).
fn forged() -> Task {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tinycalc.task.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A task shaped like a closed GitHub issue with its merged pull request: `owner/name`, the
/// issue's text, the PR's code and test diffs (none of the shipped tasks).
fn github() -> Task {
    serde_json::from_value(serde_json::json!({
        "instance_id": "octo__widgets-412",
        "repo": "octo/widgets",
        "base_commit": "0123456789abcdef0123456789abcdef01234567",
        "problem_statement": "Widget.resize() ignores min_width\n\nCalling `Widget.resize(10)` on a widget with `min_width=20` gives width 10.\n\n```python\nw = Widget(min_width=20)\nw.resize(10)\nassert w.width == 20\n```\n",
        "patch": "diff --git a/widgets/core.py b/widgets/core.py\n--- a/widgets/core.py\n+++ b/widgets/core.py\n@@ -40,6 +40,7 @@ class Widget:\n     def resize(self, width):\n-        self.width = width\n+        self.width = max(width, self.min_width)\n",
        "test_patch": "diff --git a/tests/test_core.py b/tests/test_core.py\n--- a/tests/test_core.py\n+++ b/tests/test_core.py\n@@ -1,3 +1,8 @@\n+def test_resize_respects_min_width():\n+    w = Widget(min_width=20)\n+    w.resize(10)\n+    assert w.width == 20\n",
        "FAIL_TO_PASS": "[\"tests/test_core.py::test_resize_respects_min_width\"]",
        "PASS_TO_PASS": "[]",
        "created_at": "2026-11-01T10:00:00Z",
    }))
    .unwrap()
}

#[test]
fn a_forged_task_a_github_task_and_an_open_issue_each_get_a_difficulty() {
    let model = cerebro::shipped_model().unwrap();
    let mut open_issue = github();
    open_issue.patch.clear();
    open_issue.test_patch.clear();
    let mut seen = Vec::new();
    for (mut task, head) in [(forged(), "fix"), (github(), "fix"), (open_issue, "text")] {
        cerebro::annotate(&model, &mut task);
        let d = task.predicted_difficulty.clone().expect("a difficulty");
        assert_eq!(d.head, head, "{}", task.instance_id);
        assert!(
            d.beta.is_finite() && (0.0..1.0).contains(&d.p_typical),
            "{d:?}"
        );
        assert!(
            d.human_minutes.is_some_and(|m| m > 1.0 && m < 2000.0),
            "{d:?}"
        );
        // Stored and read back, and carried into the dataset's record.
        let back: Task = serde_json::from_str(&serde_json::to_string(&task).unwrap()).unwrap();
        let read = back.predicted_difficulty.expect("kept");
        assert!((read.beta - d.beta).abs() < 1e-12 && read.head == d.head);
        assert_eq!(Record::for_task(&task).forecast_difficulty, Some(d.beta));
        seen.push(d.beta);
    }
    // The open issue is read from its text alone, so it is not the same task to the model.
    assert_ne!(seen[1], seen[2]);
    // A task without a prediction reads as before and leaves the record's field empty.
    let plain = forged();
    assert!(plain.predicted_difficulty.is_none());
    assert!(
        !serde_json::to_string(&plain)
            .unwrap()
            .contains("predicted_difficulty")
    );
}

#[test]
fn train_then_predict_on_unseen_tasks_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("m").join("model.json");
    let started = Instant::now();
    let out = agentao(dir.path())
        .args(["cerebro", "train", "--out"])
        .arg(&model_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tasks"], 393);
    assert_eq!(report["responses"], 52_662);
    eprintln!(
        "cerebro train (debug build): {:.1} s in the command, {:.1} s in all; model {} bytes",
        report["seconds"].as_f64().unwrap(),
        started.elapsed().as_secs_f64(),
        report["bytes"]
    );
    // The file loads without training, and is the model the binary ships.
    let trained = Model::load(&model_path).unwrap();
    let shipped = cerebro::shipped_model().unwrap();
    for t in Dataset::shipped().unwrap().tasks.iter().step_by(40) {
        let (a, b) = (trained.forecast(t), shipped.forecast(t));
        assert!(
            (a.difficulty - b.difficulty).abs() < 1e-3,
            "{}: the shipped model is stale ({} vs {}): `agentao cerebro train --out data/cerebro/model.json`",
            t.instance_id,
            a.difficulty,
            b.difficulty
        );
    }

    let tasks = dir.path().join("unseen.jsonl");
    let rows: Vec<String> = [
        serde_json::to_value(forged()),
        serde_json::to_value(github()),
    ]
    .into_iter()
    .map(|v| v.unwrap().to_string())
    .collect();
    std::fs::write(&tasks, rows.join("\n\n") + "\n").unwrap();
    let agents = [
        "20231010_rag_claude2",
        &trained.agents[trained.agents.len() - 1],
    ];
    let out = agentao(dir.path())
        .args(["cerebro", "predict", "--model-file"])
        .arg(&model_path)
        .arg("--tasks")
        .arg(&tasks)
        .args(["--agent", agents[0], "--agent", agents[1]])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one row per (task, agent)");
    for (i, row) in lines.iter().enumerate() {
        assert_eq!(
            row["instance_id"],
            ["tinycalc__add-sign", "octo__widgets-412"][i / 2]
        );
        assert_eq!(row["agent"], agents[i % 2]);
        let p = row["p_resolve"].as_f64().unwrap();
        assert!(p > 0.0 && p < 1.0, "{row}");
        assert!(row["difficulty"].as_f64().unwrap().is_finite());
    }
    // The same task is easier for the later, stronger system.
    assert!(lines[1]["p_resolve"].as_f64() > lines[0]["p_resolve"].as_f64());
}

#[test]
fn eval_reports_the_model_against_the_ability_only_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = agentao(dir.path())
        .args(["cerebro", "eval", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "cerebro eval (debug build): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let heads = r["heads"].as_array().unwrap();
    let auroc = |i: usize| heads[i]["auroc"].as_f64().unwrap();
    assert_eq!(r["folds"], 5);
    assert!(heads[0]["name"].as_str().unwrap().starts_with("fix"));
    assert!(heads[2]["name"].as_str().unwrap().starts_with("baseline"));
    // The issue's target, and well clear of agent ability alone (about 0.72).
    assert!(auroc(0) >= 0.80, "{}", auroc(0));
    assert!(auroc(2) < 0.75 && auroc(0) > auroc(2) + 0.05);
    assert!(heads[0]["brier"].as_f64() < heads[2]["brier"].as_f64());
    for h in heads {
        let n: u64 = h["calibration"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(n, 52_662, "every outcome forecast once");
        assert_eq!(h["auroc_per_fold"].as_array().unwrap().len(), 5);
    }
    let effort = &r["effort"][0];
    assert!(effort["bucket_accuracy"].as_f64() > effort["majority_accuracy"].as_f64());
    let seen = r["new_agents"]["by_outcomes_seen"].as_array().unwrap();
    // An agent never trained on: a few outcomes make most of the difference.
    assert!(seen[2][1].as_f64() > seen[0][1].as_f64());
}

#[test]
fn predict_without_agents_writes_every_known_agent_with_the_shipped_model() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("t.jsonl");
    std::fs::write(
        &tasks,
        r#"{"instance_id": "x__y-1", "repo": "x/y", "problem_statement": "crash on empty input"}"#,
    )
    .unwrap();
    let out = agentao(dir.path())
        .args(["cerebro", "predict", "--tasks"])
        .arg(&tasks)
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 134);
    assert!(rows.iter().all(|r| r["head"] == "text"));
}

#[test]
fn bad_input_is_a_one_line_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("t.jsonl");
    std::fs::write(
        &tasks,
        "{\"instance_id\": \"a\", \"problem_statement\": \"s\"}\n\n{\"instance_id\": \"b\", \"patch\": 3}\n",
    )
    .unwrap();
    let errors = |out: &std::process::Output| -> Vec<String> {
        crate::support::readable_lines(&out.stderr)
            .into_iter()
            .filter(|l| l.starts_with("error:"))
            .collect()
    };
    let out = agentao(dir.path())
        .args(["cerebro", "predict", "--tasks"])
        .arg(&tasks)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = errors(&out);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains(&format!("{}:3:", tasks.display())), "{e:?}");
    assert!(out.stdout.is_empty());

    let out = agentao(dir.path())
        .args(["cerebro", "predict", "--agent", "nobody", "--tasks"])
        .arg(&tasks)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = agentao(dir.path())
        .args(["cerebro", "train", "--data"])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(errors(&out).len(), 1);
    assert!(
        crate::support::readable_lines(&out.stderr)
            .iter()
            .any(|l| l.contains("hint: --data takes a directory"))
    );
}

/// Acceptance: a miner answers `Forecast` with the model, two never answer (one serves no
/// `Forecast`, one is not there); the validator asks over the wire, writes the forecasts into
/// the records and scores them with the Brier rule over the last 101 events, imputing 0.5.
#[tokio::test]
async fn forecasts_are_answered_and_scored_over_a_window() {
    let data = Dataset::shipped().unwrap();
    let model = cerebro::shipped_model().unwrap();
    // The miner's agent is a published system; its outcomes are the events.
    let agent = "20240620_sweagent_claude3.5sonnet";
    let a = data.agents.iter().position(|x| x == agent).unwrap() as u32;
    let validator = Keypair::generate().0;
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 100.0)],
    };
    let (answering, silent) = (Keypair::generate().0, Keypair::generate().0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let forecaster = MinerForecaster::known_agent(model.clone(), agent).unwrap();
    let served = forecaster
        .serve_on(Axon::new(
            answering.clone(),
            metagraph.clone(),
            AxonConfig::default(),
        ))
        .serve(listener);
    // A miner of the coding task only: `Forecast` is not served there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = listener.local_addr().unwrap().port();
    let coding_only = Axon::new(silent.clone(), metagraph, AxonConfig::default())
        .coding_task(|s| async move { s.body })
        .serve(listener);
    let absent = Keypair::generate().0;
    let targets = [
        (answering.ss58(), port),
        (silent.ss58(), silent_port),
        (absent.ss58(), free_port()),
    ]
    .map(|(hotkey, port)| AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey,
    });

    let dir = tempfile::tempdir().unwrap();
    let mut forecasting = Forecasting::new(model.clone(), &dir.path().join("forecasts.json"));
    forecasting.timeout = Duration::from_secs(5);
    let dendrite = Dendrite::new(validator);
    let outcome: std::collections::HashMap<u32, bool> = data
        .responses
        .iter()
        .filter(|r| r.agent == a)
        .map(|r| (r.task, r.resolved))
        .collect();
    let events = 120;
    let mut expected = Vec::new();
    for (t, facts) in data.tasks.iter().enumerate().take(events) {
        let task = as_task(facts);
        let asked = forecasting.ask(&dendrite, &targets, &task).await;
        let p = asked[0].expect("the answering miner forecasts");
        assert!(p > 0.0 && p < 1.0);
        assert_eq!(&asked[1..], &[None, None]);
        let resolved = outcome[&(t as u32)];
        expected.push(brier_event(Some(p), resolved));
        for (target, forecast) in targets.iter().zip(&asked) {
            let prior = forecasting.prior(&target.hotkey, &task, *forecast);
            let mut record = Record::for_task(&task);
            record.miner_hotkey = target.hotkey.clone();
            record.resolved = resolved;
            forecasting.settle(&mut record, prior, true);
            assert_eq!(record.miner_forecast, *forecast);
            assert!(record.forecast_p_resolve.is_some() && record.forecast_difficulty.is_some());
        }
    }
    forecasting.save().unwrap();
    served.abort();
    coding_only.abort();

    let book = agentao::neurons::forecast::ForecastBook::load(&dir.path().join("forecasts.json"));
    let window = &expected[events - WINDOW..];
    let want = window.iter().sum::<f64>() / WINDOW as f64;
    let got = book.brier(&answering.ss58()).unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    assert!(got < 0.25, "the model beats a coin: {got}");
    for hotkey in [silent.ss58(), absent.ss58()] {
        assert_eq!(book.miners[&hotkey].events.len(), WINDOW);
        // 0.5 imputed: (0.5 − y)² = 0.25 whatever happened.
        assert_eq!(book.brier(&hotkey), Some(0.25));
        assert!(
            book.miners[&hotkey]
                .events
                .iter()
                .all(|e| e.forecast.is_none())
        );
    }
    assert_eq!(book.standings()[0].hotkey, answering.ss58());
    // The validator learnt the agent's ability online from its outcomes alone.
    let learnt = book.miners[&answering.ss58()].ability.theta;
    let fitted = model.theta(&model.fix, agent).unwrap();
    assert!((learnt - fitted).abs() < 0.6, "{learnt} vs {fitted}");
}

/// A shipped SWE-bench row as an agentao task.
fn as_task(facts: &TaskFacts) -> Task {
    let mut v = serde_json::to_value(facts).unwrap();
    v["FAIL_TO_PASS"] = serde_json::json!([]);
    v["PASS_TO_PASS"] = serde_json::json!([]);
    v["difficulty"] = serde_json::Value::Null;
    serde_json::from_value(v).unwrap()
}
