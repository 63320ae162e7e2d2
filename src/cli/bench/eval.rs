//! `bench eval`: wall time per evaluation of forged tasks, with the warm pool and without it
//! (`--no-pool`), against `docker run --rm` of the same tests, and batch throughput with one
//! and two workers on both paths, all in one run.

use std::time::Instant;

use serde::Serialize;

use super::{median, ms, percentile, tempfile_dir};
use crate::config::Settings;

#[derive(Debug, Serialize)]
pub(super) struct EvalBench {
    benchmark: &'static str,
    tasks: usize,
    iterations: usize,
    /// Per evaluation with the warm pool (take, one exec with the files on stdin, tests,
    /// background removal).
    agentao_median_s: f64,
    /// Per evaluation without the pool (`--no-pool`: the path before it).
    agentao_cold_median_s: f64,
    docker_run_median_s: f64,
    /// The same `docker run --rm` as an unprivileged user (the harness runs the tests as one):
    /// on an engine whose storage makes path lookups dear for users other than root
    /// (fuse-overlayfs), the part of the overhead that is the user, not the harness.
    docker_run_unprivileged_median_s: f64,
    /// pooled per evaluation / unprivileged `docker run --rm`.
    overhead_ratio_unprivileged: f64,
    /// pooled per evaluation / `docker run --rm` of the same tests (the stored selection on
    /// both sides). Target <= 1.05.
    overhead_ratio: f64,
    /// `--no-pool` per evaluation / `docker run --rm`.
    cold_overhead_ratio: f64,
    /// Where a pooled evaluation's time goes (medians of its verdicts' timings): taking the
    /// container, the apply phase (one exec), the test phase (one exec).
    pooled_start_median_s: f64,
    pooled_apply_median_s: f64,
    pooled_tests_median_s: f64,
    throughput_workers_1_per_min: f64,
    throughput_workers_2_per_min: f64,
    throughput_workers_1_no_pool_per_min: f64,
    throughput_workers_2_no_pool_per_min: f64,
    /// The gold patch judged with the stored PASS_TO_PASS (the selection before issue 15)
    /// and with PASS_TO_PASS widened to what the patch touches, in this run: median seconds
    /// of an evaluation, median tests added, and new / old.
    p2p_stored_median_s: f64,
    p2p_follow_patch_median_s: f64,
    p2p_added_median: f64,
    p2p_cost_ratio: f64,
}

/// `docker run --rm` of the task's stored tests, as root (how people run them) or, with
/// `user`, as that unprivileged user (the harness's test user).
async fn docker_run(task: &crate::tasks::Task, user: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(["run", "--rm", "--network", "none", "-w", "/repo"]);
    if let Some(user) = user {
        cmd.args(["--user", user, "-e", "HOME=/tmp"]);
    }
    let status = cmd
        .arg(&task.image)
        .args([
            "python",
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=line",
        ])
        .args(task.selected_tests())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "baseline pytest failed on {}", task.image);
    Ok(())
}

pub(super) async fn bench_eval(
    settings: &Settings,
    tasks: &[crate::tasks::Task],
    iterations: usize,
    batch: usize,
) -> anyhow::Result<EvalBench> {
    use crate::eval::{EvalConfig, P2pSelection, Prediction, evaluate, run_batch, warm};
    let base = crate::cli::context::engine(settings).await?;
    let engine = base.clone().with_pool(true);
    let cold = base.with_pool(false);
    // The overhead is measured on the same tests as the `docker run --rm` baseline (the
    // task's stored selection); what widening PASS_TO_PASS adds is measured apart below.
    let cfg = EvalConfig {
        limits: settings.limits.clone(),
        run_id: settings.run_id.clone(),
        p2p: P2pSelection::Stored,
        ..EvalConfig::default()
    };
    let mut order = Vec::new();
    for task in tasks {
        for _ in 0..iterations {
            order.push((task, task.patch.as_str()));
        }
    }
    warm(&engine, &order, &cfg);
    let ready = Instant::now();
    while engine.pool_stats().idle == 0 && ready.elapsed().as_secs() < 60 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (mut ours, mut colds, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let mut theirs_unprivileged = Vec::new();
    let mut phases: [Vec<f64>; 3] = Default::default();
    for (task, _) in &order {
        for (e, times, pooled) in [(&engine, &mut ours, true), (&cold, &mut colds, false)] {
            let t = Instant::now();
            let v = evaluate(e, task, &task.patch, &cfg).await;
            anyhow::ensure!(
                v.resolved,
                "gold patch of {} did not resolve: {:?}",
                task.instance_id,
                v.outcome
            );
            times.push(t.elapsed());
            if pooled {
                let p = &v.timings;
                for (slot, s) in phases.iter_mut().zip([p.start_s, p.apply_s, p.tests_s]) {
                    slot.push(s);
                }
            }
        }
        let t = Instant::now();
        docker_run(task, None).await?;
        theirs.push(t.elapsed());
        let t = Instant::now();
        docker_run(task, Some(crate::pytest::TEST_USER)).await?;
        theirs_unprivileged.push(t.elapsed());
    }
    let (mut stored, mut follow, mut added) = (Vec::new(), Vec::new(), Vec::new());
    let doubled: Vec<_> = order.iter().flat_map(|o| [*o, *o]).collect();
    warm(&engine, &doubled, &cfg);
    for task in tasks {
        for _ in 0..iterations {
            for (selection, times) in [
                (P2pSelection::Stored, &mut stored),
                (P2pSelection::FollowPatch, &mut follow),
            ] {
                let cfg = EvalConfig {
                    p2p: selection,
                    ..cfg.clone()
                };
                let t = Instant::now();
                let v = evaluate(&engine, task, &task.patch, &cfg).await;
                anyhow::ensure!(
                    v.resolved,
                    "gold patch of {} did not resolve with {selection:?}: {:?}",
                    task.instance_id,
                    v.outcome
                );
                times.push(t.elapsed());
                if selection == P2pSelection::FollowPatch {
                    added.push(v.p2p_added as f64);
                }
            }
        }
    }
    added.sort_by(f64::total_cmp);
    let (sm, fm) = (percentile(&mut stored, 0.5), percentile(&mut follow, 0.5));
    let mut throughput = [0.0; 4];
    for (slot, workers, e) in [
        (0, 1, &engine),
        (1, 2, &engine),
        (2, 1, &cold),
        (3, 2, &cold),
    ] {
        let dir = tempfile_dir()?;
        let (mut ts, mut ps) = (Vec::new(), Vec::new());
        for i in 0..batch {
            let mut t = tasks[i % tasks.len()].clone();
            t.instance_id = format!("{}#{i}", t.instance_id);
            ps.push(Prediction {
                instance_id: t.instance_id.clone(),
                model_name_or_path: "gold".into(),
                model_patch: Some(t.patch.clone()),
            });
            ts.push(t);
        }
        let t = Instant::now();
        run_batch(e, &ts, &ps, &dir, workers, &cfg, |_, _| {}).await?;
        throughput[slot] = batch as f64 / t.elapsed().as_secs_f64() * 60.0;
        let _ = std::fs::remove_dir_all(&dir);
    }
    engine.shutdown(std::time::Duration::from_secs(60)).await;
    cold.shutdown(std::time::Duration::from_secs(60)).await;
    let om = percentile(&mut ours, 0.5);
    let km = percentile(&mut colds, 0.5);
    let tm = percentile(&mut theirs, 0.5);
    let um = percentile(&mut theirs_unprivileged, 0.5);
    let [starts, applies, tests] = phases;
    Ok(EvalBench {
        benchmark: "eval_overhead",
        tasks: tasks.len(),
        iterations,
        agentao_median_s: ms(om) / 1000.0,
        agentao_cold_median_s: ms(km) / 1000.0,
        docker_run_median_s: ms(tm) / 1000.0,
        docker_run_unprivileged_median_s: ms(um) / 1000.0,
        overhead_ratio_unprivileged: om.as_secs_f64() / um.as_secs_f64(),
        overhead_ratio: om.as_secs_f64() / tm.as_secs_f64(),
        cold_overhead_ratio: km.as_secs_f64() / tm.as_secs_f64(),
        pooled_start_median_s: median(starts),
        pooled_apply_median_s: median(applies),
        pooled_tests_median_s: median(tests),
        throughput_workers_1_per_min: (throughput[0] * 100.0).round() / 100.0,
        throughput_workers_2_per_min: (throughput[1] * 100.0).round() / 100.0,
        throughput_workers_1_no_pool_per_min: (throughput[2] * 100.0).round() / 100.0,
        throughput_workers_2_no_pool_per_min: (throughput[3] * 100.0).round() / 100.0,
        p2p_stored_median_s: ms(sm) / 1000.0,
        p2p_follow_patch_median_s: ms(fm) / 1000.0,
        p2p_added_median: added.get(added.len() / 2).copied().unwrap_or(0.0),
        p2p_cost_ratio: fm.as_secs_f64() / sm.as_secs_f64().max(1e-9),
    })
}
