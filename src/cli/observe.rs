//! What lets an operator see a neuron: the opt-in PostHog telemetry (started from
//! `POSTHOG_API_KEY`/`POSTHOG_HOST`, installed process-wide, distinct id = the hotkey) and the
//! validator's dashboard (`--http.port`, loopback unless `--http.ip` says otherwise).

use std::net::SocketAddr;

use clap::Args;

use super::{UserError, printer};
use crate::config::{Settings, env_vars};
use crate::dashboard::{Dashboard, Sources};
use crate::telemetry::{Event, Telemetry, TelemetryConfig};

/// The dashboard's flags.
#[derive(Debug, Args, Clone)]
pub struct HttpArgs {
    /// Serve the read-only dashboard on this port (off by default).
    #[arg(long = "http.port")]
    pub port: Option<u16>,
    /// Address the dashboard listens on (loopback unless told otherwise).
    #[arg(long = "http.ip", default_value = "127.0.0.1")]
    pub ip: std::net::IpAddr,
}

/// Starts telemetry when `POSTHOG_API_KEY` is set (else it stays off) and installs it for the
/// process, with `hotkey` as the distinct id.
pub async fn telemetry(hotkey: &str) -> Telemetry {
    let key = std::env::var(env_vars::POSTHOG_API_KEY).unwrap_or_default();
    let t = Telemetry::start(TelemetryConfig {
        api_key: key,
        host: std::env::var(env_vars::POSTHOG_HOST).ok(),
        distinct_id: hotkey.to_owned(),
    })
    .await;
    crate::telemetry::posthog::install(t.clone());
    t
}

/// Counts a failure of `kind` (a fixed name, never the error's text).
pub fn error(kind: &str) {
    crate::telemetry::capture(Event::Error { kind: kind.into() });
}

/// Serves the dashboard over `settings`' data directory on `addr` in the background; returns
/// its URL.
pub async fn serve_dashboard(addr: SocketAddr, settings: &Settings) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| UserError::new(format!("cannot serve the dashboard on {addr}: {e}")))?;
    let url = format!("http://{}/", listener.local_addr()?);
    let paths = settings.paths();
    let dashboard = Dashboard::new(Sources {
        records: super::context::records_path(settings),
        scores: paths.scores(),
    });
    tokio::spawn(async move {
        if let Err(e) = crate::dashboard::serve(listener, dashboard, std::future::pending()).await {
            tracing::warn!(error = %e, "dashboard stopped");
        }
    });
    printer::status(format_args!("dashboard: {url}"));
    Ok(url)
}

impl HttpArgs {
    /// Starts the dashboard when `--http.port` is given.
    pub async fn start(&self, settings: &Settings) -> anyhow::Result<Option<String>> {
        match self.port {
            Some(port) => Ok(Some(
                serve_dashboard(SocketAddr::new(self.ip, port), settings).await?,
            )),
            None => Ok(None),
        }
    }
}

/// The end of a neuron's run: sends the telemetry that is left (and logs what was dropped),
/// then, with a dashboard, keeps serving it until Ctrl-C.
pub async fn finish(
    dashboard: Option<&str>,
    telemetry: &Telemetry,
    cancel: &tokio_util::sync::CancellationToken,
) {
    telemetry.shutdown().await;
    if let Some(url) = dashboard
        && !cancel.is_cancelled()
    {
        printer::status(format_args!(
            "rounds done; the dashboard stays at {url} until Ctrl-C"
        ));
        cancel.cancelled().await;
    }
}
