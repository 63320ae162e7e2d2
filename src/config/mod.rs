//! Settings: every knob agentao has, resolved once from defaults < `.env` < environment <
//! flags. Commands receive a [`Settings`], never raw arguments.
//!
//! The CLI (`cli/`) builds it; everything below reads it. It holds plain values only and does
//! no I/O beyond locating default directories. Also owns the sandbox [`Limits`], the embedded
//! model's id and port and [`Paths`], the one spelling of the data and cache directories'
//! layout. The bottom of the dependency line: imports no other module of agentao.

pub mod env_vars;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default subnet id (Agentao on mainnet).
pub const DEFAULT_NETUID: u16 = 62;
/// Default per-task budget of a miner in dollars, as in the original subnet.
pub const DEFAULT_INSTANCE_COST: f64 = 3.0;
/// Default Debian mirror for debootstrap.
pub const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// The embedded model's id (`llm/` serves it; the default model when no API key is set).
pub const EMBEDDED_MODEL: &str = "smollm2-135m-instruct";
/// Default loopback port of the embedded model server.
pub const DEFAULT_LLM_PORT: u16 = 8642;

/// The backends `--sandbox.backend` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The local Docker engine (containers).
    #[default]
    Local,
    /// Docker Swarm: one `replicated-job` service per sandbox.
    Swarm,
    /// Kubernetes: one Pod per sandbox.
    Kubernetes,
}

impl BackendKind {
    /// The name `--sandbox.backend` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Swarm => "swarm",
            BackendKind::Kubernetes => "kubernetes",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" | "docker" => Ok(BackendKind::Local),
            "swarm" => Ok(BackendKind::Swarm),
            "kubernetes" | "k8s" => Ok(BackendKind::Kubernetes),
            other => Err(format!(
                "unknown sandbox backend {other:?}: use local, swarm or kubernetes"
            )),
        }
    }
}

/// Resource limits of one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Memory limit in MiB (swap is not allowed beyond it).
    pub memory_mb: u64,
    /// CPUs, fractions allowed.
    pub cpus: f64,
    /// Maximum number of processes.
    pub pids: i64,
    /// Wall-clock limit of the whole container.
    pub wall: Duration,
    /// Whether the container gets a network (bridge) at all. Off by default.
    pub network: bool,
    /// Size of the writable scratch space (`/tmp`, a tmpfs counted against the memory limit),
    /// in MiB. The image's other world-writable folders (`/var/tmp`, `/run/lock`) are small
    /// tmpfs mounts too, so a process that does not own the image's files cannot write past
    /// these caps onto the host's disk. 0 leaves them on the container's own file system
    /// (for trusted work whose files the host reads back: the engine's copy API cannot see
    /// tmpfs mounts).
    pub tmp_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 2048,
            cpus: 1.0,
            pids: 512,
            wall: Duration::from_secs(900),
            network: false,
            tmp_mb: 512,
        }
    }
}

/// The layout of agentao's directories: every file and folder below the data directory (state
/// worth keeping) and the cache directory (anything that can be rebuilt), named once.
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    data: PathBuf,
    cache: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path, cache_dir: &Path) -> Paths {
        Paths {
            data: data_dir.to_path_buf(),
            cache: cache_dir.to_path_buf(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The SQLite task store with the forge's log.
    pub fn task_store(&self) -> PathBuf {
        self.data.join("tasks.db")
    }

    /// The dataset's append-only record store.
    pub fn records(&self) -> PathBuf {
        self.data.join("dataset").join("records.jsonl")
    }

    /// Where `agentao local` exports the dataset.
    pub fn dataset_export(&self) -> PathBuf {
        self.data.join("dataset").join("export")
    }

    /// A run directory: `agentao eval`'s (named after the predictions file) or `agentao
    /// agent solve`'s (named after the run id).
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.data.join("runs").join(name)
    }

    /// The local chain (metagraph file and weights log).
    pub fn local_chain(&self) -> PathBuf {
        self.data.join("chain")
    }

    /// The local subnet's own wallets (validator and miner of `agentao local`).
    pub fn local_wallets(&self) -> PathBuf {
        self.data.join("wallets")
    }

    /// The validator's moving averages.
    pub fn scores(&self) -> PathBuf {
        self.data.join("validator").join("scores.json")
    }

    /// The validator's forecast book: each miner's last forecasts and outcomes (Brier window),
    /// kept apart from the coding scores.
    pub fn forecasts(&self) -> PathBuf {
        self.data.join("validator").join("forecasts.json")
    }

    /// Cerebro's model as `agentao cerebro train` writes it; without it the shipped model is
    /// used.
    pub fn cerebro_model(&self) -> PathBuf {
        self.data.join("cerebro").join("model.json")
    }

    /// Wheelhouses of the base image.
    pub fn wheelhouse(&self) -> PathBuf {
        self.cache.join("wheelhouse")
    }

    /// A host-side venv for a Python program agentao runs beside itself.
    pub fn venv(&self, name: &str) -> PathBuf {
        self.cache.join("pyenv").join(name)
    }
}

/// Wallet selection (names only; keys are read by `subnet/`).
#[derive(Debug, Clone, PartialEq)]
pub struct WalletSettings {
    pub name: String,
    pub hotkey: String,
    /// Root of the wallets directory.
    pub path: PathBuf,
}

/// How to reach a language model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    /// API key; `None` means the embedded local model.
    pub api_key: Option<String>,
    /// Base URL of an OpenAI-compatible API.
    pub base_url: Option<String>,
    /// Resolved model id.
    pub model: String,
    /// Dollar budget per task.
    pub instance_cost: f64,
    /// Loopback port of the embedded model server.
    pub local_port: u16,
}

/// Which chain the neurons read and write.
#[derive(Debug, Clone, PartialEq)]
pub enum Network {
    /// The metagraph file and weights log under the data directory.
    Local,
    /// A subtensor node at this address.
    Subtensor(String),
}

impl Network {
    /// `local`, `finney`, `test`, or an address (`ws://`, `wss://`, `http://`, `https://`).
    pub fn parse(s: &str) -> Result<Network, String> {
        match s {
            "" | "local" => Ok(Network::Local),
            "finney" => Ok(Network::Subtensor(FINNEY_ENDPOINT.into())),
            "test" => Ok(Network::Subtensor(TEST_ENDPOINT.into())),
            url if ["ws://", "wss://", "http://", "https://"]
                .iter()
                .any(|p| url.starts_with(p)) =>
            {
                Ok(Network::Subtensor(url.into()))
            }
            other => Err(format!(
                "unknown network {other:?}: use local, finney, test or a node address (wss://…)"
            )),
        }
    }
}

/// The main chain's public endpoint.
pub const FINNEY_ENDPOINT: &str = "wss://entrypoint-finney.opentensor.ai:443";
/// The test chain's public endpoint.
pub const TEST_ENDPOINT: &str = "wss://test.finney.opentensor.ai:443";

/// Everything a command needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub netuid: u16,
    /// The mechanism weights are set for (0: the main one).
    pub mechid: u8,
    pub network: Network,
    pub wallet: WalletSettings,
    pub llm: LlmSettings,
    /// Docker engine address; `None` for the default socket.
    pub docker_host: Option<String>,
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Limits of every sandbox.
    pub limits: Limits,
    /// Sandboxes that may run at once.
    pub max_sandboxes: usize,
    /// Whether the engine keeps a warm pool of started containers (`--no-pool` turns it off).
    pub sandbox_pool: bool,
    /// Where sandboxes run (`--sandbox.backend`).
    pub sandbox_backend: BackendKind,
    /// The registry a cluster's nodes pull agentao's images from (`host:port`).
    pub registry: Option<String>,
    /// Engine addresses of swarm nodes other than the manager: `(node id, address)`.
    pub swarm_node_engines: Vec<(String, String)>,
    /// The Kubernetes API server's base URL (`None`: kubeconfig or in-cluster).
    pub kube_api_url: Option<String>,
    /// The Kubernetes namespace sandboxes run in.
    pub kube_namespace: String,
    pub pip_index_url: Option<String>,
    pub debian_mirror: String,
    /// GitHub's REST API (`GITHUB_API_URL`; the public API when `None`).
    pub github_api_url: Option<String>,
    /// GitHub token (`GITHUB_TOKEN`), sent as a bearer to the API only.
    pub github_token: Option<String>,
    /// Id of this process's run (the `agentao.run` label of its containers).
    pub run_id: String,
}

impl Settings {
    /// Settings with every default, for tests and library users.
    pub fn defaults() -> Settings {
        Settings {
            netuid: DEFAULT_NETUID,
            mechid: 0,
            network: Network::Local,
            wallet: WalletSettings {
                name: "default".into(),
                hotkey: "default".into(),
                path: home().join(".bittensor").join("wallets"),
            },
            llm: LlmSettings {
                api_key: None,
                base_url: None,
                model: EMBEDDED_MODEL.to_owned(),
                instance_cost: DEFAULT_INSTANCE_COST,
                local_port: DEFAULT_LLM_PORT,
            },
            docker_host: None,
            cache_dir: default_cache_dir(),
            data_dir: default_data_dir(),
            limits: Limits::default(),
            max_sandboxes: default_parallelism(),
            sandbox_pool: true,
            sandbox_backend: BackendKind::Local,
            registry: None,
            swarm_node_engines: Vec::new(),
            kube_api_url: None,
            kube_namespace: "default".to_owned(),
            pip_index_url: None,
            debian_mirror: DEFAULT_DEBIAN_MIRROR.to_owned(),
            github_api_url: None,
            github_token: None,
            run_id: new_run_id(),
        }
    }
}

impl Settings {
    /// The layout of this configuration's data and cache directories.
    pub fn paths(&self) -> Paths {
        Paths::new(&self.data_dir, &self.cache_dir)
    }
}

/// A short random run id.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Sandboxes to run at once by default: one per core.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// `$AGENTAO_CACHE_DIR`, else `$XDG_CACHE_HOME/agentao` or `~/.cache/agentao`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(env_vars::AGENTAO_CACHE_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map_or_else(|| home().join(".cache"), PathBuf::from)
        .join("agentao")
}

/// `$AGENTAO_DATA_DIR`, else `$XDG_DATA_HOME/agentao` or `~/.local/share/agentao`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(env_vars::AGENTAO_DATA_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_DATA_HOME")
        .map_or_else(|| home().join(".local").join("share"), PathBuf::from)
        .join("agentao")
}

/// The token file `huggingface-cli login` writes, as `huggingface_hub` looks for it:
/// `$HF_TOKEN_PATH`, else `$HF_HOME/token`, else `$XDG_CACHE_HOME/huggingface/token` or
/// `~/.cache/huggingface/token`.
pub fn hf_token_file() -> PathBuf {
    let set = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(path) = set(env_vars::HF_TOKEN_PATH) {
        return PathBuf::from(path);
    }
    let hf_home = set(env_vars::HF_HOME).map_or_else(
        || {
            set("XDG_CACHE_HOME")
                .map_or_else(|| home().join(".cache"), PathBuf::from)
                .join("huggingface")
        },
        PathBuf::from,
    );
    hf_home.join("token")
}

/// Seconds to a [`Duration`], for flags.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[cfg(test)]
mod tests {
    use super::BackendKind;

    #[test]
    fn backend_names_parse_and_print_back() {
        for kind in [
            BackendKind::Local,
            BackendKind::Swarm,
            BackendKind::Kubernetes,
        ] {
            assert_eq!(kind.as_str().parse::<BackendKind>(), Ok(kind));
        }
        assert_eq!("K8S".parse::<BackendKind>(), Ok(BackendKind::Kubernetes));
        let err = "nomad".parse::<BackendKind>().unwrap_err();
        assert!(err.contains("nomad") && err.contains("swarm"), "{err}");
    }
}
