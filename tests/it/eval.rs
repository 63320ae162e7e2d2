//! The evaluation harness on the hand-made fixture task, against the real engine.

use std::path::Path;
use std::time::Duration;

use agentao::eval::{EvalConfig, Outcome, Prediction, TestStatus, evaluate, run_batch};
use agentao::forge::{EnvSpec, build_env_image};
use agentao::sandbox::Engine;
use agentao::tasks::Task;

use crate::support::{assert_no_containers, engine, run_id};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// The fixture task with its environment image built (cached by recipe hash).
pub async fn fixture_task(engine: &Engine) -> Task {
    crate::support::base_image(engine).await;
    let image = build_env_image(
        engine,
        &EnvSpec {
            name: "agentao/env-tinycalc",
            version: "1.0.0",
            source_dir: &fixtures().join("tinycalc"),
            wheels_dir: None,
        },
    )
    .await
    .expect("fixture environment image");
    let text = std::fs::read_to_string(fixtures().join("tinycalc.task.json")).unwrap();
    let mut task: Task = serde_json::from_str(&text).unwrap();
    task.image = image;
    task
}

fn config(run: &str) -> EvalConfig {
    EvalConfig {
        run_id: run.to_owned(),
        test_timeout: Duration::from_secs(20),
        ..EvalConfig::default()
    }
}

/// A patch on the buggy `add` replacing its body with `body` lines.
fn patch_add(body: &[&str]) -> String {
    let mut p = String::from(
        "diff --git a/tinycalc/__init__.py b/tinycalc/__init__.py\n--- a/tinycalc/__init__.py\n+++ b/tinycalc/__init__.py\n",
    );
    p.push_str(&format!(
        "@@ -2,7 +2,{} @@\n \n \n def add(a, b):\n-    return a - b\n",
        6 + body.len()
    ));
    for line in body {
        p.push_str(&format!("+{line}\n"));
    }
    p.push_str(" \n \n def clamp(x, low, high):\n");
    p
}

#[tokio::test]
async fn the_gold_patch_resolves_and_the_empty_patch_does_not() {
    the_gold_patch_resolves_and_the_empty_patch_does_not_on(&engine().await).await;
}

/// [`the_gold_patch_resolves_and_the_empty_patch_does_not`] on any engine: the swarm tests run it through that backend.
pub async fn the_gold_patch_resolves_and_the_empty_patch_does_not_on(engine: &Engine) {
    let task = fixture_task(engine).await;
    let run = run_id("eval-gold");
    let v = evaluate(engine, &task, &task.patch, &config(&run)).await;
    assert_eq!(v.outcome, Outcome::Resolved, "{}", v.log);
    assert!(v.resolved);
    assert_eq!(v.fail_to_pass.len(), 2);
    assert_eq!(v.pass_to_pass.len(), 6);
    assert!(v.pass_to_pass.values().all(|s| *s == TestStatus::Passed));

    let empty = evaluate(engine, &task, "", &config(&run)).await;
    assert_eq!(empty.outcome, Outcome::EmptyPatch);
    assert!(!empty.resolved);

    // A patch that does nothing useful: tests run and F2P fail.
    let wrong = evaluate(
        engine,
        &task,
        &patch_add(&["    return a * b"]),
        &config(&run),
    )
    .await;
    assert_eq!(wrong.outcome, Outcome::Unresolved, "{}", wrong.log);
    assert_eq!(
        wrong.fail_to_pass["tests/test_calc.py::test_add"],
        TestStatus::Failed
    );
    assert_eq!(
        wrong.pass_to_pass["tests/test_calc.py::test_mean"],
        TestStatus::Passed
    );
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn patches_touching_tests_git_or_parent_dirs_are_rejected_unapplied() {
    let engine = engine().await;
    let task = fixture_task(&engine).await;
    let run = run_id("eval-reject");
    let test_edit = "diff --git a/tests/test_calc.py b/tests/test_calc.py\n--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n@@ -5,2 +5,2 @@\n def test_add():\n-    assert add(2, 3) == 5\n+    assert True\n";
    for (patch, why) in [
        (test_edit.to_owned(), "tests that judge"),
        (
            task.patch
                .replace("tinycalc/__init__.py", "../tinycalc/__init__.py"),
            "`..`",
        ),
        (
            task.patch
                .replace("tinycalc/__init__.py", ".git/hooks/pre-commit"),
            "git directory",
        ),
        ("not a diff at all\n".to_owned(), "no file headers"),
    ] {
        let v = evaluate(&engine, &task, &patch, &config(&run)).await;
        match &v.outcome {
            Outcome::PatchRejected { reason } => {
                assert!(reason.to_string().contains(why), "{why}: {reason}")
            }
            other => panic!("expected a rejection ({why}), got {other:?}"),
        }
        assert!(!v.resolved);
    }
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn an_infinite_loop_times_out_and_the_container_is_gone() {
    an_infinite_loop_times_out_and_the_container_is_gone_on(&engine().await).await;
}

/// [`an_infinite_loop_times_out_and_the_container_is_gone`] on any engine: the swarm tests run it through that backend.
pub async fn an_infinite_loop_times_out_and_the_container_is_gone_on(engine: &Engine) {
    let task = fixture_task(engine).await;
    let run = run_id("eval-loop");
    let mut cfg = config(&run);
    cfg.test_timeout = Duration::from_secs(8);
    let v = evaluate(
        engine,
        &task,
        &patch_add(&["    while True:", "        pass"]),
        &cfg,
    )
    .await;
    assert_eq!(v.outcome, Outcome::TimedOut, "{}", v.log);
    assert!(v.timings.tests_s < 20.0, "{:?}", v.timings);
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn reaching_for_the_network_fails_inside_and_the_run_goes_on() {
    reaching_for_the_network_fails_inside_and_the_run_goes_on_on(&engine().await).await;
}

/// [`reaching_for_the_network_fails_inside_and_the_run_goes_on`] on any engine: the swarm tests run it through that backend.
pub async fn reaching_for_the_network_fails_inside_and_the_run_goes_on_on(engine: &Engine) {
    let task = fixture_task(engine).await;
    let run = run_id("eval-net");
    let v = evaluate(
        engine,
        &task,
        &patch_add(&["    fetch('http://1.1.1.1/')", "    return a + b"]),
        &config(&run),
    )
    .await;
    // The added line reaches a socket through existing code: the audit hook names it. The
    // attempt fails inside and is the patch's doing, never the environment's.
    match &v.outcome {
        Outcome::Tampered { reason } => assert!(reason.contains("socket.connect"), "{reason}"),
        other => panic!("{other:?}: {}", v.log),
    }
    assert!(
        v.log.contains("URLError") || v.log.contains("unreachable"),
        "{}",
        v.log
    );
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn a_patch_that_does_not_fit_fails_to_apply_and_fuzz_rescues_a_near_miss() {
    let engine = engine().await;
    let task = fixture_task(&engine).await;
    let run = run_id("eval-apply");
    let misfit = task.patch.replace("-    return a - b", "-    return a / b");
    let v = evaluate(&engine, &task, &misfit, &config(&run)).await;
    assert_eq!(v.outcome, Outcome::ApplyFailed, "{}", v.log);

    // Wrong context line far from the change: git apply refuses, patch --fuzz applies.
    let near = task
        .patch
        .replace(" def clamp(x, low, high):", " def clamp(x, lo, hi):");
    let v = evaluate(&engine, &task, &near, &config(&run)).await;
    assert_eq!(v.outcome, Outcome::Resolved, "{}", v.log);
    assert_eq!(v.apply_method, Some(agentao::eval::ApplyMethod::PatchFuzz));
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn a_batch_resumes_without_reevaluating_finished_instances() {
    let engine = engine().await;
    let base = fixture_task(&engine).await;
    let run = run_id("eval-batch");
    let mut tasks = Vec::new();
    let mut preds = Vec::new();
    for i in 0..3 {
        let mut t = base.clone();
        t.instance_id = format!("tinycalc__{i}");
        preds.push(Prediction {
            instance_id: t.instance_id.clone(),
            model_name_or_path: "test".into(),
            model_patch: Some(if i == 1 {
                String::new()
            } else {
                t.patch.clone()
            }),
        });
        tasks.push(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&run);
    let first = run_batch(&engine, &tasks, &preds[..2], dir.path(), 2, &cfg, |_, _| {})
        .await
        .unwrap();
    assert_eq!(first.evaluated_now, 2);
    assert_eq!(first.resolved_ids, vec!["tinycalc__0"]);
    assert_eq!(first.empty_patch_ids, vec!["tinycalc__1"]);

    let second = run_batch(&engine, &tasks, &preds, dir.path(), 2, &cfg, |_, _| {})
        .await
        .unwrap();
    assert_eq!(second.evaluated_now, 1, "only the new instance runs");
    assert_eq!(second.resolved_ids, vec!["tinycalc__0", "tinycalc__2"]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["resolved_instances"], 2);
    assert_eq!(
        report["tests_status"]["tinycalc__0"]["FAIL_TO_PASS"]["success"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A changed patch for a finished instance is evaluated again, not served from the cache.
    let mut changed = preds.clone();
    changed[0].model_patch = Some(patch_add(&["    return b + a"]));
    let third = run_batch(&engine, &tasks, &changed, dir.path(), 2, &cfg, |_, _| {})
        .await
        .unwrap();
    assert_eq!(third.evaluated_now, 1);
    assert_eq!(third.resolved_ids, vec!["tinycalc__0", "tinycalc__2"]);
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn a_missing_task_image_is_an_environment_error() {
    let engine = engine().await;
    let mut task = fixture_task(&engine).await;
    task.image = "agentao/env-nothing:0".into();
    let run = run_id("eval-env");
    let v = evaluate(&engine, &task, &task.patch.clone(), &config(&run)).await;
    assert!(v.is_environment_error(), "{:?}", v.outcome);
    assert!(!v.resolved);
}

/// The gold patch of a forged one-line bug with `stmt` inserted (same indent) before the
/// fixed line: it fixes the bug and then runs `stmt` whenever that code runs.
fn gold_plus(task: &Task, stmt: &str) -> String {
    let mut out = String::new();
    for line in task.patch.lines() {
        if let Some(rest) = line.strip_prefix("@@ ") {
            // "@@ -a,b +c,d @@": one more line on the new side.
            let (ranges, tail) = rest.split_once(" @@").unwrap();
            let (old, new) = ranges.split_once(' ').unwrap();
            let (start, len) = new
                .trim_start_matches('+')
                .split_once(',')
                .unwrap_or((new.trim_start_matches('+'), "1"));
            let len: u32 = len.parse().unwrap();
            out.push_str(&format!("@@ {old} +{start},{} @@{tail}\n", len + 1));
        } else if line.starts_with('+') && !line.starts_with("+++") {
            let indent: String = line[1..]
                .chars()
                .take_while(|c| c.is_whitespace())
                .collect();
            out.push_str(&format!("+{indent}{stmt}\n{line}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test]
async fn the_harness_holds_on_forged_tasks() {
    let tasks = crate::forge::forged_tinycalc().await;
    let engine = engine().await;
    let run = run_id("eval-forged");
    let cfg = EvalConfig {
        run_id: run.clone(),
        test_timeout: Duration::from_secs(15),
        ..EvalConfig::default()
    };
    // A task whose fixed line can take a statement before it.
    let task = tasks
        .iter()
        .find(|t| {
            let plus: Vec<&str> = t
                .patch
                .lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .collect();
            plus.len() == 1 && {
                let s = plus[0][1..].trim_start();
                !["elif", "else", "except", "finally"]
                    .iter()
                    .any(|k| s.starts_with(k))
            }
        })
        .expect("a forged one-line bug");

    let gold = evaluate(&engine, task, &task.patch, &cfg).await;
    assert_eq!(gold.outcome, Outcome::Resolved, "{}", gold.log);
    assert_eq!(
        evaluate(&engine, task, "", &cfg).await.outcome,
        Outcome::EmptyPatch
    );

    let f2p_file = task.fail_to_pass[0].split("::").next().unwrap();
    let edits_test = format!(
        "diff --git a/{f2p_file} b/{f2p_file}\n--- a/{f2p_file}\n+++ b/{f2p_file}\n@@ -1,1 +1,2 @@\n+import pytest\n x\n"
    );
    let conftest = "diff --git a/tests/conftest.py b/tests/conftest.py\nnew file mode 100644\n--- /dev/null\n+++ b/tests/conftest.py\n@@ -0,0 +1 @@\n+x = 1\n";
    let climbs = task
        .patch
        .replace("a/tinycalc/", "a/../tinycalc/")
        .replace("b/tinycalc/", "b/../tinycalc/");
    let git = "diff --git a/.git/config b/.git/config\n--- a/.git/config\n+++ b/.git/config\n@@ -1,1 +1,2 @@\n [core]\n+\tfsmonitor = true\n";
    for (what, patch) in [
        ("F2P test file", edits_test.as_str()),
        ("conftest", conftest),
        ("..", &climbs),
        (".git", git),
    ] {
        let v = evaluate(&engine, task, patch, &cfg).await;
        assert!(
            matches!(v.outcome, Outcome::PatchRejected { .. }),
            "{what}: {:?}",
            v.outcome
        );
    }

    let spin = evaluate(&engine, task, &gold_plus(task, "while True: pass"), &cfg).await;
    assert_eq!(spin.outcome, Outcome::TimedOut, "{}", spin.log);

    let net = gold_plus(
        task,
        "import urllib.request as _u; _u.urlopen('http://1.1.1.1', timeout=3)",
    );
    // The audit hook sees the added line reach for a socket; either way it is the patch's
    // doing, never the environment's.
    let v = evaluate(&engine, task, &net, &cfg).await;
    assert!(!v.is_environment_error());
    match &v.outcome {
        Outcome::Tampered { reason } => assert!(reason.contains("socket.connect"), "{reason}"),
        other => panic!("{other:?}: {}", v.log),
    }
    assert_no_containers(&run, 20);
}
