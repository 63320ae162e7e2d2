//! The command line: clap definitions, settings resolution, dispatch, and the one place where
//! errors become exit codes. This is the edge: `anyhow` is used here and nowhere below.
//! Owns the composition root (`context.rs`: engine, chain, wallet, model client, stores built
//! from [`Settings`]), the one printer (`printer.rs`) and progress (`progress.rs`). May use
//! every module; no module may use it. Decisions (rounds, scoring) belong to `neurons/`.
//!
//! Exit codes: 0 success, 1 unexpected failure (with the cause chain), 2 the user's input was
//! wrong (bad flag, missing image, malformed file; with a hint), 130 interrupted. SIGINT and
//! SIGTERM both interrupt: a command is dropped on the spot (its sandbox guards remove their
//! containers) and exits 130, except `miner` and `validator`, which get the signal as a
//! cancelled token, stop by their deadline and exit 0; a second signal forces them (130).

mod agent_cmd;
mod agent_code_cmd;
mod bench;
mod cerebro_cmd;
pub mod context;
mod dataset_cmd;
mod doctor;
mod eval_cmd;
mod github_cmd;
mod harvest_cmd;
mod image;
mod local_cmd;
mod neuron_cmd;
mod observe;
mod printer;
mod progress;
mod sandbox_cmd;
mod subnet_cmd;
mod tasks_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, LlmSettings, Settings, WalletSettings, env_vars as ev};
use crate::sandbox::{Limits, SandboxError};
use crate::telemetry::{LogFormat, Verbosity, init_logging, resolve_format};

/// agentao: an autonomous software-engineering marketplace on Bittensor (subnet 62).
#[derive(Debug, Parser)]
#[command(name = "agentao", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, Bittensor-style. Their help has its own heading, after each
/// command's own options.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Subnet id.
    #[arg(long, global = true, env = ev::AGENTAO_NETUID, default_value_t = config::DEFAULT_NETUID)]
    pub netuid: u16,
    /// The subnet's mechanism weights are set for (0: the main one).
    #[arg(long, global = true, env = ev::AGENTAO_MECHID, default_value_t = 0)]
    pub mechid: u8,
    /// Chain: local (a metagraph file in the data dir), finney, test, or a subtensor address.
    #[arg(long = "subtensor.network", global = true, env = ev::AGENTAO_SUBTENSOR_NETWORK,
          default_value = "local", value_parser = config::Network::parse)]
    pub subtensor_network: config::Network,
    /// A subtensor node's address (the SDK's flag; `ws://host:9944`, `wss://…`); wins over
    /// --subtensor.network.
    #[arg(long = "subtensor.chain_endpoint", global = true, value_parser = chain_endpoint)]
    pub chain_endpoint: Option<config::Network>,
    /// Wallet name under the wallets directory.
    #[arg(long = "wallet.name", global = true, env = ev::AGENTAO_WALLET_NAME, default_value = "default")]
    pub wallet_name: String,
    /// Hotkey name inside the wallet.
    #[arg(long = "wallet.hotkey", global = true, env = ev::AGENTAO_WALLET_HOTKEY, default_value = "default")]
    pub wallet_hotkey: String,
    /// Wallets directory (default ~/.bittensor/wallets).
    #[arg(long = "wallet.path", global = true, env = ev::AGENTAO_WALLET_PATH)]
    pub wallet_path: Option<PathBuf>,
    /// Debug logs for agentao.
    #[arg(long = "logging.debug", global = true)]
    pub logging_debug: bool,
    /// Trace logs for agentao (more than --logging.debug).
    #[arg(long = "logging.trace", global = true)]
    pub logging_trace: bool,
    /// Log format (default: pretty on a terminal, json otherwise).
    #[arg(long, global = true, env = ev::AGENTAO_LOG_FORMAT, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Model name or alias (gpt4omini, gpt4o, sonnet, local, ...).
    #[arg(long, global = true, env = ev::AGENTAO_MODEL)]
    pub model: Option<String>,
    /// Maximum dollars spent on one task.
    #[arg(long = "instance-cost", global = true, env = ev::AGENTAO_INSTANCE_COST)]
    pub instance_cost: Option<f64>,
    /// API key of an OpenAI-compatible service; unset means the embedded local model.
    #[arg(long, global = true, env = ev::OPENAI_API_KEY, hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Base URL of an OpenAI-compatible service.
    #[arg(long, global = true, env = ev::OPENAI_BASE_URL)]
    pub openai_base_url: Option<String>,
    /// Loopback port of the embedded model server (default 8642).
    #[arg(long, global = true, env = ev::AGENTAO_LLM_PORT)]
    pub llm_port: Option<u16>,
    /// Docker engine socket.
    #[arg(long, global = true, env = ev::DOCKER_HOST)]
    pub docker_host: Option<String>,
    /// Cache directory (rootfs scratch, wheelhouse, sdists).
    #[arg(long, global = true, env = ev::AGENTAO_CACHE_DIR)]
    pub cache_dir: Option<PathBuf>,
    /// Data directory (task store, runs, dataset).
    #[arg(long, global = true, env = ev::AGENTAO_DATA_DIR)]
    pub data_dir: Option<PathBuf>,
    /// Sandbox memory limit in MiB.
    #[arg(long, global = true, env = ev::AGENTAO_SANDBOX_MEMORY_MB)]
    pub sandbox_memory_mb: Option<u64>,
    /// Sandbox CPU limit.
    #[arg(long, global = true, env = ev::AGENTAO_SANDBOX_CPUS)]
    pub sandbox_cpus: Option<f64>,
    /// Sandbox scratch space (`/tmp`, memory-backed) in MiB.
    #[arg(long, global = true, env = ev::AGENTAO_SANDBOX_TMP_MB)]
    pub sandbox_tmp_mb: Option<u64>,
    /// Sandbox process limit.
    #[arg(long, global = true, env = ev::AGENTAO_SANDBOX_PIDS)]
    pub sandbox_pids: Option<i64>,
    /// Sandbox wall-clock limit in seconds.
    #[arg(long, global = true, env = ev::AGENTAO_SANDBOX_WALL_SECS)]
    pub sandbox_wall_secs: Option<u64>,
    /// Sandboxes running at once.
    #[arg(long, global = true, env = ev::AGENTAO_MAX_SANDBOXES)]
    pub max_sandboxes: Option<usize>,
    /// Start every sandbox cold, without the warm pool of started containers.
    #[arg(long, global = true)]
    pub no_pool: bool,
    /// Where sandboxes run: local (this engine), swarm (services on the Docker Swarm this
    /// engine manages) or kubernetes (pods; untested against a live cluster).
    #[arg(long = "sandbox.backend", global = true, env = ev::AGENTAO_SANDBOX_BACKEND)]
    pub sandbox_backend: Option<config::BackendKind>,
    /// Registry the cluster's nodes pull agentao's images from (host:port); each image is
    /// pushed once per content hash.
    #[arg(long, global = true, env = ev::AGENTAO_REGISTRY)]
    pub registry: Option<String>,
    /// Engine address of a swarm node other than the manager, as NODE_ID=ADDR (repeatable):
    /// exec and file copy go to the engine of the node a sandbox landed on.
    #[arg(long = "swarm.node-engine", global = true, value_parser = node_engine)]
    pub swarm_node_engine: Vec<(String, String)>,
    /// Kubernetes API server base URL (default: kubeconfig, or in-cluster).
    #[arg(long = "kube.api-url", global = true, env = ev::AGENTAO_KUBE_API_URL)]
    pub kube_api_url: Option<String>,
    /// Kubernetes namespace of the sandboxes.
    #[arg(long = "kube.namespace", global = true, env = ev::AGENTAO_KUBE_NAMESPACE)]
    pub kube_namespace: Option<String>,
    /// Python package index for host-side downloads.
    #[arg(long, global = true, env = ev::PIP_INDEX_URL)]
    pub pip_index_url: Option<String>,
    /// Debian mirror for debootstrap.
    #[arg(long, global = true, env = ev::AGENTAO_DEBIAN_MIRROR)]
    pub debian_mirror: Option<String>,
    /// Run id labelling this process's containers (random when unset).
    #[arg(long, global = true, env = ev::AGENTAO_RUN_ID)]
    pub run_id: Option<String>,
    /// GitHub REST API base URL (default https://api.github.com).
    #[arg(long = "github.api-url", global = true, env = ev::GITHUB_API_URL)]
    pub github_api_url: Option<String>,
    /// GitHub token for the API (raises the rate limit; needed to open pull requests).
    #[arg(long = "github.token", global = true, env = ev::GITHUB_TOKEN, hide_env_values = true)]
    pub github_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a validator: forge tasks, query miners, score, set weights, record the dataset.
    Validator(neuron_cmd::ValidatorArgs),
    /// Run a miner: answer validators' coding tasks with an SWE agent in a sandbox.
    Miner(neuron_cmd::MinerArgs),
    /// Forge, list, show and export coding tasks.
    #[command(subcommand)]
    Tasks(tasks_cmd::TasksCmd),
    /// Run the SWE agent on a task.
    #[command(subcommand)]
    Agent(agent_cmd::AgentCmd),
    /// The embedded local model.
    #[command(subcommand)]
    Llm(agent_cmd::LlmCmd),
    /// Evaluate predictions (patches) against tasks.
    Eval(eval_cmd::EvalArgs),
    /// Wallets and the local chain.
    #[command(subcommand)]
    Subnet(subnet_cmd::SubnetCmd),
    /// Export and publish the dataset.
    #[command(subcommand)]
    Dataset(dataset_cmd::DatasetCmd),
    /// Run a whole subnet round locally on embedded defaults.
    Local(local_cmd::LocalArgs),
    /// Build, list and clean agentao's Docker images.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Send work back to GitHub (opt-in): propose a winning patch upstream.
    #[command(subcommand)]
    Github(github_cmd::GithubCmd),
    /// Run one command in a fresh sandbox (for checking limits and images by hand).
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Check the machine: Docker, disk, tools, images, LLM endpoint.
    Doctor,
    /// Cerebro: predict whether an agent resolves a task (train, eval, predict).
    #[command(subcommand)]
    Cerebro(cerebro_cmd::CerebroCmd),
    /// Benchmarks that write JSON.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// `--swarm.node-engine NODE_ID=ADDR`.
fn node_engine(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((node, addr)) if !node.trim().is_empty() && !addr.trim().is_empty() => {
            Ok((node.trim().to_owned(), addr.trim().to_owned()))
        }
        _ => Err(format!(
            "{s:?} is not NODE_ID=ADDR (e.g. abc123=tcp://10.0.0.2:2375)"
        )),
    }
}

/// `--subtensor.chain_endpoint`: a node address; `host:port` alone is taken as `ws://`.
fn chain_endpoint(s: &str) -> Result<config::Network, String> {
    let s = s.trim();
    if s.is_empty() || s.contains(char::is_whitespace) {
        return Err(format!(
            "{s:?} is not a node address (ws://host:9944, wss://…)"
        ));
    }
    let url = if s.contains("://") {
        s.to_owned()
    } else if s.contains(':') {
        format!("ws://{s}")
    } else {
        return Err(format!(
            "{s:?} is not a node address: give ws://host:port, wss://…, or host:port"
        ));
    };
    match config::Network::parse(&url)? {
        config::Network::Local => Err(format!("{s:?} is not a node address")),
        n => Ok(n),
    }
}

impl GlobalArgs {
    /// How much agentao logs.
    pub fn verbosity(&self) -> Verbosity {
        if self.logging_trace {
            Verbosity::Trace
        } else if self.logging_debug {
            Verbosity::Debug
        } else {
            Verbosity::Default
        }
    }

    /// Resolves flags (already layered over environment and `.env` by clap) into settings.
    pub fn settings(&self) -> Settings {
        let d = Settings::defaults();
        let limits = Limits {
            memory_mb: self.sandbox_memory_mb.unwrap_or(d.limits.memory_mb),
            cpus: self.sandbox_cpus.unwrap_or(d.limits.cpus),
            pids: self.sandbox_pids.unwrap_or(d.limits.pids),
            wall: self.sandbox_wall_secs.map_or(d.limits.wall, config::secs),
            network: false,
            tmp_mb: self.sandbox_tmp_mb.unwrap_or(d.limits.tmp_mb),
        };
        let model = match (&self.model, &self.openai_api_key) {
            (Some(m), _) => crate::llm::resolve_model(m),
            (None, Some(_)) => crate::llm::resolve_model("gpt4omini"),
            (None, None) => d.llm.model.clone(),
        };
        Settings {
            netuid: self.netuid,
            mechid: self.mechid,
            network: self
                .chain_endpoint
                .clone()
                .unwrap_or_else(|| self.subtensor_network.clone()),
            wallet: WalletSettings {
                name: self.wallet_name.clone(),
                hotkey: self.wallet_hotkey.clone(),
                path: self.wallet_path.clone().unwrap_or(d.wallet.path),
            },
            llm: LlmSettings {
                api_key: self.openai_api_key.clone().filter(|k| !k.is_empty()),
                base_url: self.openai_base_url.clone().filter(|u| !u.is_empty()),
                model,
                instance_cost: self.instance_cost.unwrap_or(d.llm.instance_cost),
                local_port: self.llm_port.unwrap_or(d.llm.local_port),
            },
            docker_host: self.docker_host.clone().filter(|h| !h.is_empty()),
            cache_dir: self.cache_dir.clone().unwrap_or(d.cache_dir),
            data_dir: self.data_dir.clone().unwrap_or(d.data_dir),
            limits,
            max_sandboxes: self.max_sandboxes.unwrap_or(d.max_sandboxes).max(1),
            sandbox_pool: !self.no_pool,
            sandbox_backend: self.sandbox_backend.unwrap_or(d.sandbox_backend),
            registry: self.registry.clone().filter(|r| !r.is_empty()),
            swarm_node_engines: self.swarm_node_engine.clone(),
            kube_api_url: self.kube_api_url.clone().filter(|u| !u.is_empty()),
            kube_namespace: self
                .kube_namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or(d.kube_namespace),
            pip_index_url: self.pip_index_url.clone().filter(|u| !u.is_empty()),
            debian_mirror: self.debian_mirror.clone().unwrap_or(d.debian_mirror),
            github_api_url: self.github_api_url.clone().filter(|u| !u.is_empty()),
            github_token: self.github_token.clone().filter(|t| !t.is_empty()),
            run_id: self
                .run_id
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or(d.run_id),
        }
    }
}

/// The command was interrupted (SIGINT or SIGTERM) before it got going: exit code 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// An error that is the user's to fix: printed with a hint, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // `.env` sits below real environment variables and flags: dotenvy never overrides.
    let _ = dotenvy::dotenv();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let format = resolve_format(cli.global.log_format);
    let verbosity = cli.global.verbosity();
    printer::init(verbosity > Verbosity::Default, format == LogFormat::Json);
    init_logging(format, verbosity, printer::LogWriter, printer::colour());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer::error(format_args!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let settings = cli.global.settings();
    let graceful = matches!(cli.command, Command::Miner(_) | Command::Validator(_));
    let cancel = CancellationToken::new();
    let outcome = runtime.block_on(async {
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                printer::error(format_args!("cannot listen for signals: {e}"));
                return Some(Err(e.into()));
            }
        };
        let stop = async {
            signals.next().await;
            cancel.cancel();
            if graceful {
                printer::status("stopping; a second signal forces it");
                signals.next().await;
            }
        };
        tokio::select! {
            r = run(cli.command, settings, cancel.clone()) => Some(r),
            _ = stop => None,
        }
    });
    // The select dropped the command's future, and with it every sandbox guard it held; a
    // container being created meanwhile is removed by its start task, which is waited for.
    runtime.block_on(crate::sandbox::settle(Duration::from_secs(30)));
    drop(runtime);
    match outcome {
        None => {
            printer::status("interrupted; containers removed");
            ExitCode::from(130)
        }
        Some(Err(e)) if e.chain().any(|c| c.is::<Interrupted>()) => {
            printer::status("interrupted; containers removed");
            ExitCode::from(130)
        }
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => report(&e),
    }
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Prints the error with its causes (each once) and a hint, and picks the exit code.
fn report(e: &anyhow::Error) -> ExitCode {
    let (code, hint) = classify(e);
    printer::error(cause_chain(e));
    if let Some(hint) = hint {
        printer::hint(hint);
    }
    ExitCode::from(code)
}

/// The exit code and hint of an error, from the first cause in its chain that is the user's
/// to fix (2) or the machine's (1): a user error wrapped in another is still the user's.
fn classify(e: &anyhow::Error) -> (u8, Option<String>) {
    for cause in e.chain() {
        if let Some(user) = cause.downcast_ref::<UserError>() {
            return (2, user.hint.clone());
        }
        if let Some(wallet) = cause.downcast_ref::<crate::subnet::WalletError>()
            && wallet.is_users()
        {
            return (2, None);
        }
        if let Some(chain) = cause.downcast_ref::<crate::subnet::ChainError>()
            && chain.is_refusal()
        {
            let hint = matches!(chain, crate::subnet::ChainError::NotRegistered { .. })
                .then(|| REGISTER_HINT.to_owned());
            return (2, hint);
        }
        match cause.downcast_ref::<SandboxError>() {
            Some(SandboxError::ImageMissing(_)) => return (2, None),
            Some(SandboxError::EngineUnavailable { .. }) => {
                return (1, Some(DOCKER_HINT.to_owned()));
            }
            _ => {}
        }
    }
    (1, None)
}

/// The hint for a hotkey that is not registered.
const REGISTER_HINT: &str =
    "register it: `agentao subnet register` on the local chain, btcli on a real network";

/// The hint for an engine that cannot be reached.
const DOCKER_HINT: &str = "is the Docker daemon running? `agentao doctor` checks the set-up";

/// `outer: cause: root`, each cause once: one whose text the message already ends with (an
/// error that prints its source) is not repeated.
fn cause_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(
    command: Command,
    settings: Settings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    match command {
        Command::Image(cmd) => image::run(cmd, &settings).await,
        Command::Github(cmd) => github_cmd::run(cmd, &settings).await,
        Command::Sandbox(args) => sandbox_cmd::run(args, &settings).await,
        Command::Doctor => doctor::run(&settings).await,
        Command::Bench(cmd) => bench::run(cmd, &settings).await,
        Command::Cerebro(cmd) => cerebro_cmd::run(cmd, &settings).await,
        Command::Eval(args) => eval_cmd::run(args, &settings).await,
        Command::Tasks(cmd) => tasks_cmd::run(cmd, &settings).await,
        Command::Agent(cmd) => agent_cmd::run_agent(cmd, &settings).await,
        Command::Llm(cmd) => agent_cmd::run_llm(cmd, &settings).await,
        Command::Dataset(cmd) => dataset_cmd::run(cmd, &settings).await,
        Command::Local(args) => local_cmd::run(args, &settings).await,
        Command::Subnet(cmd) => subnet_cmd::run(cmd, &settings).await,
        Command::Validator(args) => neuron_cmd::validator(args, &settings, cancel).await,
        Command::Miner(args) => neuron_cmd::miner(args, &settings, cancel).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neurons::local::RoundError;
    use crate::subnet::ChainError;

    #[test]
    fn a_user_error_wrapped_in_another_is_still_the_users() {
        let e = anyhow::Error::from(UserError::new("bad flag").hint("try --help"))
            .context("running the command");
        assert_eq!(classify(&e), (2, Some("try --help".to_owned())));
        let refusal = ChainError::NotRegistered {
            hotkey: "5F".into(),
            netuid: 62,
        };
        let e = anyhow::Error::from(RoundError::from(refusal));
        assert_eq!(classify(&e).0, 2);
        assert_eq!(
            cause_chain(&e),
            "local chain: hotkey 5F is not registered on netuid 62"
        );
        let missing = SandboxError::ImageMissing("agentao/x:1".into());
        assert_eq!(classify(&anyhow::Error::from(missing).context("x")).0, 2);
        let e = anyhow::anyhow!("plain");
        assert_eq!(classify(&e), (1, None));
    }

    #[test]
    fn the_sdks_flags_parse() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "agentao",
            "--subtensor.chain_endpoint",
            "127.0.0.1:9944",
            "--logging.trace",
            "doctor",
        ])
        .unwrap();
        assert_eq!(
            cli.global.settings().network,
            config::Network::Subtensor("ws://127.0.0.1:9944".into())
        );
        assert_eq!(cli.global.verbosity(), Verbosity::Trace);
        assert!(chain_endpoint("local").is_err());
        assert!(chain_endpoint("wss://node.example:443").is_ok());
    }

    #[test]
    fn no_cause_is_printed_twice() {
        let io = std::io::Error::other("disk on fire");
        let e = anyhow::Error::from(crate::python::PypiError::Io {
            context: "/x".into(),
            source: io,
        })
        .context("forging");
        assert_eq!(cause_chain(&e), "forging: /x: disk on fire");
    }
}
