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

/// Installs the global tracing subscriber writing through `writer` (the CLI's, which keeps
/// progress bars out of the way) to stderr. `debug` raises agentao's level; `RUST_LOG`
/// overrides everything. `colour` allows ANSI colours in the pretty format.
pub fn init_logging<W>(format: Option<LogFormat>, debug: bool, writer: W, colour: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let default = if debug {
        "agentao=debug,info"
    } else {
        "agentao=info,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
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
