//! `agentao image …`: build the base image, list and clean images.

use clap::Subcommand;

use super::context;
use super::printer;
use super::progress::Steps;
use crate::config::Settings;
use crate::sandbox::{self, BaseImageOptions, Rebuild};

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build agentao/base from a debootstrap root (skipped when the recipe's tag exists).
    BuildBase {
        /// Rebuild even if the image exists.
        #[arg(long)]
        force: bool,
    },
    /// List images agentao built.
    List,
    /// Remove leftover containers and images of old recipes.
    Gc,
}

/// Builds the base image unless its recipe's tag exists (or `rebuild` says always), with
/// progress.
pub async fn ensure_base_image(
    engine: &sandbox::Engine,
    settings: &Settings,
    rebuild: Rebuild,
) -> Result<sandbox::BuildReport, sandbox::SandboxError> {
    let steps = Steps::new("checking the base image");
    let opts = BaseImageOptions {
        cache_dir: settings.cache_dir.clone(),
        mirror: settings.debian_mirror.clone(),
        pip_index_url: settings.pip_index_url.clone(),
        rebuild,
    };
    let report = sandbox::build_base_image(engine, &opts, &mut |s: &str| steps.step(s)).await;
    steps.finish();
    report
}

pub async fn run(cmd: ImageCmd, settings: &Settings) -> anyhow::Result<()> {
    let engine = context::engine(settings).await?;
    match cmd {
        ImageCmd::BuildBase { force } => {
            let rebuild = if force {
                Rebuild::Always
            } else {
                Rebuild::IfMissing
            };
            let report = ensure_base_image(&engine, settings, rebuild).await?;
            if report.skipped {
                printer::status(format_args!("{} is up to date", report.image.reference));
            } else {
                printer::status(format_args!(
                    "built {} in {:.0}s",
                    report.image.reference, report.seconds
                ));
            }
            printer::data(report.image.reference);
        }
        ImageCmd::List => {
            for image in sandbox::list_agentao_images(&engine).await? {
                printer::data(format_args!(
                    "{}\t{:.0} MB\t{}",
                    image.reference,
                    image.size_bytes as f64 / 1e6,
                    image
                        .recipe
                        .as_deref()
                        .map_or("", |r| &r[..r.len().min(12)])
                ));
            }
        }
        ImageCmd::Gc => {
            let base = sandbox::base_image_tag().reference;
            let keep = vec![base, format!("{}:latest", sandbox::BASE_REPO)];
            let report = sandbox::gc_images(&engine, &keep).await?;
            printer::data(serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
