//! The sdist from the miner's own index (its sha256 must be the description's) and the
//! environment image from the recipe: exactly the pinned wheels, hash-checked, then the
//! forge's own image build (network off), so the tag comes out as the sender's.

use std::path::{Path, PathBuf};

use super::{MaterializeConfig, MaterializeError};
use crate::forge::{ENV_RECIPE_VERSION, EnvSpec, build_env_image};
use crate::python::{PypiClient, download_pinned_wheels, download_wheels, unpack_sdist};
use crate::sandbox::{self, Engine};
use crate::tasks::spec::{EnvRecipe, sha256_hex};

/// The pristine source of `name==version`, from the miner's index, checked against `sha256`.
pub(super) async fn source(
    cfg: &MaterializeConfig,
    name: &str,
    version: &str,
    filename: &str,
    sha256: &str,
) -> Result<PathBuf, MaterializeError> {
    let client = PypiClient::new(cfg.index_url.as_deref(), &cfg.dir(""))?;
    let sdist = client.resolve_sdist(name, Some(version)).await?;
    if sdist.filename != filename || sdist.sha256 != sha256 {
        return Err(MaterializeError::Refused(format!(
            "sdist sha256 mismatch: the description names {filename} sha256 {sha256}, the index {} has {} sha256 {}",
            client.index_url(),
            sdist.filename,
            if sdist.sha256.is_empty() {
                "none"
            } else {
                &sdist.sha256
            },
        )));
    }
    // The download checks the file against the same sha256.
    let archive = client.download(&sdist).await?;
    let dest = cfg
        .dir("src")
        .join(format!("{}-{}", sdist.name, &sha256[..16]));
    std::fs::create_dir_all(cfg.dir("src")).map_err(super::io("materialize/src"))?;
    Ok(unpack_sdist(&archive, &dest)?)
}

/// The environment image of a recipe, named `image_name:version-…` as the sender names it:
/// refused unless it is this build's recipe (version, base image, Python, install mode); the
/// wheels pinned by sha256 fetched from the index only, without dependencies; then the
/// forge's build.
pub(super) async fn environment(
    engine: &Engine,
    cfg: &MaterializeConfig,
    image_name: &str,
    version: &str,
    source: &Path,
    recipe: &EnvRecipe,
) -> Result<String, MaterializeError> {
    let base = sandbox::base_image_tag().reference;
    if recipe.recipe != ENV_RECIPE_VERSION
        || recipe.base_image != base
        || recipe.python != "3.11"
        || recipe.install != "editable"
    {
        return Err(MaterializeError::Refused(format!(
            "environment recipe {}/{}/{}/{} is not this miner's ({ENV_RECIPE_VERSION}/{base}/3.11/editable)",
            recipe.recipe, recipe.base_image, recipe.python, recipe.install
        )));
    }
    let mut pins = Vec::new();
    for w in &recipe.wheels {
        let requirement = w.requirement().ok_or_else(|| {
            MaterializeError::Refused(format!("{} is not a wheel file name", w.filename))
        })?;
        pins.push((requirement, w.sha256.clone()));
    }
    let key = sha256_hex(
        recipe
            .wheels
            .iter()
            .map(|w| format!("{} {}\n", w.filename, w.sha256))
            .collect::<String>()
            .as_bytes(),
    );
    let wheels = cfg.dir("wheels").join(&key[..16]);
    std::fs::create_dir_all(cfg.dir("wheels")).map_err(super::io("materialize/wheels"))?;
    if !wheels.join(".complete").is_file() {
        if pins.is_empty() {
            std::fs::create_dir_all(&wheels).map_err(super::io(wheels.display()))?;
            std::fs::write(wheels.join(".complete"), b"").map_err(super::io(wheels.display()))?;
        } else {
            download_pinned_wheels(&wheels, &pins, cfg.index_url.as_deref()).await?;
        }
    }
    // Exactly the pinned files, each with its sha256 (pip chose among a release's wheels).
    let mut have: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&wheels).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".whl") {
            let bytes = std::fs::read(entry.path()).map_err(super::io(&name))?;
            have.push((name, sha256_hex(&bytes)));
        }
    }
    have.sort();
    let mut want: Vec<(String, String)> = recipe
        .wheels
        .iter()
        .map(|w| (w.filename.clone(), w.sha256.clone()))
        .collect();
    want.sort();
    if have != want {
        let _ = std::fs::remove_dir_all(&wheels);
        return Err(MaterializeError::Refused(format!(
            "the index gave other wheels than the recipe pins ({} of {})",
            have.iter().filter(|h| want.contains(h)).count(),
            want.len()
        )));
    }
    let image = build_env_image(
        engine,
        &EnvSpec {
            name: image_name,
            version,
            source_dir: source,
            wheels_dir: Some(&wheels),
        },
    )
    .await?;
    if image != recipe.image {
        tracing::warn!(ours = %image, theirs = %recipe.image,
            "the environment image's tag differs from the sender's: its inputs differ");
    }
    Ok(image)
}

/// The environment of a checked-out repository (the original protocol, no recipe): its
/// declared test requirements as wheels from the index (direct URLs dropped; what has no
/// wheel is left out), then the forge's build.
pub(super) async fn environment_from_tree(
    engine: &Engine,
    cfg: &MaterializeConfig,
    package: &str,
    commit: &str,
    tree: &Path,
) -> Result<String, MaterializeError> {
    let reqs: Vec<String> = crate::forge::deps::discover(tree)
        .all(package)
        .into_iter()
        .filter(|r| !r.contains('@') && !r.contains("://"))
        .collect();
    let key = sha256_hex(reqs.join("\n").as_bytes());
    let wheels = cfg.dir("wheels").join(format!("tree-{}", &key[..16]));
    std::fs::create_dir_all(cfg.dir("wheels")).map_err(super::io("materialize/wheels"))?;
    if !wheels.join(".complete").is_file() {
        let index = cfg.index_url.as_deref();
        if reqs.is_empty()
            || download_wheels(&wheels, &reqs.join("\n"), index)
                .await
                .is_err()
        {
            // One by one, keeping what has a wheel.
            std::fs::create_dir_all(&wheels).map_err(super::io(wheels.display()))?;
            for (i, r) in reqs.iter().enumerate() {
                let one = cfg.dir("wheels").join(format!("tree-{}-{i}", &key[..16]));
                match download_wheels(&one, r, index).await {
                    Ok(()) => {
                        for w in std::fs::read_dir(&one).into_iter().flatten().flatten() {
                            let _ = std::fs::rename(w.path(), wheels.join(w.file_name()));
                        }
                    }
                    Err(e) => tracing::warn!(requirement = %r, error = %e, "no wheel; left out"),
                }
                let _ = std::fs::remove_dir_all(&one);
            }
            std::fs::write(wheels.join(".complete"), b"").map_err(super::io(wheels.display()))?;
        }
    }
    Ok(build_env_image(
        engine,
        &EnvSpec {
            name: &format!("agentao/env-git-{package}"),
            version: &commit[..12],
            source_dir: tree,
            wheels_dir: Some(&wheels),
        },
    )
    .await?)
}
