//! `agentao dataset …`: export the recorded rounds as Parquet with a dataset card, and push the
//! export to the HuggingFace Hub.

use std::path::PathBuf;

use clap::Subcommand;

use super::UserError;
use super::printer;
use crate::config::Settings;
use crate::config::env_vars as ev;
use crate::dataset::{DatasetError, ExportOptions, HubClient, RecordStore, export};

#[derive(Debug, Subcommand)]
pub enum DatasetCmd {
    /// Write new records as Parquet shards plus README.md (incremental).
    Export {
        /// Export folder (the Hub repo's layout).
        #[arg(long)]
        out: PathBuf,
        /// Record store (default: <data dir>/dataset/records.jsonl).
        #[arg(long)]
        records: Option<PathBuf>,
        /// Only records made at or after this RFC 3339 time. Records skipped this way are not
        /// exported into this folder later either.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100_000)]
        rows_per_shard: usize,
        /// Name in the dataset card.
        #[arg(long, default_value = "agentao")]
        name: String,
    },
    /// Upload an export folder to a dataset repo on the Hub (token from HF_TOKEN, else the
    /// file `huggingface-cli login` wrote).
    Push {
        /// Dataset repo, `org/name`.
        #[arg(long)]
        repo: String,
        /// Export folder.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, env = ev::HF_TOKEN, hide_env_values = true)]
        token: Option<String>,
        #[arg(long, env = ev::HF_ENDPOINT)]
        endpoint: Option<String>,
    },
}

pub async fn run(cmd: DatasetCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        DatasetCmd::Export {
            out,
            records,
            since,
            rows_per_shard,
            name,
        } => {
            let since = since
                .map(|s| {
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|e| UserError::new(format!("--since {s:?}: {e}")))
                })
                .transpose()?;
            let path = records.unwrap_or_else(|| super::context::records_path(settings));
            if !path.is_file() {
                return Err(UserError::new(format!(
                    "no records at {} (rounds record them; `agentao local` makes one)",
                    path.display()
                ))
                .into());
            }
            let store = RecordStore::open(&path)?;
            let opts = ExportOptions {
                since,
                rows_per_shard: rows_per_shard.max(1),
                name,
                withhold: super::context::in_rotation(settings)?,
                ..ExportOptions::default()
            };
            let report = tokio::task::spawn_blocking(move || export(&store, &out, &opts))
                .await?
                .map_err(|e| match e {
                    DatasetError::SchemaChanged { .. } => {
                        anyhow::Error::from(UserError::new(e.to_string()))
                    }
                    e => e.into(),
                })?;
            printer::data(serde_json::to_string(&report)?);
            Ok(())
        }
        DatasetCmd::Push {
            repo,
            dir,
            token,
            endpoint,
        } => {
            let token = match token.filter(|t| !t.trim().is_empty()) {
                Some(t) => t,
                None => login_token()?,
            };
            if !dir.join("README.md").is_file() {
                return Err(UserError::new(format!(
                    "{} is not an export folder (no README.md): run `agentao dataset export` first",
                    dir.display()
                ))
                .into());
            }
            let report = HubClient::new(endpoint.as_deref(), &token)
                .push(&dir, &repo)
                .await?;
            printer::data(serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

/// The token `huggingface-cli login` saved ([`crate::config::hf_token_file`]).
fn login_token() -> anyhow::Result<String> {
    let file = crate::config::hf_token_file();
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(
            UserError::new(format!("the token file {} is empty", file.display()))
                .hint("run `huggingface-cli login` again, or set HF_TOKEN")
                .into(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(UserError::new(format!(
            "no Hub token: HF_TOKEN is not set and {} does not exist",
            file.display()
        ))
        .hint("run `huggingface-cli login`, or set HF_TOKEN")
        .into()),
        Err(e) => Err(anyhow::Error::from(e).context(format!("reading {}", file.display()))),
    }
}
