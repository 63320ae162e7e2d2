//! The composition root: everything a command needs that is built from [`Settings`] — the
//! Docker engine (with leftovers reaped), the chain and the wallet, the model client (starting
//! the embedded server when no API key is set), the task and record stores and the forge's
//! configuration. Commands ask here instead of building their own, so each is built one way.

use std::path::PathBuf;

use clap::Args;

use super::printer;
use crate::config::{Network, Settings};
use crate::forge::ForgeConfig;
use crate::llm::local::{LocalModel, SharedServer, is_serving};
use crate::llm::{LlmClient, LlmConfig};
use crate::sandbox::{
    BackendKind, Engine, KubeBackend, KubeCluster, Registry, SwarmBackend, SwarmOptions,
};
use crate::subnet::{AnyChain, Keypair, LocalChain, SubtensorChain, SubtensorConfig, Wallet};
use crate::tasks::TaskStore;

/// Connects to the engine named in the settings, with a sandbox budget of `--max-sandboxes`,
/// a warm pool unless `--no-pool` and sandboxes on `--sandbox.backend`, and reaps what dead
/// runs left behind.
pub async fn engine(settings: &Settings) -> anyhow::Result<Engine> {
    let engine = Engine::connect(settings.docker_host.as_deref())
        .await?
        .with_max_sandboxes(settings.max_sandboxes)
        .with_pool(settings.sandbox_pool);
    let engine = match settings.sandbox_backend {
        BackendKind::Local => engine,
        BackendKind::Swarm => {
            let opts = SwarmOptions {
                registry: settings.registry.clone(),
                node_engines: settings.swarm_node_engines.iter().cloned().collect(),
            };
            let swarm = SwarmBackend::connect(&engine, opts).await?;
            engine.with_backend(swarm.into())
        }
        BackendKind::Kubernetes => {
            let cluster =
                KubeCluster::connect(settings.kube_api_url.as_deref(), &settings.kube_namespace)
                    .await?;
            let registry = settings
                .registry
                .as_deref()
                .map(Registry::new)
                .transpose()?;
            engine.with_backend(KubeBackend::new(cluster).with_registry(registry).into())
        }
    };
    let reaped = crate::sandbox::reap_leftovers(&engine).await?;
    if !reaped.containers.is_empty() {
        tracing::info!(
            count = reaped.containers.len(),
            "removed containers left by earlier runs"
        );
    }
    Ok(engine)
}

/// Whether a weights extrinsic is followed until the chain took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inclusion {
    /// Wait until `LastUpdate` moved (or the era passed).
    Wait,
    /// Return once the node accepted the extrinsic.
    Submit,
}

/// The chain `--subtensor.network` names; `signer` signs weights on a subtensor chain.
pub fn chain(
    settings: &Settings,
    signer: Option<Keypair>,
    inclusion: Inclusion,
) -> anyhow::Result<AnyChain> {
    Ok(match &settings.network {
        Network::Local => AnyChain::Local(local_chain(settings)),
        Network::Subtensor(endpoint) => {
            let mut config = SubtensorConfig::new(endpoint, settings.netuid);
            config.wait = inclusion == Inclusion::Wait;
            config.mechid = settings.mechid;
            AnyChain::Subtensor(Box::new(SubtensorChain::new(config, signer)?))
        }
    })
}

pub fn local_chain(settings: &Settings) -> LocalChain {
    LocalChain::new(&settings.paths().local_chain(), settings.netuid)
}

pub fn wallet(settings: &Settings) -> Wallet {
    Wallet::new(
        &settings.wallet.path,
        &settings.wallet.name,
        &settings.wallet.hotkey,
    )
}

fn remote_config(settings: &Settings) -> Option<LlmConfig> {
    if settings.llm.api_key.is_none() && settings.llm.base_url.is_none() {
        return None;
    }
    let base = settings
        .llm
        .base_url
        .clone()
        .unwrap_or_else(|| crate::llm::DEFAULT_BASE_URL.to_owned());
    let mut cfg = LlmConfig::new(&base, &settings.llm.model);
    cfg.api_key = settings.llm.api_key.clone();
    Some(cfg)
}

/// A client of the configured remote model, when an API key or base URL is set.
pub fn remote_llm(settings: &Settings) -> Option<LlmClient> {
    remote_config(settings).map(LlmClient::new)
}

/// A model client for the settings; starts the embedded server when no API key is set and
/// nothing serves the local URL yet (the returned handle keeps it alive, and lets a miner
/// restart it). The server is only returned once it answered a real completion.
pub async fn llm(settings: &Settings) -> anyhow::Result<(LlmClient, Option<SharedServer>)> {
    refuse_unreachable_model(settings)?;
    let mut server = None;
    let mut cfg = match remote_config(settings) {
        Some(cfg) => cfg,
        None => {
            let port = settings.llm.local_port;
            let mut url = format!("http://127.0.0.1:{port}/v1");
            if !is_serving(&url).await {
                let local = installed_model(settings).await?;
                let s = local.serve(port).await?;
                url = s.base_url.clone();
                server = Some(std::sync::Arc::new(tokio::sync::Mutex::new(s)));
            } else if let Err(reason) =
                crate::llm::local::completion_check(&url, &settings.llm.model).await
            {
                // `/v1/models` answering proves little: a server whose inference crashes
                // still lists its models.
                anyhow::bail!(
                    "a model server answers at {url} but not with a chat completion ({reason}); stop it or set --llm-port"
                );
            }
            LlmConfig::new(&url, &settings.llm.model)
        }
    };
    if settings.llm.api_key.is_none() {
        // The small local model loops on greedy decoding; sample and keep replies short.
        cfg.temperature = Some(0.7);
        cfg.max_tokens = Some(512);
    }
    Ok((LlmClient::new(cfg), server))
}

/// A remote model named without a key or base URL would not answer: the embedded model would,
/// under the remote model's name. That is refused, saying what would answer.
pub fn refuse_unreachable_model(settings: &Settings) -> anyhow::Result<()> {
    if let Some(why) = unreachable_model(settings) {
        return Err(super::UserError::new(why)
            .hint(format!(
                "set OPENAI_API_KEY (and OPENAI_BASE_URL for a service other than OpenAI), or drop --model / AGENTAO_MODEL (or pass --model local) to use the embedded model {}",
                crate::config::EMBEDDED_MODEL
            ))
            .into());
    }
    Ok(())
}

/// Why the configured model cannot answer, when it cannot: a remote model with neither an API
/// key nor a base URL.
pub fn unreachable_model(settings: &Settings) -> Option<String> {
    let remote = settings.llm.api_key.is_some() || settings.llm.base_url.is_some();
    (!remote && settings.llm.model != crate::config::EMBEDDED_MODEL).then(|| {
        format!(
            "model {} is a remote model and no OPENAI_API_KEY or OPENAI_BASE_URL is set; without them only the embedded model {} answers",
            settings.llm.model,
            crate::config::EMBEDDED_MODEL
        )
    })
}

/// Where the task store is.
#[derive(Debug, Args)]
pub struct StoreArg {
    /// Task store (SQLite); default `<data dir>/tasks.db`.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

impl StoreArg {
    pub fn path(&self, settings: &Settings) -> PathBuf {
        self.store
            .clone()
            .unwrap_or_else(|| settings.paths().task_store())
    }

    pub fn open(&self, settings: &Settings) -> anyhow::Result<TaskStore> {
        Ok(TaskStore::open(&self.path(settings))?)
    }
}

/// The embedded model, installed first when it is not (once; building llama.cpp takes
/// minutes).
pub async fn installed_model(settings: &Settings) -> anyhow::Result<LocalModel> {
    let local = LocalModel::new(&settings.cache_dir);
    if !local.is_installed() {
        printer::status(format_args!(
            "installing the embedded model into {} (once; building llama.cpp for {} takes minutes)",
            local.dir.display(),
            local.variant.name()
        ));
        super::progress::install_model(&local, settings).await?;
    }
    Ok(local)
}

/// The forge's configuration from the settings (workers, limits, run id, index).
pub fn forge_config(settings: &Settings) -> ForgeConfig {
    let mut cfg = ForgeConfig::new(&settings.cache_dir);
    cfg.workers = settings.max_sandboxes.max(1);
    cfg.limits = settings.limits.clone();
    cfg.run_id = settings.run_id.clone();
    cfg.index_url = settings.pip_index_url.clone();
    cfg.difficulty_model = cerebro_model(settings).ok();
    cfg
}

/// Cerebro's model: `<data dir>/cerebro/model.json` when trained there, else the shipped one.
pub fn cerebro_model(
    settings: &Settings,
) -> Result<std::sync::Arc<crate::cerebro::Model>, crate::cerebro::CerebroError> {
    crate::cerebro::model_or_shipped(&settings.paths().cerebro_model())
}

/// The record store of the dataset (`<data dir>/dataset/records.jsonl` unless named).
pub fn records_path(settings: &Settings) -> PathBuf {
    settings.paths().records()
}

/// The tasks still in rotation (every task of the data directory's store): the dataset export
/// withholds their answers.
pub fn in_rotation(settings: &Settings) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let path = settings.paths().task_store();
    if !path.is_file() {
        return Ok(Default::default());
    }
    let store = crate::tasks::TaskStore::open(&path)?;
    Ok(store
        .all(None)?
        .into_iter()
        .map(|t| t.instance_id)
        .collect())
}
