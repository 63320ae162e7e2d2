//! Logs and (opt-in) telemetry: the tracing subscriber, pretty on a terminal and JSON
//! otherwise or on request, and PostHog events ([`posthog`]). Nothing is sent anywhere unless
//! a PostHog key is set. Logs go through the writer the CLI hands it (its printer's, which
//! suspends progress bars); imports nothing of agentao.

pub mod posthog;

pub use posthog::{Event, Telemetry, TelemetryConfig, capture};

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Output format of logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// How much agentao logs (`--logging.debug`, `--logging.trace`, as the SDK's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Default,
    Debug,
    Trace,
}

/// The format logs take: the one asked for, else pretty on a terminal and JSON otherwise.
pub fn resolve_format(format: Option<LogFormat>) -> LogFormat {
    format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    })
}

/// Installs the global tracing subscriber writing through `writer` (the CLI's, which keeps
/// progress bars out of the way) to stderr. `verbosity` raises agentao's level; `RUST_LOG`
/// overrides everything. `colour` allows ANSI colours in the pretty format.
pub fn init_logging<W>(format: LogFormat, verbosity: Verbosity, writer: W, colour: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let default = match verbosity {
        Verbosity::Default => "agentao=info,warn",
        Verbosity::Debug => "agentao=debug,info",
        Verbosity::Trace => "agentao=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Pretty => builder
            .with_ansi(colour)
            .with_target(false)
            .compact()
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}
