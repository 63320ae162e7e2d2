//! `agentao tasks …`: forge tasks from PyPI packages, list, show and export the store, and add
//! hand-made tasks.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::UserError;
use super::context::{self, StoreArg, forge_config};
use super::printer;
use crate::config::Settings;
use crate::forge::{EnvSpec, Forge, ForgeConfig, Selection, build_env_image};
use crate::python::top_packages;
use crate::tasks::{Task, TaskStore, swebench_row};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SelectionArg {
    Coverage,
    WholeSuite,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// SWE-bench's instance fields (F2P/P2P as JSON strings) plus agentao's.
    Swebench,
}

/// Options of `tasks forge`.
#[derive(Debug, Args)]
pub struct ForgeArgs {
    /// Packages to forge from, walking the shipped top-packages ranking.
    #[arg(long, default_value_t = 8)]
    pub packages: usize,
    /// Tasks per package.
    #[arg(long, default_value_t = 5)]
    pub per_package: usize,
    /// Forge these packages (`name` or `name==version`) instead of walking the ranking.
    #[arg(long = "package")]
    pub package: Vec<String>,
    /// Skip the first N packages of the ranking.
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Candidates tried per package (default: 8 per wanted task).
    #[arg(long)]
    pub max_candidates: Option<usize>,
    /// Seconds one baseline run of a suite may take.
    #[arg(long, default_value_t = 300)]
    pub suite_timeout: u64,
    /// Seconds the selected tests may take per candidate.
    #[arg(long, default_value_t = 90)]
    pub candidate_timeout: u64,
    #[arg(long, value_enum, default_value_t = SelectionArg::Coverage)]
    pub selection: SelectionArg,
    /// Candidates validated at once (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Only candidates whose `file:function` contains this text (e.g. `idna/codec.py:Codec.`).
    #[arg(long)]
    pub focus: Option<String>,
    #[command(flatten)]
    pub store: StoreArg,
}

/// `name` or `name==version`.
pub fn parse_package_spec(spec: &str) -> (String, Option<String>) {
    match spec.split_once("==") {
        Some((n, v)) => (n.trim().to_owned(), Some(v.trim().to_owned())),
        None => (spec.trim().to_owned(), None),
    }
}

/// The shipped ranking as a forge queue, from the `skip`-th package on.
pub fn ranking_queue(skip: usize) -> Vec<(String, Option<String>)> {
    top_packages()
        .into_iter()
        .skip(skip)
        .map(|p| (p.name, None))
        .collect()
}

/// The forge's defaults with this machine's settings: limits, run id, index, parallelism.
impl ForgeArgs {
    pub fn config(&self, settings: &Settings) -> ForgeConfig {
        let mut cfg = forge_config(settings);
        cfg.per_package = self.per_package.max(1);
        cfg.max_candidates = self.max_candidates.unwrap_or(cfg.per_package * 8);
        cfg.suite_timeout = std::time::Duration::from_secs(self.suite_timeout);
        cfg.candidate_timeout = std::time::Duration::from_secs(self.candidate_timeout);
        cfg.selection = match self.selection {
            SelectionArg::Coverage => Selection::Coverage,
            SelectionArg::WholeSuite => Selection::WholeSuite,
        };
        if let Some(w) = self.workers {
            cfg.workers = w.max(1);
        }
        cfg.focus = self.focus.clone();
        // A configured model (not the tiny embedded one) rewrites problem statements.
        cfg.issue_writer = context::remote_llm(settings);
        cfg
    }

    /// The (name, version) pairs to try, in order.
    pub fn queue(&self) -> Vec<(String, Option<String>)> {
        if !self.package.is_empty() {
            return self.package.iter().map(|p| parse_package_spec(p)).collect();
        }
        ranking_queue(self.skip)
    }
}

#[derive(Debug, Subcommand)]
pub enum TasksCmd {
    /// Forge validated tasks from top PyPI packages into the task store.
    Forge(ForgeArgs),
    /// Harvest validated tasks from closed GitHub issues and their merged fixes.
    Harvest(super::harvest_cmd::HarvestArgs),
    /// List the stored tasks.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one stored task as JSON.
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Export stored tasks as JSON Lines.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Swebench)]
        format: ExportFormat,
        /// Output file (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
        /// Only tasks of this package.
        #[arg(long)]
        package: Option<String>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Rebuild missing environment images of stored tasks (after `image gc` or a recipe
    /// change) and point the tasks at them.
    Prepare {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Print the forge's log: every package tried and why any was skipped.
    Log {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Build the environment image of a hand-made task and append the task to a JSONL file.
    Add {
        /// Source tree of the package (becomes /repo, one commit).
        #[arg(long)]
        source: PathBuf,
        /// Task JSON (SWE-bench fields plus bug_patch); its `image` is filled in.
        #[arg(long)]
        task: PathBuf,
        /// JSON Lines file to append to.
        #[arg(long)]
        out: PathBuf,
        /// Directory of wheels (test dependencies) to install into the image.
        #[arg(long)]
        wheels: Option<PathBuf>,
    },
}

pub async fn run(cmd: TasksCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        TasksCmd::Forge(args) => forge(&args, settings).await,
        TasksCmd::Harvest(args) => super::harvest_cmd::run(&args, settings).await,
        TasksCmd::List { store, json } => {
            let store = store.open(settings)?;
            let rows = store.list()?;
            for r in &rows {
                if json {
                    printer::data(serde_json::to_string(r)?);
                } else {
                    printer::data(format_args!(
                        "{:<40} {:<22} {:<10} {:<22} {}",
                        r.instance_id, r.package, r.pypi_version, r.mutation_kind, r.created_at
                    ));
                }
            }
            if !json {
                printer::status(format_args!("{} tasks", rows.len()));
            }
            Ok(())
        }
        TasksCmd::Show { id, store } => {
            let store = store.open(settings)?;
            let task = store
                .get(&id)?
                .ok_or_else(|| UserError::new(format!("unknown task {id}")))?;
            printer::data(serde_json::to_string_pretty(&task)?);
            Ok(())
        }
        TasksCmd::Export {
            format: ExportFormat::Swebench,
            out,
            package,
            store,
        } => {
            let store = store.open(settings)?;
            let tasks = store.all(package.as_deref())?;
            export_swebench(&tasks, &out)?;
            printer::status(format_args!(
                "{} tasks exported to {}",
                tasks.len(),
                out.display()
            ));
            Ok(())
        }
        TasksCmd::Prepare { store } => {
            let engine = context::engine(settings).await?;
            let path = store.path(settings);
            let store = TaskStore::open(&path)?;
            let forge = Forge::new(&engine, forge_config(settings))?;
            for (package, version, image, updated) in forge.prepare_store(&store).await? {
                printer::data(
                    serde_json::json!({"package": package, "version": version, "image": image, "tasks_updated": updated}),
                );
            }
            Ok(())
        }
        TasksCmd::Log { store } => {
            let store = store.open(settings)?;
            for e in store.forge_log()? {
                printer::data(serde_json::to_string(&e)?);
            }
            Ok(())
        }
        TasksCmd::Add {
            source,
            task,
            out,
            wheels,
        } => {
            let text = std::fs::read_to_string(&task)
                .map_err(|e| UserError::new(format!("{}: {e}", task.display())))?;
            let mut t: Task = serde_json::from_str(&text)
                .map_err(|e| UserError::new(format!("{}: not a task: {e}", task.display())))?;
            if !source.is_dir() {
                return Err(
                    UserError::new(format!("{} is not a directory", source.display())).into(),
                );
            }
            let engine = context::engine(settings).await?;
            let package = if t.package.is_empty() {
                t.instance_id.clone()
            } else {
                t.package.clone()
            };
            let name = format!("agentao/env-{}", sanitize(&package));
            let version = if t.pypi_version.is_empty() {
                "0".to_owned()
            } else {
                sanitize(&t.pypi_version)
            };
            t.image = build_env_image(
                &engine,
                &EnvSpec {
                    name: &name,
                    version: &version,
                    source_dir: &source,
                    wheels_dir: wheels.as_deref(),
                },
            )
            .await?;
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)?;
            writeln!(file, "{}", serde_json::to_string(&t)?)?;
            printer::status(format_args!(
                "{} → {} ({})",
                t.instance_id,
                out.display(),
                t.image
            ));
            Ok(())
        }
    }
}

/// Writes tasks as SWE-bench JSON Lines, atomically when writing a file.
pub fn export_swebench(tasks: &[Task], out: &Path) -> anyhow::Result<()> {
    let mut text = String::new();
    for t in tasks {
        text.push_str(&serde_json::to_string(&swebench_row(t))?);
        text.push('\n');
    }
    if out == Path::new("-") {
        printer::data_raw(text.as_bytes());
        return Ok(());
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

async fn forge(args: &ForgeArgs, settings: &Settings) -> anyhow::Result<()> {
    let engine = context::engine(settings).await?;
    let base = crate::sandbox::base_image_tag().reference;
    if !engine.image_exists(&base).await? {
        return Err(crate::sandbox::SandboxError::ImageMissing(base).into());
    }
    let store = args.store.open(settings)?;
    let forge = Forge::new(&engine, args.config(settings))?;
    let want = if args.package.is_empty() {
        args.packages
    } else {
        args.package.len()
    };
    let bar = super::progress::counter(want as u64, "packages with tasks");
    let mut productive = 0usize;
    let mut total = 0usize;
    let (mut weak, mut reached) = (0usize, 0usize);
    for (name, version) in args.queue() {
        if productive >= want {
            break;
        }
        bar.set_message(format!("forging {name}"));
        let report = forge
            .forge_package(&name, version.as_deref(), Some(&store))
            .await?;
        match &report.skipped {
            Some(reason) => tracing::warn!(
                package = %report.package,
                version = %report.version,
                "skipped: {reason}"
            ),
            None => {
                productive += 1;
                total += report.validated;
                bar.inc(1);
                tracing::info!(
                    package = %report.package,
                    version = %report.version,
                    tasks = report.validated,
                    tried = report.candidates_tried,
                    seconds = report.wall_seconds as u64,
                    "package done"
                );
            }
        }
        let w = report
            .rejected
            .get(&crate::forge::Rejection::WeakTests)
            .copied()
            .unwrap_or(0);
        weak += w;
        if report.weak_tests_share > 0.0 {
            reached += (w as f64 / report.weak_tests_share).round() as usize;
        } else {
            reached += report.validated;
        }
        printer::data(serde_json::to_string(&report)?);
    }
    bar.finish_and_clear();
    printer::status(format_args!(
        "{total} tasks from {productive} packages in {}; {weak} candidates rejected for weak tests ({:.0}% of those that broke tests cleanly)",
        args.store.path(settings).display(),
        if reached > 0 {
            100.0 * weak as f64 / reached as f64
        } else {
            0.0
        }
    ));
    if productive < want {
        printer::status(format_args!(
            "(wanted {want} packages; the list ran out or packages were skipped: `agentao tasks log`)"
        ));
    }
    Ok(())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}
