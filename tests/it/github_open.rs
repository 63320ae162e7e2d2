//! An open issue as a task, end to end (issue 18, item 4): the open-issue harvest against the
//! local GitHub (`github_server.rs`) makes a task with no gold patch, PASS_TO_PASS the suite
//! green at HEAD, and a checklist a scripted OpenAI-compatible model wrote from the issue; a
//! validator's round with scripted miners then scores a regression-free patch through the
//! judge's checklist (the checklist reaches the judge's prompt, its answer shapes the score)
//! and a patch that breaks a PASS_TO_PASS test at 0.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentao::config::Network;
use agentao::dataset::RecordStore;
use agentao::eval::{EvalConfig, Outcome};
use agentao::forge::ForgeConfig;
use agentao::github::refs::StatementBounds;
use agentao::github::{GithubClient, GithubConfig, HarvestConfig, harvest_open};
use agentao::llm::{LlmClient, LlmConfig};
use agentao::neurons::remote::RemoteKinds;
use agentao::neurons::validator::{Scores, Validator};
use agentao::subnet::{Dendrite, Keypair};
use agentao::tasks::{Exposure, Grading, TaskStore};
use serde_json::json;

use crate::concurrent::scripted_miners;
use crate::github_repo::{OPEN_ISSUE_BODY, OPEN_ISSUE_TITLE};
use crate::github_server::GithubFixture;
use crate::support::{Response, TestServer, assert_no_containers, base_image, engine, run_id};

const CHECKLIST: [&str; 3] = [
    "mean([]) raises ValueError instead of ZeroDivisionError",
    "the error says the list is empty",
    "mean of a non-empty list is unchanged",
];

/// One model for both jobs: it writes the checklist when asked for one, and judges a patch
/// 0.9/0.9 when it raises `ValueError`, 0.2/0.5 otherwise. Every request body is kept.
async fn scripted_model() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let server = TestServer::start(move |req| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let content = if body.contains("review checklist") {
            serde_json::to_string(&CHECKLIST).unwrap()
        } else if body.contains("raise ValueError") {
            r#"{"quality": 0.9, "brevity": 0.9, "reason": "does every point"}"#.to_owned()
        } else {
            r#"{"quality": 0.2, "brevity": 0.5, "reason": "hides the error"}"#.to_owned()
        };
        kept.lock().unwrap().push(body);
        let answer = json!({"id": "m", "object": "chat.completion", "created": 0,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}});
        Response::new(200, "application/json", answer.to_string())
    })
    .await;
    (server, seen)
}

/// A patch of `tinylib/__init__.py` at HEAD (the fixed `clamp`, the bare `mean`).
fn patch(hunk: &str) -> String {
    format!(
        "diff --git a/tinylib/__init__.py b/tinylib/__init__.py\n--- a/tinylib/__init__.py\n+++ b/tinylib/__init__.py\n{hunk}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_issue_task_is_scored_by_the_judges_checklist_and_a_regression_scores_zero() {
    let engine = engine().await;
    base_image(&engine).await;
    let fx = GithubFixture::start().await;
    let (model, seen) = scripted_model().await;
    let llm = LlmClient::new(LlmConfig::new(&format!("{}/v1", model.url), "gpt-4o-mini"));
    let cache = tempfile::tempdir().unwrap();
    let store = TaskStore::open(&cache.path().join("tasks.db")).unwrap();
    let run = run_id("github-open");
    let mut forge = ForgeConfig::new(cache.path());
    forge.index_url = Some(format!("{}/simple", fx.url));
    forge.run_id = run.clone();
    forge.candidate_timeout = Duration::from_secs(120);
    let cfg = HarvestConfig {
        packages: vec!["nogithub".into(), "tinylib".into()],
        per_repo: 3,
        since: None,
        max_pages: 30,
        bounds: StatementBounds::default(),
        forge,
    };
    let gh = GithubClient::new(GithubConfig::new(
        Some(&fx.url),
        Some("test-token"),
        cache.path(),
    ))
    .unwrap();

    let started = Instant::now();
    let report = harvest_open(&engine, &gh, &llm, &store, &cfg, |_, _, _| {})
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        report.task_ids,
        vec!["fixture-org__tinylib-9"],
        "{report:#?}"
    );
    assert_eq!(
        report.candidates, 1,
        "the open pull request #10 is no candidate"
    );
    assert!(report.skipped.iter().any(|s| s.package == "nogithub"));
    let task = store.get("fixture-org__tinylib-9").unwrap().unwrap();
    assert_eq!(task.exposure, Some(Exposure::None));
    assert_eq!(task.grading(), Grading::Checklist);
    assert!(task.patch.is_empty() && task.fail_to_pass.is_empty());
    assert_eq!(
        task.base_commit, fx.history.fix,
        "HEAD of the default branch"
    );
    assert_eq!(
        task.pass_to_pass,
        [
            "tests/test_basic.py::test_clamp_low",
            "tests/test_basic.py::test_mean",
            "tests/test_clamp.py::test_clamp_high",
            "tests/test_clamp.py::test_clamp_inside",
        ],
        "the whole suite, green at HEAD"
    );
    assert_eq!(task.checklist, CHECKLIST);
    assert!(task.problem_statement.starts_with(OPEN_ISSUE_TITLE));
    assert!(task.problem_statement.contains(OPEN_ISSUE_BODY));
    assert_eq!(
        task.issue_url,
        "https://github.com/fixture-org/tinylib/issues/9"
    );
    // The checklist was written from the issue.
    let writer = seen.lock().unwrap()[0].clone();
    assert!(writer.contains("review checklist") && writer.contains("division by zero"));
    // A validator on a real chain sends it to remote miners; forged tasks it does not.
    let finney = RemoteKinds::default_for(&Network::parse("finney").unwrap());
    assert!(finney.allows(&task));
    let requests = gh.usage().requests;
    println!(
        "open-issue harvest: {} open issue(s) as candidates, {} task(s); {} API requests \
         ({:.1} per task), {:.1} s ({:.1} s per task)",
        report.candidates,
        report.task_ids.len(),
        requests,
        requests as f64 / report.task_ids.len() as f64,
        seconds,
        seconds / report.task_ids.len() as f64
    );

    // The round: a fix the checklist asks for, a fix that hides the error, and a fix that
    // breaks `clamp` (a PASS_TO_PASS test) on the way.
    let good = patch(
        "@@ -13,2 +13,4 @@\n def mean(values):\n+    if not values:\n+        raise ValueError(\"mean() of an empty list\")\n     return sum(values) / len(values)\n",
    );
    let weak = patch(
        "@@ -13,2 +13,4 @@\n def mean(values):\n+    if not values:\n+        return 0\n     return sum(values) / len(values)\n",
    );
    let breaking = patch(
        "@@ -6,3 +6,3 @@\n     if value < low:\n-        return low\n+        return value\n     if value > high:\n@@ -13,2 +13,4 @@\n def mean(values):\n+    if not values:\n+        raise ValueError(\"mean() of an empty list\")\n     return sum(values) / len(values)\n",
    );
    let key = Keypair::generate().0;
    let miners = scripted_miners(
        &key,
        [&good, &weak, &breaking]
            .map(|p| (p.clone(), Duration::ZERO))
            .to_vec(),
    )
    .await;
    let judged_before = seen.lock().unwrap().len();
    let v = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(key),
        eval: EvalConfig {
            run_id: run.clone(),
            test_timeout: Duration::from_secs(60),
            ..EvalConfig::default()
        },
        time_limit: Duration::from_secs(60),
        judge: Some((llm.clone(), 1.0)),
        describer: None,
        forecasts: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut scores = Scores::load(&dir.path().join("scores.json"));
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let results = v
        .round(&task, &miners.neurons, &mut scores, &mut records, "open")
        .await
        .unwrap();
    let by = |uid: u16| results.iter().find(|r| r.uid == uid).unwrap();
    let (good_r, weak_r, broken_r) = (by(1), by(2), by(3));
    // Green without any FAIL_TO_PASS: the judge's checklist reading is the quality.
    let expect = |q: f64, b: f64, r: &agentao::neurons::validator::MinerResult| {
        let quality = (2.0 * q + b) / 3.0;
        assert_eq!(
            r.outcome,
            agentao::neurons::validator::AnswerOutcome::Evaluated(Outcome::Resolved),
            "{r:?}"
        );
        assert_eq!(r.judged, Some((q, b)));
        assert!(r.charged);
        assert!(
            r.score >= 0.9 * quality && r.score <= 0.9 * quality + 0.1,
            "score {} for quality {quality}",
            r.score
        );
    };
    expect(0.9, 0.9, good_r);
    expect(0.2, 0.5, weak_r);
    assert!(good_r.score > weak_r.score + 0.4, "{results:#?}");
    // A regression: 0, and the judge is not asked.
    assert_eq!(
        broken_r.outcome,
        agentao::neurons::validator::AnswerOutcome::Evaluated(Outcome::Unresolved),
        "{broken_r:?}"
    );
    assert_eq!((broken_r.score, broken_r.judged), (0.0, None));
    assert!(broken_r.charged, "a regression is the miner's");
    let judge_requests: Vec<String> = seen.lock().unwrap()[judged_before..].to_vec();
    assert_eq!(judge_requests.len(), 2, "only the green patches are judged");
    for body in &judge_requests {
        for point in CHECKLIST {
            assert!(
                body.contains(point),
                "the checklist reached the judge: {body}"
            );
        }
        assert!(body.contains("no fix yet") && body.contains("open issue"));
    }
    let broken_record = records
        .iter()
        .unwrap()
        .map(Result::unwrap)
        .find(|r| r.miner_hotkey == broken_r.hotkey)
        .unwrap();
    let tests: serde_json::Value = serde_json::from_str(&broken_record.tests_status).unwrap();
    assert_eq!(
        tests["tests/test_basic.py::test_clamp_low"], "FAILED",
        "{tests}"
    );
    assert_eq!(tests["tests/test_basic.py::test_mean"], "PASSED", "{tests}");
    assert_no_containers(&run, 30);
}
