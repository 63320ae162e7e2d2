//! The validator's dashboard: one read-only HTML page rendered on the server (axum, inline
//! SVG, no script) from the data directory's records and moving averages, and each answer's
//! patch and test statuses as plain text by sequence number.
//!
//! **It reads two files and nothing else:** `dataset/records.jsonl` and `validator/scores.json`
//! (named by [`Sources`]). No route takes a path: an answer is addressed by its number, so
//! `../../wallets` or any other path is a 404. Nothing from the wallets is read. Every string
//! a miner sent (model, agent, patch) is escaped on the page; patches and test logs are served
//! as `text/plain` with `nosniff`.

pub mod html;
pub mod model;

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

pub use model::Sources;
use model::{Answers, build, find_record, load_averages, miners_patch};

/// The page's state: where to read and what was read so far.
pub struct Dashboard {
    sources: Sources,
    answers: Mutex<Answers>,
}

impl Dashboard {
    pub fn new(sources: Sources) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            sources,
            answers: Mutex::new(Answers::default()),
        })
    }

    /// Reads the records appended since the last read.
    pub fn refresh(&self) -> std::io::Result<()> {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.refresh(&self.sources.records)
    }

    /// The page as it is now (reads the records appended since the last render).
    pub fn render(&self) -> std::io::Result<String> {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.refresh(&self.sources.records)?;
        let averages = load_averages(&self.sources.scores);
        let view = build(&answers.all, &averages);
        Ok(html::page(&view, &answers.all))
    }
}

/// The routes: `/`, `/answers/{seq}/patch`, `/answers/{seq}/tests`; anything else is a 404.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/answers/{seq}/{what}", get(answer_file))
        .fallback(|| async { not_found() })
        .with_state(dashboard)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dashboard: Arc<Dashboard>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Read the records once now, so the first visitor does not wait for it; later loads
    // read only what was appended.
    let warm = dashboard.clone();
    tokio::task::spawn_blocking(move || warm.refresh());
    axum::serve(listener, router(dashboard))
        .with_graceful_shutdown(shutdown)
        .await
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn index(State(d): State<Arc<Dashboard>>) -> Response {
    match tokio::task::spawn_blocking(move || d.render()).await {
        Ok(Ok(page)) => Html(page).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "dashboard: records unreadable");
            (StatusCode::INTERNAL_SERVER_ERROR, "records unreadable\n").into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "render failed\n").into_response(),
    }
}

async fn answer_file(
    State(d): State<Arc<Dashboard>>,
    Path((seq, what)): Path<(String, String)>,
) -> Response {
    let Ok(seq) = seq.parse::<u64>() else {
        return not_found();
    };
    let field = match what.as_str() {
        "patch" => "patch",
        "tests" => "tests",
        _ => return not_found(),
    };
    let path = d.sources.records.clone();
    let record = tokio::task::spawn_blocking(move || find_record(&path, seq))
        .await
        .ok()
        .flatten();
    let Some(record) = record else {
        return not_found();
    };
    let text = |k: &str| record.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let body = if field == "patch" {
        miners_patch(&record).to_owned()
    } else {
        let tests: serde_json::Value =
            serde_json::from_str(text("tests_status")).unwrap_or_default();
        let mut out = format!(
            "outcome: {}\nreason: {}\n\n",
            text("outcome"),
            text("outcome_reason")
        );
        if let serde_json::Value::Object(m) = tests {
            for (test, status) in m {
                out.push_str(&format!("{} {test}\n", status.as_str().unwrap_or("?")));
            }
        }
        out
    };
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
