//! `agentao cerebro train|eval|predict`: Cerebro's model from the command line. The data
//! defaults to the copy compiled into the binary (`data/cerebro/`); the model to
//! `<data dir>/cerebro/model.json`, or the shipped model when that file is absent.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};

use super::UserError;
use super::printer;
use crate::cerebro::{self, CerebroError, Dataset, EvalConfig, EvalReport, TrainConfig};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum CerebroCmd {
    /// Train the model on agents' outcomes and save it.
    Train(TrainArgs),
    /// Cross-validate by task: AUROC, Brier and calibration of each head and of the
    /// agent-ability-only baseline, fitted in the same run.
    Eval(EvalArgs),
    /// Forecast tasks: one JSON line per (task, agent) with p_resolve and difficulty.
    Predict(PredictArgs),
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Training data: a directory with tasks.jsonl and responses.csv (plain or .gz). Default:
    /// the copy shipped in the binary (393 SWE-bench Verified tasks × 134 agents).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also train on agentao's own dataset records (JSON Lines, e.g.
    /// <data dir>/dataset/records.jsonl): each miner an agent, each verdict an outcome.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Add hashed word n-grams of the statement, patch and tests to the features (larger
    /// model; no better in cross-validation on the shipped data).
    #[arg(long)]
    pub tokens: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Where the model goes (default: <data dir>/cerebro/model.json).
    #[arg(long, value_name = "MODEL")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Folds (tasks are dealt into folds; all of a task's outcomes are held out together).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Seed of the deal.
    #[arg(long, default_value_t = 23)]
    pub seed: u64,
    /// Print the whole report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model file (default: <data dir>/cerebro/model.json, else the shipped model). Not
    /// `--model`: that global flag names the LLM.
    #[arg(long = "model-file", value_name = "MODEL")]
    pub model_file: Option<PathBuf>,
    /// Tasks, JSON Lines in the shape of tasks.jsonl (instance_id, repo, problem_statement,
    /// and patch/test_patch when known).
    #[arg(long)]
    pub tasks: PathBuf,
    /// Agents to forecast for (repeatable; default: every agent the model knows).
    #[arg(long)]
    pub agent: Vec<String>,
}

pub async fn run(cmd: CerebroCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        CerebroCmd::Train(args) => train(args, settings),
        CerebroCmd::Eval(args) => eval(args),
        CerebroCmd::Predict(args) => predict(args, settings),
    }
}

fn dataset(args: &DataArgs) -> anyhow::Result<Dataset> {
    let mut data = match &args.data {
        None => Dataset::shipped()?,
        Some(dir) => Dataset::load(dir).map_err(|e| {
            let hint = "--data takes a directory with tasks.jsonl and responses.csv \
                        (plain or .gz); without it the shipped copy is used";
            UserError::new(e.to_string()).hint(hint)
        })?,
    };
    if let Some(path) = &args.records {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UserError::new(format!("{}: {e}", path.display())))?;
        let added = data
            .add_records(&path.display().to_string(), &text)
            .map_err(|e| UserError::new(e.to_string()))?;
        printer::status(format_args!(
            "{added} outcomes added from {}",
            path.display()
        ));
    }
    Ok(data)
}

fn config(args: &DataArgs) -> TrainConfig {
    TrainConfig {
        tokens: args.tokens,
        ..TrainConfig::default()
    }
}

fn train(args: TrainArgs, settings: &Settings) -> anyhow::Result<()> {
    let data = dataset(&args.data)?;
    let out = args.out.unwrap_or_else(|| settings.paths().cerebro_model());
    let started = Instant::now();
    let model = cerebro::train(&data, &config(&args.data));
    let seconds = started.elapsed().as_secs_f64();
    model.save(&out)?;
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    printer::status(format_args!(
        "trained on {} tasks and {} outcomes of {} agents in {seconds:.1} s; model: {} ({bytes} bytes)",
        data.tasks.len(),
        data.responses.len(),
        data.agents.len(),
        out.display()
    ));
    printer::data(serde_json::json!({
        "model": out,
        "bytes": bytes,
        "seconds": seconds,
        "tasks": data.tasks.len(),
        "responses": data.responses.len(),
        "agents": data.agents.len(),
    }));
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    if args.folds < 2 {
        return Err(UserError::new("--folds must be 2 or more").into());
    }
    let data = dataset(&args.data)?;
    let cfg = EvalConfig {
        folds: args.folds,
        seed: args.seed,
        train: config(&args.data),
        ..EvalConfig::default()
    };
    let report = cerebro::cross_validate(&data, &cfg);
    if args.json {
        printer::data(serde_json::to_string_pretty(&report)?);
    } else {
        printer::data(table(&report));
    }
    Ok(())
}

/// The report as text: the heads, their calibration, the effort heads, the new agents.
fn table(r: &EvalReport) -> String {
    let mut out = format!(
        "{} tasks, {} agents, {} outcomes ({}); {} folds by task, seed {}; {:.1} s\n\n",
        r.tasks, r.agents, r.responses, r.source, r.folds, r.seed, r.seconds
    );
    out += &format!(
        "{:<34} {:>7} {:>7} {:>8}  AUROC per fold\n",
        "head", "AUROC", "Brier", "log loss"
    );
    for h in &r.heads {
        let folds: Vec<String> = h.auroc_per_fold.iter().map(|a| format!("{a:.3}")).collect();
        out += &format!(
            "{:<34} {:>7.4} {:>7.4} {:>8.4}  {}\n",
            h.name,
            h.auroc,
            h.brier,
            h.log_loss,
            folds.join(" ")
        );
    }
    for h in &r.heads {
        out += &format!(
            "\ncalibration, {}\n  forecast    n  mean  observed\n",
            h.name
        );
        for b in &h.calibration {
            out += &format!(
                "  {:.1}-{:.1} {:>6} {:.3}  {:.3}\n",
                b.lo, b.hi, b.count, b.mean_forecast, b.observed
            );
        }
    }
    out += "\neffort (human time-to-fix bucket of SWE-bench Verified)\n";
    for e in &r.effort {
        out += &format!(
            "  {:?}: bucket accuracy {:.3} (majority {:.3}), Spearman {:.3}, MAE ln(minutes) {:.3} (mean {:.3}), {} tasks\n",
            e.view,
            e.bucket_accuracy,
            e.majority_accuracy,
            e.spearman,
            e.mae_log_minutes,
            e.mae_log_minutes_mean_baseline,
            e.tasks
        );
    }
    let n = &r.new_agents;
    out += &format!(
        "\nnew agents ({} held out of training, ability learnt online; fix head, fold 0's tasks)\n",
        n.agents
    );
    for (k, auroc, brier) in &n.by_outcomes_seen {
        out += &format!("  after {k:>3} outcomes: AUROC {auroc:.4}, Brier {brier:.4}\n");
    }
    out += &format!(
        "  fitted in training:  AUROC {:.4}, Brier {:.4}\n",
        n.fitted_auroc, n.fitted_brier
    );
    out
}

fn predict(args: PredictArgs, settings: &Settings) -> anyhow::Result<()> {
    let model = match &args.model_file {
        Some(path) => std::sync::Arc::new(cerebro::Model::load(path).map_err(|e| {
            UserError::new(e.to_string()).hint("`agentao cerebro train --out FILE` writes one")
        })?),
        None => cerebro::model_or_shipped(&settings.paths().cerebro_model())?,
    };
    let tasks = read_tasks(&args.tasks)?;
    let rows =
        cerebro::predict(&model, &tasks, &args.agent).map_err(|e| UserError::new(e.to_string()))?;
    let mut out = String::with_capacity(rows.len() * 120);
    for row in &rows {
        out += &serde_json::to_string(row)?;
        out.push('\n');
    }
    printer::data_raw(out.as_bytes());
    printer::status(format_args!(
        "{} tasks × {} agents = {} rows",
        tasks.len(),
        rows.len() / tasks.len().max(1),
        rows.len()
    ));
    Ok(())
}

/// The tasks of a JSON Lines file; a malformed row is a one-line error naming its line.
fn read_tasks(path: &Path) -> anyhow::Result<Vec<cerebro::TaskFacts>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::new(format!("{}: {e}", path.display())).hint("--tasks takes a JSON Lines file")
    })?;
    cerebro::data::parse_tasks(&path.display().to_string(), &text).map_err(|e| match e {
        CerebroError::Line { .. } => UserError::new(e.to_string())
            .hint("each line is one task: {\"instance_id\": ..., \"problem_statement\": ...}")
            .into(),
        e => e.into(),
    })
}
