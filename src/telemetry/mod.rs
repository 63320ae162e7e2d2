//! Logs and (opt-in) telemetry: the tracing subscriber, pretty on a terminal and JSON
//! otherwise or on request. Nothing here is sent anywhere unless a PostHog key is set.

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

/// Installs the global tracing subscriber writing to stderr. `debug` raises agentao's level;
/// `RUST_LOG` overrides everything.
pub fn init_logging(format: Option<LogFormat>, debug: bool) {
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
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_target(false)
            .compact()
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}
