//! `agentao tasks harvest`: tasks from closed GitHub issues of top PyPI packages (or, with
//! `--open`, from open issues, each with a checklist the model writes for the judge), with a
//! progress bar and a log record for every candidate skipped.

use std::time::Duration;

use clap::Args;

use super::context::{StoreArg, forge_config};
use super::printer;
use crate::config::Settings;
use crate::github::refs::StatementBounds;
use crate::github::{GithubClient, GithubConfig, HarvestConfig, harvest, harvest_open};

/// Options of `tasks harvest`.
#[derive(Debug, Args)]
pub struct HarvestArgs {
    /// Packages to harvest from, walking the shipped top-packages ranking.
    #[arg(long, default_value_t = 8)]
    pub packages: usize,
    /// Harvest these packages instead of walking the ranking.
    #[arg(long = "package")]
    pub package: Vec<String>,
    /// Tasks wanted per repository.
    #[arg(long, default_value_t = 3)]
    pub per_repo: usize,
    /// Only pull requests merged on or after this date (YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// Most pages of a repository's issue listing read (100 items a page).
    #[arg(long, default_value_t = 30)]
    pub max_pages: usize,
    /// Seconds a candidate's tests may take.
    #[arg(long, default_value_t = 300)]
    pub test_timeout: u64,
    /// Comments of the issue that join its statement.
    #[arg(long, default_value_t = 3)]
    pub comments: usize,
    /// Open issues instead of closed ones: no gold patch; tasks graded on PASS_TO_PASS (the
    /// suite green at HEAD) and by the judge against a checklist the model writes from the
    /// issue (exposure none: the kind sent to remote miners on a real chain).
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub store: StoreArg,
}

pub async fn run(args: &HarvestArgs, settings: &Settings) -> anyhow::Result<()> {
    if let Some(since) = &args.since
        && chrono::NaiveDate::parse_from_str(since, "%Y-%m-%d").is_err()
    {
        return Err(
            super::UserError::new(format!("--since {since}: not a date"))
                .hint("write it as YYYY-MM-DD")
                .into(),
        );
    }
    let engine = super::context::engine(settings).await?;
    let base = crate::sandbox::base_image_tag().reference;
    if !engine.image_exists(&base).await? {
        return Err(crate::sandbox::SandboxError::ImageMissing(base).into());
    }
    let store = args.store.open(settings)?;
    let client = GithubClient::new(GithubConfig::new(
        settings.github_api_url.as_deref(),
        settings.github_token.as_deref(),
        &settings.cache_dir,
    ))?;
    let packages: Vec<String> = if args.package.is_empty() {
        crate::python::top_packages()
            .into_iter()
            .take(args.packages)
            .map(|p| p.name)
            .collect()
    } else {
        args.package.clone()
    };
    let mut forge = forge_config(settings);
    forge.candidate_timeout = Duration::from_secs(args.test_timeout.max(1));
    let cfg = HarvestConfig {
        packages,
        per_repo: args.per_repo.max(1),
        since: args.since.clone(),
        max_pages: args.max_pages.max(1),
        bounds: StatementBounds {
            comments: args.comments,
            ..StatementBounds::default()
        },
        forge,
    };
    let bar = super::progress::counter(cfg.packages.len() as u64, "packages harvested");
    let progress = |package: &str, done: usize, _: usize| {
        bar.set_position(done as u64);
        bar.set_message(format!("done with {package}"));
    };
    let report = if args.open {
        // The checklist writer; `_server` keeps an embedded model alive until the end.
        let (writer, _server) = super::context::llm(settings).await?;
        harvest_open(&engine, &client, &writer, &store, &cfg, progress).await?
    } else {
        harvest(&engine, &client, &store, &cfg, progress).await?
    };
    bar.finish_and_clear();
    printer::data(serde_json::to_string(&report)?);
    let tasks = report.task_ids.len().max(1) as f64;
    printer::status(format_args!(
        "{} tasks from {} candidates ({} merged pull requests, {} skipped) in {:.0} s; \
         {} API requests ({} answered 304, {} counted against the quota), {:.1} requests and {:.0} s per task",
        report.task_ids.len(),
        report.candidates,
        report.merged_prs,
        report.skipped.len(),
        report.wall_seconds,
        report.usage.requests,
        report.usage.not_modified,
        report.usage.quota,
        report.usage.requests as f64 / tasks,
        report.wall_seconds / tasks,
    ));
    Ok(())
}
