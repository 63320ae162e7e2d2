//! `bench forge`: validated tasks per CPU-minute with coverage-selected tests against the
//! whole suite per candidate.

use std::time::Instant;

use serde::Serialize;

use crate::config::Settings;

#[derive(Debug, Serialize)]
struct ForgeModeResult {
    selection: crate::forge::Selection,
    packages: Vec<crate::forge::PackageReport>,
    candidates_tried: usize,
    validated: usize,
    cpu_seconds: f64,
    wall_seconds: f64,
    /// Validated tasks per CPU-minute of the forge's containers.
    tasks_per_cpu_minute: f64,
    /// Validated / tried.
    yield_ratio: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct ForgeBench {
    benchmark: &'static str,
    coverage: ForgeModeResult,
    whole_suite: ForgeModeResult,
    /// Coverage-selected tasks per CPU-minute / whole-suite tasks per CPU-minute.
    ratio: f64,
    note: &'static str,
}

pub(super) async fn bench_forge(
    settings: &Settings,
    packages: &[String],
    candidates: usize,
) -> anyhow::Result<ForgeBench> {
    use crate::forge::{Forge, Selection};
    let engine = crate::cli::context::engine(settings).await?;
    let mut modes = Vec::new();
    for selection in [Selection::Coverage, Selection::WholeSuite] {
        let mut cfg = crate::cli::context::forge_config(settings);
        // Every candidate is tried in both modes: no early stop at a task count.
        cfg.per_package = candidates;
        cfg.max_candidates = candidates;
        cfg.selection = selection;
        // One at a time, so CPU time is not inflated by two runs sharing the cores.
        cfg.workers = 1;
        let forge = Forge::new(&engine, cfg)?;
        let started = Instant::now();
        let mut reports = Vec::new();
        for p in packages {
            let (name, version) = crate::cli::tasks_cmd::parse_package_spec(p);
            tracing::info!(package = name, ?selection, "benchmarking the forge");
            reports.push(forge.forge_package(&name, version.as_deref(), None).await?);
        }
        let tried: usize = reports.iter().map(|r| r.candidates_tried).sum();
        let validated: usize = reports.iter().map(|r| r.validated).sum();
        let cpu: f64 = reports.iter().map(|r| r.cpu_seconds).sum();
        modes.push(ForgeModeResult {
            selection,
            packages: reports,
            candidates_tried: tried,
            validated,
            cpu_seconds: cpu,
            wall_seconds: started.elapsed().as_secs_f64(),
            tasks_per_cpu_minute: if cpu > 0.0 {
                validated as f64 / (cpu / 60.0)
            } else {
                0.0
            },
            yield_ratio: if tried > 0 {
                validated as f64 / tried as f64
            } else {
                0.0
            },
        });
    }
    let whole_suite = modes.pop().expect("two modes");
    let coverage = modes.pop().expect("two modes");
    let ratio = if whole_suite.tasks_per_cpu_minute > 0.0 {
        coverage.tasks_per_cpu_minute / whole_suite.tasks_per_cpu_minute
    } else {
        f64::INFINITY
    };
    Ok(ForgeBench {
        benchmark: "forge",
        coverage,
        whole_suite,
        ratio,
        note: "CPU seconds: cgroup CPU time of the baseline and candidate containers plus the \
               wall time of the gold-patch checks; both modes take the same baseline and try \
               the same candidates in the same order",
    })
}
