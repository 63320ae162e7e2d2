//! Every environment variable agentao reads, as one documented constant each.
//!
//! clap refers to these (`env = …`), and `.env.miner_example` / `.env.validator_example`
//! list them; a test keeps the examples and this file in step.

/// Docker engine address (`unix:///var/run/docker.sock` when unset).
pub const DOCKER_HOST: &str = "DOCKER_HOST";
/// Directory for caches: the debootstrap root, the wheelhouse, downloaded sdists.
pub const AGENTAO_CACHE_DIR: &str = "AGENTAO_CACHE_DIR";
/// Directory for state: the task store, run directories, the dataset.
pub const AGENTAO_DATA_DIR: &str = "AGENTAO_DATA_DIR";
/// Log format: `pretty` (default on a terminal) or `json`.
pub const AGENTAO_LOG_FORMAT: &str = "AGENTAO_LOG_FORMAT";
/// Run id for the `agentao.run` label of this process's containers (random when unset).
pub const AGENTAO_RUN_ID: &str = "AGENTAO_RUN_ID";
/// tracing filter directives, e.g. `agentao=debug`.
pub const RUST_LOG: &str = "RUST_LOG";
/// Memory limit of a sandbox in MiB.
pub const AGENTAO_SANDBOX_MEMORY_MB: &str = "AGENTAO_SANDBOX_MEMORY_MB";
/// CPUs a sandbox may use (fractions allowed).
pub const AGENTAO_SANDBOX_CPUS: &str = "AGENTAO_SANDBOX_CPUS";
/// Maximum number of processes in a sandbox.
pub const AGENTAO_SANDBOX_PIDS: &str = "AGENTAO_SANDBOX_PIDS";
/// Wall-clock limit of a sandbox in seconds.
pub const AGENTAO_SANDBOX_WALL_SECS: &str = "AGENTAO_SANDBOX_WALL_SECS";
/// Size of a sandbox's writable scratch space (`/tmp`, memory-backed) in MiB.
pub const AGENTAO_SANDBOX_TMP_MB: &str = "AGENTAO_SANDBOX_TMP_MB";
/// How many sandboxes may run at once.
pub const AGENTAO_MAX_SANDBOXES: &str = "AGENTAO_MAX_SANDBOXES";
/// Where sandboxes run: local, swarm or kubernetes.
pub const AGENTAO_SANDBOX_BACKEND: &str = "AGENTAO_SANDBOX_BACKEND";
/// Registry (host:port) a cluster's nodes pull agentao's images from.
pub const AGENTAO_REGISTRY: &str = "AGENTAO_REGISTRY";
/// Kubernetes API server base URL (default: kubeconfig, or in-cluster).
pub const AGENTAO_KUBE_API_URL: &str = "AGENTAO_KUBE_API_URL";
/// Kubernetes namespace of the sandboxes.
pub const AGENTAO_KUBE_NAMESPACE: &str = "AGENTAO_KUBE_NAMESPACE";
/// Python package index used by the host to fetch wheels and sdists.
pub const PIP_INDEX_URL: &str = "PIP_INDEX_URL";
/// Debian mirror used by debootstrap for the base image.
pub const AGENTAO_DEBIAN_MIRROR: &str = "AGENTAO_DEBIAN_MIRROR";
/// Key for an OpenAI-compatible API; when unset the embedded local model is used.
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// Base URL of the OpenAI-compatible API.
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
/// Loopback port of the embedded model server (default 8642).
pub const AGENTAO_LLM_PORT: &str = "AGENTAO_LLM_PORT";
/// Default model name or alias (`gpt4omini`).
pub const AGENTAO_MODEL: &str = "AGENTAO_MODEL";
/// Maximum dollars a miner spends on one task.
pub const AGENTAO_INSTANCE_COST: &str = "AGENTAO_INSTANCE_COST";
/// Subnet id.
pub const AGENTAO_NETUID: &str = "AGENTAO_NETUID";
/// The subnet's mechanism validators set weights for (0: the main one).
pub const AGENTAO_MECHID: &str = "AGENTAO_MECHID";
/// The chain: `local` (a metagraph file in the data dir), `finney`, `test`, or a subtensor
/// node's ws(s)/http(s) address.
pub const AGENTAO_SUBTENSOR_NETWORK: &str = "AGENTAO_SUBTENSOR_NETWORK";
/// Wallet name under `~/.bittensor/wallets`.
pub const AGENTAO_WALLET_NAME: &str = "AGENTAO_WALLET_NAME";
/// Hotkey name inside the wallet.
pub const AGENTAO_WALLET_HOTKEY: &str = "AGENTAO_WALLET_HOTKEY";
/// Root of the wallets directory (default `~/.bittensor/wallets`).
pub const AGENTAO_WALLET_PATH: &str = "AGENTAO_WALLET_PATH";
/// Where a miner clones `owner/name` repositories from (original-protocol tasks, git task
/// descriptions), and where a validator's descriptions of GitHub tasks point; default
/// `https://github.com`. A git source elsewhere is refused.
pub const AGENTAO_GIT_BASE_URL: &str = "AGENTAO_GIT_BASE_URL";
/// GitHub token: a higher API rate limit for `tasks harvest`; needed by `github propose`.
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// GitHub REST API base URL (`https://api.github.com` when unset).
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
/// HuggingFace Hub token for `dataset push` (else the token file `huggingface-cli login`
/// wrote).
pub const HF_TOKEN: &str = "HF_TOKEN";
/// The token file `huggingface-cli login` writes (default `$HF_HOME/token`).
pub const HF_TOKEN_PATH: &str = "HF_TOKEN_PATH";
/// HuggingFace's home (default `~/.cache/huggingface`), holding the login's `token`.
pub const HF_HOME: &str = "HF_HOME";
/// HuggingFace Hub endpoint.
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// PostHog project key; telemetry is off unless set.
pub const POSTHOG_API_KEY: &str = "POSTHOG_API_KEY";
/// PostHog host.
pub const POSTHOG_HOST: &str = "POSTHOG_HOST";

/// Every variable above, for documentation checks.
pub const ALL: &[&str] = &[
    DOCKER_HOST,
    AGENTAO_CACHE_DIR,
    AGENTAO_DATA_DIR,
    AGENTAO_LOG_FORMAT,
    AGENTAO_RUN_ID,
    RUST_LOG,
    AGENTAO_SANDBOX_MEMORY_MB,
    AGENTAO_SANDBOX_CPUS,
    AGENTAO_SANDBOX_PIDS,
    AGENTAO_SANDBOX_WALL_SECS,
    AGENTAO_SANDBOX_TMP_MB,
    AGENTAO_MAX_SANDBOXES,
    AGENTAO_SANDBOX_BACKEND,
    AGENTAO_REGISTRY,
    AGENTAO_KUBE_API_URL,
    AGENTAO_KUBE_NAMESPACE,
    PIP_INDEX_URL,
    AGENTAO_DEBIAN_MIRROR,
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
    AGENTAO_LLM_PORT,
    AGENTAO_MODEL,
    AGENTAO_INSTANCE_COST,
    AGENTAO_NETUID,
    AGENTAO_MECHID,
    AGENTAO_SUBTENSOR_NETWORK,
    AGENTAO_WALLET_NAME,
    AGENTAO_WALLET_HOTKEY,
    AGENTAO_WALLET_PATH,
    AGENTAO_GIT_BASE_URL,
    GITHUB_TOKEN,
    GITHUB_API_URL,
    HF_TOKEN,
    HF_TOKEN_PATH,
    HF_HOME,
    HF_ENDPOINT,
    POSTHOG_API_KEY,
    POSTHOG_HOST,
];
