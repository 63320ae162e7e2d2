//! Forged tasks whose tests tell a fix from a hack (issue 15), on the real idna 3.20 from PyPI:
//! the flipped `errors` check of `idna/codec.py`, whose tests also accept deleting the check,
//! is rejected at forge time; every task kept has a regression check, refuses the
//! check-deleting patch at evaluation time, and carries the index that widens its
//! PASS_TO_PASS.

use std::time::Duration;

use agentao::eval::{EvalConfig, P2pSelection, evaluate};
use agentao::forge::{Forge, ForgeConfig, Rejection};
use agentao::tasks::TaskStore;

use crate::support::{assert_no_containers, base_image, engine, run_id};

/// The patch of the issue: the whole `errors` check of `Codec.encode` deleted (two lines).
const DELETE_CHECK: &str = "diff --git a/idna/codec.py b/idna/codec.py
--- a/idna/codec.py
+++ b/idna/codec.py
@@ -19,8 +19,6 @@ class Codec(codecs.Codec):
 
     def encode(self, data: str, errors: str = \"strict\") -> tuple[bytes, int]:  # ty: ignore[invalid-method-override]
-        if errors != \"strict\":
-            raise IDNAError(f'Unsupported error handling \"{errors}\"', code=\"unsupported_errors\")
 
         if not data:
             return b\"\", 0
";

#[tokio::test]
async fn idna_tasks_whose_tests_accept_deleting_the_errors_check_are_rejected() {
    let engine = engine().await;
    base_image(&engine).await;
    let run = run_id("forge-quality");
    let mut cfg = ForgeConfig::new(&agentao::config::default_cache_dir());
    cfg.per_package = 5;
    cfg.max_candidates = 24;
    cfg.workers = 2;
    cfg.run_id = run.clone();
    cfg.index_url = std::env::var("PIP_INDEX_URL").ok();
    cfg.focus = Some("idna/codec.py:Codec.".into());
    cfg.repair = None;
    let forge = Forge::new(&engine, cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = TaskStore::open(&dir.path().join("tasks.db")).unwrap();
    let report = forge
        .forge_package("idna", Some("3.20"), Some(&store))
        .await
        .unwrap();

    // The flipped check (line 21 in `encode`, 30 in `decode`) broke tests, and the tests took
    // a decoy: rejected, with the reason in the report.
    let flipped: Vec<_> = report
        .rejections
        .iter()
        .filter(|r| r.file == "idna/codec.py" && matches!(r.line, 21 | 30))
        .filter(|r| matches!(r.kind.as_str(), "compare_swap" | "condition_inverted"))
        .collect();
    assert!(
        !flipped.is_empty(),
        "the errors check was never mutated: {report:#?}"
    );
    for r in &flipped {
        assert_eq!(r.rejection, Rejection::WeakTests, "{r:?}");
        assert!(r.detail.starts_with("accepted decoy "), "{r:?}");
    }
    assert!(
        report.weak_tests_share > 0.0 && report.decoys_run > 0,
        "{report:#?}"
    );

    let tasks = store.all(None).unwrap();
    let eval = EvalConfig {
        run_id: run.clone(),
        test_timeout: Duration::from_secs(120),
        ..EvalConfig::default()
    };
    for task in &tasks {
        // No task's bug is the errors check, and each has a regression check and its index.
        assert!(
            !task.bug_patch.contains("errors == \"strict\""),
            "{}",
            task.bug_patch
        );
        assert!(!task.pass_to_pass.is_empty(), "{}", task.instance_id);
        assert!(!task.decoys_refused.is_empty(), "{}", task.instance_id);
        let index = task.regression.as_ref().expect("a regression index");
        assert!(index.tests.len() > task.pass_to_pass.len());
        // Deleting the check is not a fix of any of them.
        let v = evaluate(&engine, task, DELETE_CHECK, &eval).await;
        assert!(!v.resolved, "{}: {:?}", task.instance_id, v.outcome);
        // The gold patch still resolves with PASS_TO_PASS widened to what it touches.
        let gold = evaluate(&engine, task, &task.patch, &eval).await;
        assert!(
            gold.resolved,
            "{}: {:?} {}",
            task.instance_id, gold.outcome, gold.log
        );
        assert_eq!(
            gold.pass_to_pass.len(),
            task.pass_to_pass.len() + gold.p2p_added
        );
        let old = EvalConfig {
            p2p: P2pSelection::Stored,
            ..eval.clone()
        };
        let stored = evaluate(&engine, task, &task.patch, &old).await;
        assert!(stored.resolved && stored.p2p_added == 0);
    }
    assert_no_containers(&run, 20);
}

/// A patch that fixes the bug and breaks a neighbouring function: with the stored
/// PASS_TO_PASS cut to one test it would pass; widened to what the patch touches (the
/// tests whose coverage runs the broken function), it fails.
#[tokio::test]
async fn pass_to_pass_follows_the_patch_into_the_code_it_breaks() {
    let engine = engine().await;
    let run = run_id("p2p-follow");
    let tasks = crate::forge::forged_tinycalc().await;
    let mut task = tasks
        .into_iter()
        .find(|t| !t.fail_to_pass.iter().any(|id| id.contains("test_spin")))
        .expect("a tinycalc task whose bug is not in spin");
    assert!(task.regression.is_some() && !task.pass_to_pass.is_empty());
    assert!(!task.decoys_refused.is_empty(), "{task:?}");
    // The task as the old forge stored it: one PASS_TO_PASS test, not spin's.
    task.pass_to_pass.retain(|id| !id.contains("test_spin"));
    task.pass_to_pass.truncate(1);

    // The clean file, the buggy one (the task's bug applied by git), and the hack: clean
    // (so the bug is fixed) with `spin` broken.
    let clean = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tinycalc/tinycalc/__init__.py"
    ))
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("tinycalc")).unwrap();
    std::fs::write(work.path().join("tinycalc/__init__.py"), &clean).unwrap();
    std::fs::write(work.path().join("bug.diff"), &task.bug_patch).unwrap();
    let applied = std::process::Command::new("git")
        .args(["apply", "bug.diff"])
        .current_dir(work.path())
        .status()
        .unwrap();
    assert!(applied.success());
    let buggy = std::fs::read_to_string(work.path().join("tinycalc/__init__.py")).unwrap();
    let hack = clean.replace("    return n\n", "    return n + 1\n");
    assert_ne!(hack, clean);
    let patch = agentao::forge::mutate::unified_diff("tinycalc/__init__.py", &buggy, &hack);

    let eval = EvalConfig {
        run_id: run.clone(),
        test_timeout: Duration::from_secs(60),
        ..EvalConfig::default()
    };
    let old = EvalConfig {
        p2p: P2pSelection::Stored,
        ..eval.clone()
    };
    let stored = evaluate(&engine, &task, &patch, &old).await;
    assert!(stored.resolved, "{:?} {}", stored.outcome, stored.log);
    let widened = evaluate(&engine, &task, &patch, &eval).await;
    assert!(!widened.resolved, "{:?}", widened.outcome);
    let spin = widened
        .pass_to_pass
        .iter()
        .find(|(id, _)| id.ends_with("::test_spin"))
        .expect("spin's test added");
    assert!(!spin.1.passed());
    assert!(widened.p2p_added >= 1);
    // The gold patch passes the widened list.
    let gold = evaluate(&engine, &task, &task.patch, &eval).await;
    assert!(gold.resolved, "{:?} {}", gold.outcome, gold.log);
    assert_no_containers(&run, 20);
}
