//! Where an agent run's model proxy lives, and its start and end.
//!
//! In a container ([`ProxyPlacement::Container`]): an image made locally from the base image
//! and the agentao binary (`docker/proxy/Dockerfile`, tagged by the binary's hash), run with
//! the host's network namespace and listening only on the run's internal network's gateway
//! address. The agent's sandbox reaches it there (the host's address on an internal network is
//! the one address such a network routes to), and the proxy reaches the validator's model
//! wherever the host does, its loopback included (the embedded model listens there). The key
//! is in the proxy container's environment only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::CodeRunConfig;
use crate::agent::AgentError;
use crate::llm::proxy::{self, ProxyConfig, ProxyHandle, ProxyUsage};
use crate::sandbox::{
    Engine, Limits, Network, Sandbox, SandboxError, SandboxSpec, build_image_from_context,
    tar_files,
};

const DOCKERFILE: &str = include_str!("../../../docker/proxy/Dockerfile");
/// The proxy's usage file inside its container.
const USAGE_FILE: &str = "/tmp/agentao-proxy-usage.json";

/// Where the proxy of an agent run lives.
#[derive(Debug, Clone)]
pub enum ProxyPlacement {
    /// In this process, listening on the internal network's gateway address.
    InProcess,
    /// In a container of `image` (see [`proxy_image`]), with the host's network.
    Container { image: String },
}

/// A proxy serving one run.
pub(super) struct RunningProxy {
    pub url: String,
    kind: Kind,
}

enum Kind {
    Here(ProxyHandle),
    There(Box<Sandbox>),
}

/// The proxy image for the agentao binary at `binary` on `base`, built when missing (tag
/// `agentao/proxy:<hash12>` of the binary and the Dockerfile).
pub async fn proxy_image(
    engine: &Engine,
    base: &str,
    binary: &std::path::Path,
) -> Result<String, SandboxError> {
    static KNOWN: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    let known = KNOWN
        .lock()
        .ok()
        .and_then(|k| k.as_ref().and_then(|m| m.get(binary).cloned()));
    if let Some(tag) = known
        && engine.image_exists(&tag).await?
    {
        return Ok(tag);
    }
    let bytes = tokio::fs::read(binary)
        .await
        .map_err(|e| SandboxError::io(format!("reading {}", binary.display()), e))?;
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(DOCKERFILE.as_bytes());
    h.update(base.as_bytes());
    let hash = hex::encode(h.finalize());
    let tag = format!("agentao/proxy:{}", &hash[..12]);
    if !engine.image_exists(&tag).await? {
        info!(%tag, "building the model proxy's image");
        let context = tar_files(
            &[
                ("Dockerfile", DOCKERFILE.as_bytes(), 0o644),
                ("agentao", &bytes[..], 0o755),
            ],
            0,
        )?;
        drop(bytes);
        build_image_from_context(
            engine,
            context,
            &tag,
            HashMap::from([("BASE".to_owned(), base.to_owned())]),
            &hash,
            |_| {},
        )
        .await?;
    }
    if let Ok(mut k) = KNOWN.lock() {
        k.get_or_insert_with(HashMap::new)
            .insert(binary.to_owned(), tag.clone());
    }
    Ok(tag)
}

/// Starts the proxy for one run and waits until it answers.
pub(super) async fn start(
    engine: &Engine,
    network: &Network,
    cfg: &ProxyConfig,
    placement: &ProxyPlacement,
    run: &CodeRunConfig,
) -> Result<RunningProxy, AgentError> {
    let gateway = network.gateway().to_owned();
    let proxy_err = |what: &str, e: std::io::Error| {
        AgentError::Sandbox(SandboxError::io(format!("model proxy: {what}"), e))
    };
    let (addr, kind) = match placement {
        ProxyPlacement::InProcess => {
            let listener = tokio::net::TcpListener::bind((gateway.as_str(), 0))
                .await
                .map_err(|e| proxy_err("bind", e))?;
            let handle = proxy::spawn(listener, cfg.clone()).map_err(|e| proxy_err("serve", e))?;
            (handle.addr.to_string(), Kind::Here(handle))
        }
        ProxyPlacement::Container { image } => {
            // A free port on the gateway address, handed to the container (host network).
            let port = std::net::TcpListener::bind((gateway.as_str(), 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| proxy_err("bind", e))?
                .port();
            let addr = format!("{gateway}:{port}");
            let wall = run.wall + Duration::from_secs(240);
            let mut spec = SandboxSpec::new(image.clone(), run.run_id.clone());
            spec.limits = Limits {
                memory_mb: 256,
                cpus: 0.5,
                pids: 64,
                wall,
                network: false,
                tmp_mb: 8,
            };
            spec.network = Some("host".into());
            let config = serde_json::to_string(cfg).unwrap_or_default();
            spec.cmd = Some(vec![
                "/usr/local/bin/agentao".into(),
                "agent".into(),
                "proxy".into(),
                "--listen".into(),
                addr.clone(),
                "--config".into(),
                config,
                "--usage-file".into(),
                USAGE_FILE.into(),
                "--exit-after".into(),
                wall.as_secs().to_string(),
            ]);
            if let Some(key) = &cfg.api_key {
                spec.env
                    .push(format!("{}={key}", crate::config::env_vars::OPENAI_API_KEY));
            }
            let sb = Sandbox::start(engine, &spec).await?;
            (addr, Kind::There(Box::new(sb)))
        }
    };
    let url = format!("http://{addr}/v1");
    wait_answering(&url).await?;
    Ok(RunningProxy { url, kind })
}

/// Polls `GET /v1/models` until the proxy answers (30 s at most).
async fn wait_answering(url: &str) -> Result<(), AgentError> {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("{url}/models"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(AgentError::Sandbox(SandboxError::io(
        "model proxy",
        std::io::Error::other(format!("{url} did not answer within 30 s")),
    )))
}

impl RunningProxy {
    /// Stops the proxy and returns the run's usage.
    pub async fn finish(self) -> ProxyUsage {
        match self.kind {
            Kind::Here(handle) => {
                let usage = handle.usage();
                handle.stop();
                usage
            }
            Kind::There(sb) => {
                let usage = match sb.read_file(USAGE_FILE, 1 << 16).await {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        warn!(error = %e, "the proxy's usage file does not parse");
                        ProxyUsage::default()
                    }),
                    Err(e) => {
                        warn!(error = %e, "cannot read the proxy's usage");
                        ProxyUsage::default()
                    }
                };
                let _ = (*sb).remove().await;
                usage
            }
        }
    }
}
