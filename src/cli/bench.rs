//! `agentao bench …`: benchmarks printing JSON, each against a baseline measured in the same
//! run, so figures are ratios that do not depend on the machine.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::Serialize;

use crate::config::Settings;
use crate::sandbox::{ExecRequest, Sandbox, SandboxSpec};

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// create+start+exec(true)+remove through agentao vs `docker run --rm IMAGE true`.
    Sandbox {
        /// Rounds of each (interleaved).
        #[arg(long, default_value_t = 15)]
        iterations: usize,
        /// Image (default: agentao/base:latest).
        #[arg(long)]
        image: Option<String>,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Serialize)]
struct SandboxBench {
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

pub async fn run(cmd: BenchCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Sandbox {
            iterations,
            image,
            out,
        } => {
            let image = image.unwrap_or_else(|| format!("{}:latest", crate::sandbox::BASE_REPO));
            let result = bench_sandbox(settings, &image, iterations.max(1)).await?;
            let json = serde_json::to_string_pretty(&result)?;
            if let Some(path) = out {
                std::fs::write(&path, &json)?;
            }
            println!("{json}");
            Ok(())
        }
    }
}

async fn bench_sandbox(
    settings: &Settings,
    image: &str,
    iterations: usize,
) -> anyhow::Result<SandboxBench> {
    let engine = super::engine(settings).await?;
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

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// The `q` quantile (nearest rank) of `xs`, sorting it in place.
fn percentile(xs: &mut [Duration], q: f64) -> Duration {
    xs.sort();
    let idx = ((xs.len() as f64 - 1.0) * q).round() as usize;
    xs[idx.min(xs.len() - 1)]
}
