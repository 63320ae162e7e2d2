//! `agentao eval`: evaluate SWE-bench-style predictions against tasks in a resumable run dir.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::UserError;
use super::context;
use super::printer;
use crate::config::Settings;
use crate::eval::{EvalConfig, check_inputs, read_predictions, run_batch};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Tasks, JSON Lines (agentao's export or SWE-bench rows with an `image`).
    #[arg(long)]
    pub tasks: PathBuf,
    /// Predictions: instance_id, model_name_or_path, model_patch (JSON Lines, a JSON array, or
    /// SWE-agent's preds.json: an object of predictions by instance id).
    #[arg(long)]
    pub predictions: PathBuf,
    /// Evaluations at once (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Run directory; an interrupted run continues where it stopped (default: data dir/runs/<name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Seconds the tests of one instance may run.
    #[arg(long, default_value_t = 300)]
    pub test_timeout: u64,
    /// Largest patch accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_patch_bytes: usize,
}

pub async fn run(args: EvalArgs, settings: &Settings) -> anyhow::Result<()> {
    let tasks = crate::tasks::read_jsonl(&args.tasks).map_err(|e| {
        UserError::new(e.to_string()).hint("--tasks takes a JSON Lines file of tasks")
    })?;
    let predictions = read_predictions(&args.predictions).map_err(|e| {
        if e.is_bad_content() {
            return UserError::new(e.to_string());
        }
        UserError::new(e.to_string())
            .hint("--predictions takes rows of instance_id, model_name_or_path, model_patch")
    })?;
    // Refused before the engine is asked: a missing task or image is the input's fault.
    check_inputs(&tasks, &predictions).map_err(|e| {
        let user = UserError::new(e.to_string());
        match e {
            crate::eval::RunError::NoImage(_) => user.hint(
                "agentao's task exports carry an image; a SWE-bench row needs its environment built into one first",
            ),
            _ => user,
        }
    })?;
    let run_dir = args.run_dir.unwrap_or_else(|| {
        let stem = args
            .predictions
            .file_stem()
            .map_or_else(|| "run".to_owned(), |s| s.to_string_lossy().into_owned());
        settings.paths().run_dir(&stem)
    });
    let engine = context::engine(settings).await?;
    let cfg = EvalConfig {
        max_patch_bytes: args.max_patch_bytes,
        test_timeout: Duration::from_secs(args.test_timeout),
        limits: settings.limits.clone(),
        run_id: settings.run_id.clone(),
        p2p: crate::eval::P2pSelection::FollowPatch,
    };
    let workers = args.workers.unwrap_or(settings.max_sandboxes);
    let bar = super::progress::counter(predictions.len() as u64, "evaluating");
    let report = run_batch(&engine, &tasks, &predictions, &run_dir, workers, &cfg, |v, cached| {
        bar.inc(1);
        tracing::info!(instance = %v.instance_id, resolved = v.resolved, cached, outcome = ?v.outcome, "verdict");
    })
    .await
    .map_err(|e| {
        if e.is_bad_content() {
            anyhow::Error::from(UserError::new(e.to_string()))
        } else {
            e.into()
        }
    })?;
    bar.finish_and_clear();
    printer::status(format_args!(
        "{} resolved, {} unresolved, {} empty, {} errors of {} ({} evaluated now); report: {}",
        report.resolved_instances,
        report.unresolved_instances,
        report.empty_patch_instances,
        report.error_instances,
        report.submitted_instances,
        report.evaluated_now,
        run_dir.join("report.json").display()
    ));
    printer::data(serde_json::to_string_pretty(&report)?);
    Ok(())
}
