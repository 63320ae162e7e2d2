//! `agentao github …`: what goes back to GitHub. Only `propose`, opt-in: the best resolved
//! patch of an open-issue task as a pull request upstream (`--dry-run` prints it and sends
//! nothing).

use clap::Subcommand;

use super::context::StoreArg;
use super::{UserError, printer};
use crate::config::Settings;
use crate::dataset::RecordStore;
use crate::github::{GithubClient, GithubConfig, Winner, propose};

#[derive(Debug, Subcommand)]
pub enum GithubCmd {
    /// Propose the best resolved patch of an open-issue task upstream as a pull request.
    Propose {
        /// The task's instance id.
        #[arg(long)]
        task: String,
        /// Build the branch and commit and print the pull request; send nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: StoreArg,
    },
}

pub async fn run(cmd: GithubCmd, settings: &Settings) -> anyhow::Result<()> {
    let GithubCmd::Propose {
        task,
        dry_run,
        store,
    } = cmd;
    let store = store.open(settings)?;
    let task = store
        .get(&task)?
        .ok_or_else(|| UserError::new(format!("unknown task {task}")))?;
    crate::github::propose::ensure_open(&task)?;
    let records = RecordStore::open(&super::context::records_path(settings))?;
    let mut best: Option<crate::dataset::Record> = None;
    for r in records.iter()? {
        let r = r?;
        if r.instance_id == task.instance_id
            && r.resolved
            && !r.model_error
            && !r.model_patch.trim().is_empty()
            && best.as_ref().is_none_or(|b| r.final_score > b.final_score)
        {
            best = Some(r);
        }
    }
    let best = best.ok_or_else(|| {
        UserError::new(format!(
            "no resolved patch recorded for task {}",
            task.instance_id
        ))
        .hint("a validator records miners' patches in the dataset: `agentao validator`")
    })?;
    let client = GithubClient::new(GithubConfig::new(
        settings.github_api_url.as_deref(),
        settings.github_token.as_deref(),
        &settings.cache_dir,
    ))?;
    let winner = Winner {
        patch: &best.model_patch,
        hotkey: &best.miner_hotkey,
        score: best.final_score,
    };
    let proposal = propose(&client, &settings.cache_dir, &task, &winner, dry_run).await?;
    printer::data(serde_json::to_string_pretty(&proposal)?);
    match &proposal.pr_url {
        Some(url) => printer::status(format_args!("pull request opened: {url}")),
        None => printer::status(format_args!(
            "dry run: branch {} at {} built locally; nothing sent",
            proposal.branch, proposal.commit
        )),
    }
    Ok(())
}
