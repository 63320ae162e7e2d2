//! `bench sandbox`: create, exec and remove a sandbox against `docker run --rm true`.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{ms, percentile};
use crate::config::Settings;
use crate::sandbox::{ExecRequest, Sandbox, SandboxSpec};

#[derive(Debug, Serialize)]
pub(super) struct SandboxBench {
    benchmark: &'static str,
    image: String,
    iterations: usize,
    agentao_median_ms: f64,
    agentao_p90_ms: f64,
    docker_cli_median_ms: f64,
    docker_cli_p90_ms: f64,
    /// agentao median / docker CLI median; below 1.0 means agentao is faster.
    ratio: f64,
}

pub(super) async fn bench_sandbox(
    settings: &Settings,
    image: &str,
    iterations: usize,
) -> anyhow::Result<SandboxBench> {
    let engine = crate::cli::context::engine(settings).await?;
    let mut spec = SandboxSpec::new(image, settings.run_id.clone());
    spec.limits = settings.limits.clone();
    let mut ours = Vec::new();
    let mut cli = Vec::new();
    // One warm-up of each, not counted.
    for i in 0..=iterations {
        let t = Instant::now();
        let sandbox = Sandbox::start(&engine, &spec).await?;
        let out = sandbox
            .exec(&ExecRequest::new(["true"]).timeout(Duration::from_secs(30)))
            .await?;
        sandbox.remove().await?;
        anyhow::ensure!(out.success(), "`true` failed in the sandbox: {out:?}");
        let ours_t = t.elapsed();

        let t = Instant::now();
        let status = tokio::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", image, "true"])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "docker run failed: {status}");
        let cli_t = t.elapsed();
        if i > 0 {
            ours.push(ours_t);
            cli.push(cli_t);
        }
    }
    let (om, o90) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.9));
    let (cm, c90) = (percentile(&mut cli, 0.5), percentile(&mut cli, 0.9));
    Ok(SandboxBench {
        benchmark: "sandbox_roundtrip",
        image: image.to_owned(),
        iterations,
        agentao_median_ms: ms(om),
        agentao_p90_ms: ms(o90),
        docker_cli_median_ms: ms(cm),
        docker_cli_p90_ms: ms(c90),
        ratio: om.as_secs_f64() / cm.as_secs_f64(),
    })
}
