//! `bench sandbox`: a sandbox request served from the warm pool (take + exec `true` +
//! release) and one started cold (create + start + exec + remove, `--no-pool`), each against
//! `docker run --rm IMAGE true`, interleaved in one run.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{ms, percentile};
use crate::config::Settings;
use crate::sandbox::{Engine, ExecRequest, Sandbox, SandboxSpec};

#[derive(Debug, Serialize)]
pub(super) struct SandboxBench {
    benchmark: &'static str,
    image: String,
    iterations: usize,
    /// Take from the pool + exec `true` + release (removal continues in the background).
    pooled_median_ms: f64,
    pooled_p90_ms: f64,
    /// Requests that found an idle container (the others fell back to a cold start).
    pooled_hits: usize,
    /// Create + start + exec `true` + remove, without the pool (the path before it).
    cold_median_ms: f64,
    cold_p90_ms: f64,
    docker_cli_median_ms: f64,
    docker_cli_p90_ms: f64,
    /// pooled median / docker CLI median. Target <= 0.5.
    ratio: f64,
    /// cold median / docker CLI median.
    cold_ratio: f64,
}

async fn once(engine: &Engine, spec: &SandboxSpec, wait_removed: bool) -> anyhow::Result<()> {
    let sandbox = Sandbox::start(engine, spec).await?;
    let out = sandbox
        .exec(&ExecRequest::new(["true"]).timeout(Duration::from_secs(30)))
        .await?;
    if wait_removed {
        sandbox.remove().await?;
    } else {
        sandbox.release();
    }
    anyhow::ensure!(out.success(), "`true` failed in the sandbox: {out:?}");
    Ok(())
}

pub(super) async fn bench_sandbox(
    settings: &Settings,
    image: &str,
    iterations: usize,
) -> anyhow::Result<SandboxBench> {
    let base = crate::cli::context::engine(settings).await?;
    let pooled = base.clone().with_pool(true);
    let cold = base.with_pool(false);
    let mut spec = SandboxSpec::new(image, settings.run_id.clone());
    spec.limits = settings.limits.clone();
    pooled.warm(vec![spec.clone(); iterations + 1]);
    let (mut ours, mut colds, mut cli) = (Vec::new(), Vec::new(), Vec::new());
    let mut hits = 0;
    // One warm-up of each, not counted.
    for i in 0..=iterations {
        // A request arriving while the pool is warm (the refill of the last take is done).
        let ready = Instant::now();
        while pooled.pool_stats().idle == 0 && ready.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let hit = pooled.pool_stats().idle > 0;
        let t = Instant::now();
        once(&pooled, &spec, false).await?;
        let ours_t = t.elapsed();

        let t = Instant::now();
        once(&cold, &spec, true).await?;
        let cold_t = t.elapsed();

        let t = Instant::now();
        let status = tokio::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", image, "true"])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "docker run failed: {status}");
        let cli_t = t.elapsed();
        if i > 0 {
            hits += usize::from(hit);
            ours.push(ours_t);
            colds.push(cold_t);
            cli.push(cli_t);
        }
    }
    pooled.shutdown(Duration::from_secs(60)).await;
    let (om, o90) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.9));
    let (km, k90) = (percentile(&mut colds, 0.5), percentile(&mut colds, 0.9));
    let (cm, c90) = (percentile(&mut cli, 0.5), percentile(&mut cli, 0.9));
    Ok(SandboxBench {
        benchmark: "sandbox_roundtrip",
        image: image.to_owned(),
        iterations,
        pooled_median_ms: ms(om),
        pooled_p90_ms: ms(o90),
        pooled_hits: hits,
        cold_median_ms: ms(km),
        cold_p90_ms: ms(k90),
        docker_cli_median_ms: ms(cm),
        docker_cli_p90_ms: ms(c90),
        ratio: om.as_secs_f64() / cm.as_secs_f64(),
        cold_ratio: km.as_secs_f64() / cm.as_secs_f64(),
    })
}
