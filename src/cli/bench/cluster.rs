//! `bench cluster`: the price of running sandboxes on a Docker Swarm instead of the local
//! engine, on the same machine in the same run. Each round evaluates the same `answers` gold
//! answers with the sandbox budget at 2 through `local` and then through `swarm` (rounds
//! interleaved), and reports the wall time of each and evaluations per minute. The engine
//! must be a swarm manager; with `--init-swarm` a single-node swarm is made on loopback for
//! the run and left afterwards.

use std::time::Instant;

use serde::Serialize;

use super::scale::copies;
use super::tempfile_dir;
use crate::config::{BackendKind, Settings};
use crate::eval::{EvalConfig, run_batch};
use crate::tasks::Task;

#[derive(Debug, Serialize)]
pub(super) struct ClusterBench {
    benchmark: &'static str,
    answers: usize,
    max_sandboxes: usize,
    rounds: usize,
    registry: Option<String>,
    /// Wall time of every round, seconds, per backend.
    local_round_s: Vec<f64>,
    swarm_round_s: Vec<f64>,
    /// The best round of each.
    local_best_s: f64,
    swarm_best_s: f64,
    local_evals_per_min: f64,
    swarm_evals_per_min: f64,
    /// swarm / local wall time of a round (best of each): the indirection's price.
    swarm_over_local: f64,
    /// Answers that did not resolve (gold patches: expected 0), per backend.
    local_unresolved: usize,
    swarm_unresolved: usize,
}

fn swarm_state() -> String {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn docker_swarm(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("docker")
        .arg("swarm")
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker swarm {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

pub(super) async fn bench_cluster(
    settings: &Settings,
    tasks: &[Task],
    answers: usize,
    rounds: usize,
    init_swarm: bool,
) -> anyhow::Result<ClusterBench> {
    let made = if swarm_state() == "active" {
        false
    } else {
        anyhow::ensure!(
            init_swarm,
            "this engine is in no swarm: run `docker swarm init`, or pass --init-swarm"
        );
        docker_swarm(&[
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            "127.0.0.1:2377",
        ])?;
        true
    };
    let measured = measure(settings, tasks, answers, rounds).await;
    if made {
        docker_swarm(&["leave", "--force"])?;
    }
    measured
}

async fn measure(
    settings: &Settings,
    tasks: &[Task],
    answers: usize,
    rounds: usize,
) -> anyhow::Result<ClusterBench> {
    let mut settings = settings.clone();
    settings.max_sandboxes = 2;
    settings.sandbox_backend = BackendKind::Local;
    let local = crate::cli::context::engine(&settings).await?;
    settings.sandbox_backend = BackendKind::Swarm;
    let swarm = crate::cli::context::engine(&settings).await?;
    let cfg = EvalConfig {
        limits: settings.limits.clone(),
        run_id: settings.run_id.clone(),
        ..EvalConfig::default()
    };
    let (mut local_s, mut swarm_s) = (Vec::new(), Vec::new());
    let (mut local_bad, mut swarm_bad) = (0, 0);
    for round in 0..rounds {
        for (engine, times, bad) in [
            (&local, &mut local_s, &mut local_bad),
            (&swarm, &mut swarm_s, &mut swarm_bad),
        ] {
            let (ts, ps) = copies(tasks, answers, &format!("c{round}-"));
            let dir = tempfile_dir()?;
            let t = Instant::now();
            let report = run_batch(engine, &ts, &ps, &dir, 2, &cfg, |_, _| {}).await;
            times.push(t.elapsed().as_secs_f64());
            let _ = std::fs::remove_dir_all(&dir);
            *bad += ts.len() - report?.resolved_ids.len();
            engine.empty_pool().await;
        }
    }
    local.shutdown(std::time::Duration::from_secs(60)).await;
    swarm.shutdown(std::time::Duration::from_secs(60)).await;
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (lb, sb) = (best(&local_s), best(&swarm_s));
    let per_min = |s: f64| (answers as f64 * 60.0 / s * 10.0).round() / 10.0;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(ClusterBench {
        benchmark: "cluster",
        answers,
        max_sandboxes: settings.max_sandboxes,
        rounds,
        registry: settings.registry.clone(),
        local_round_s: local_s.iter().map(|x| r3(*x)).collect(),
        swarm_round_s: swarm_s.iter().map(|x| r3(*x)).collect(),
        local_best_s: r3(lb),
        swarm_best_s: r3(sb),
        local_evals_per_min: per_min(lb),
        swarm_evals_per_min: per_min(sb),
        swarm_over_local: r3(sb / lb),
        local_unresolved: local_bad,
        swarm_unresolved: swarm_bad,
    })
}
