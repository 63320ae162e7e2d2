//! `agentao tasks …`: hand-made tasks now; forging, the store and export come with the forge.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::UserError;
use crate::config::Settings;
use crate::tasks::{EnvSpec, Task, build_env_image};

#[derive(Debug, Subcommand)]
pub enum TasksCmd {
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
            let engine = super::engine(settings).await?;
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
            eprintln!("{} → {} ({})", t.instance_id, out.display(), t.image);
            Ok(())
        }
    }
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
