//! `bench axon`: signed requests per second on loopback from a separate load process, against
//! the Python SDK's axon serving the same synapse.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::tempfile_dir;
use crate::config::Settings;

#[derive(Debug, Serialize)]
pub(super) struct AxonBench {
    benchmark: &'static str,
    requests: usize,
    concurrency: usize,
    agentao: crate::cli::subnet_cmd::LoadReport,
    python_sdk: crate::cli::subnet_cmd::LoadReport,
    /// agentao requests/s / Python SDK requests/s.
    ratio: f64,
}

/// The Python axon the benchmark measures against (bittensor 10.5.0): agentao's `CodingTask`
/// as an SDK class (shared with the tests' Python neurons) and an axon answering it.
const PYTHON_AXON: &str = concat!(
    include_str!("coding_task.py"),
    include_str!("python_axon.py")
);

async fn python_with_bittensor(settings: &Settings) -> anyhow::Result<std::path::PathBuf> {
    let dir = settings.paths().venv("bittensor");
    if !crate::python::venv::is_complete(&dir) {
        crate::cli::printer::status(format_args!(
            "installing bittensor 10.5.0 into {}",
            dir.display()
        ));
    }
    let index = settings.pip_index_url.as_deref();
    Ok(crate::python::venv::ensure_venv(&dir, &["bittensor==10.5.0"], index).await?)
}

async fn run_load(
    wallets: &std::path::Path,
    port: u16,
    hotkey: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<crate::cli::subnet_cmd::LoadReport> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "subnet",
            "load",
            "--port",
            &port.to_string(),
            "--axon-hotkey",
            hotkey,
        ])
        .args([
            "--requests",
            &requests.to_string(),
            "--concurrency",
            &concurrency.to_string(),
        ])
        .arg("--wallets")
        .arg(wallets)
        .env("AGENTAO_LOG_FORMAT", "json")
        .kill_on_drop(true)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "load generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(text.lines().last().unwrap_or(""))?)
}

pub(super) async fn bench_axon(
    settings: &Settings,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<AxonBench> {
    use crate::subnet::{Axon, AxonConfig, Metagraph, Neuron, Wallet};
    let python = python_with_bittensor(settings).await?;
    let dir = tempfile_dir()?;
    let loader = Wallet::new(&dir, "load", "default").create_hotkey()?;
    let axon_key = Wallet::new(&dir, "axon", "default").create_hotkey()?;

    // Ours, in this process; the load comes from another.
    let metagraph = Metagraph {
        netuid: settings.netuid,
        neurons: vec![Neuron {
            uid: 0,
            hotkey: loader.ss58(),
            coldkey: String::new(),
            stake: 1.0,
            ip: "127.0.0.1".into(),
            port: 0,
            validator_permit: true,
        }],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let cfg = AxonConfig {
        max_concurrent: concurrency.max(16),
        ..AxonConfig::default()
    };
    let server = Axon::new(axon_key.clone(), metagraph, cfg)
        .coding_task(|s| async move {
            let mut t = s.body;
            t.patch = Some(format!("patch for {}", t.repo));
            t
        })
        .serve(listener);
    let ours = run_load(&dir, port, &axon_key.ss58(), requests, concurrency).await;
    server.abort();
    let ours = ours?;

    // The Python SDK's axon with the same wallet.
    let py_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(&python)
        .args(["-c", PYTHON_AXON])
        .arg(&dir)
        .arg(py_port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while tokio::net::TcpStream::connect(("127.0.0.1", py_port))
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "the Python axon did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let theirs = run_load(&dir, py_port, &axon_key.ss58(), requests, concurrency).await;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let theirs = theirs?;
    Ok(AxonBench {
        benchmark: "axon",
        requests,
        concurrency,
        ratio: ours.requests_per_second / theirs.requests_per_second.max(1e-9),
        agentao: ours,
        python_sdk: theirs,
    })
}
