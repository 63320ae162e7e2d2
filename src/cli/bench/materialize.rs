//! `bench materialize`: a miner's cold and warm materialisation of a package's task
//! description (its own empty cache: sdist, pinned wheels, image build), against the
//! validator's own environment build of the same release from an empty cache in the same run,
//! and the bytes the description takes on the wire.

use std::time::Instant;

use base64::Engine as _;
use serde::Serialize;

use crate::config::Settings;
use crate::forge::Forge;
use crate::materialize::{MaterializeConfig, Materializer};
use crate::python::PypiClient;
use crate::subnet::CodingTask;
use crate::tasks::Task;

#[derive(Debug, Serialize)]
struct PackageResult {
    package: String,
    version: String,
    image: String,
    wheels: usize,
    /// The validator's describe with an empty cache and no image: sdist, wheelhouse, build.
    validator_build_seconds: f64,
    /// The miner's first materialisation, empty cache and no image.
    miner_cold_seconds: f64,
    /// The same description again.
    miner_warm_seconds: f64,
    /// miner cold / validator build.
    cold_ratio: f64,
    /// The synapse's JSON with the description (and bundle, base64) in it.
    wire_bytes: usize,
    /// The miner's image tag is the validator's.
    same_tag: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct MaterializeBench {
    benchmark: &'static str,
    packages: Vec<PackageResult>,
    note: &'static str,
}

pub(super) async fn bench_materialize(
    settings: &Settings,
    packages: &[String],
) -> anyhow::Result<MaterializeBench> {
    let engine = crate::cli::context::engine(settings).await?;
    let root = super::tempfile_dir()?;
    let mut out = Vec::new();
    for (i, spec) in packages.iter().enumerate() {
        let (name, version) = crate::cli::tasks_cmd::parse_package_spec(spec);
        let index = settings.pip_index_url.as_deref();
        let version = match version {
            Some(v) => v,
            None => {
                PypiClient::new(index, &root)?
                    .resolve_sdist(&name, None)
                    .await?
                    .version
            }
        };
        // A pristine description of the release: the environment is what is measured.
        let task: Task = serde_json::from_value(serde_json::json!({
            "instance_id": format!("bench-{name}-{version}"), "repo": format!("pypi/{name}"),
            "patch": "", "problem_statement": "benchmark", "FAIL_TO_PASS": [], "PASS_TO_PASS": [],
            "package": crate::python::normalize(&name), "pypi_version": version,
        }))?;
        let validator_cache = root.join(format!("validator-{i}"));
        let describe = || async {
            let mut cfg = crate::cli::context::forge_config(settings);
            cfg.cache_dir = validator_cache.clone();
            Forge::new(&engine, cfg)?.describe(&task, 600.0).await
        };
        // Once to learn the tag; then the image and the cache go, and the build is timed.
        let tag = describe().await?.spec.environment.image;
        crate::sandbox::remove_image(&engine, &tag).await?;
        let _ = std::fs::remove_dir_all(&validator_cache);
        let started = Instant::now();
        let described = describe().await?;
        let validator_build_seconds = started.elapsed().as_secs_f64();
        crate::sandbox::remove_image(&engine, &tag).await?;

        let m = Materializer::new(
            engine.clone(),
            MaterializeConfig {
                index_url: settings.pip_index_url.clone(),
                ..MaterializeConfig::new(&root.join(format!("miner-{i}")))
            },
        );
        let wire = serde_json::to_value(&described.spec)?;
        let cold = m.from_wire(&wire, &described.bundle).await?;
        let warm = m.from_wire(&wire, &described.bundle).await?;
        let synapse = crate::subnet::Synapse::new(
            CodingTask {
                repo: format!("pypi:{}=={version}", task.package),
                problem_statement: task.problem_statement.clone(),
                spec_hash: described.spec.hash.clone(),
                spec: Some(wire.clone()),
                bundle: base64::engine::general_purpose::STANDARD.encode(&described.bundle),
                ..CodingTask::default()
            },
            600.0,
        );
        out.push(PackageResult {
            package: task.package.clone(),
            version: version.clone(),
            image: tag.clone(),
            wheels: described.spec.environment.wheels.len(),
            validator_build_seconds,
            miner_cold_seconds: cold.seconds,
            miner_warm_seconds: warm.seconds,
            cold_ratio: cold.seconds / validator_build_seconds.max(1e-9),
            wire_bytes: serde_json::to_vec(&synapse)?.len(),
            same_tag: cold.task.image == tag,
        });
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(MaterializeBench {
        benchmark: "materialize",
        packages: out,
        note: "validator and miner each start from an empty cache with the image removed; the \
               miner's cold time includes its sdist and pinned-wheel downloads and the image \
               build, its warm time is the same description again (cache and image hit)",
    })
}
