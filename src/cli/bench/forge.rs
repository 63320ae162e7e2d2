//! `bench forge`: validated tasks per CPU-minute with coverage-selected tests against the
//! whole suite per candidate.

use std::time::Instant;

use serde::Serialize;

use super::median;
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
    /// Candidates rejected because the tests accepted a decoy fix.
    rejected_weak_tests: usize,
    /// Rejected because the bug broke collection or import.
    rejected_collection_failed: usize,
    /// Rejected because no selected test still passed with the bug (no PASS_TO_PASS).
    rejected_no_regression_check: usize,
    /// Weak-test rejections / candidates that broke tests cleanly and reached the decoys.
    weak_tests_share: f64,
    decoys_run: usize,
    /// Validated tasks the repair baseline ran on, and the share it resolved (its patch
    /// judged by the harness).
    repair_tried: usize,
    repair_resolved_share: f64,
    repair_median_candidates: f64,
    repair_median_seconds: f64,
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
    use crate::forge::{Forge, Rejection, Selection};
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
        let count = |r: Rejection| -> usize {
            reports
                .iter()
                .map(|p| p.rejected.get(&r).copied().unwrap_or(0))
                .sum()
        };
        let weak = count(Rejection::WeakTests);
        let reached = weak + validated + count(Rejection::GoldFailed) + count(Rejection::Leaky);
        let decoys_run = reports.iter().map(|r| r.decoys_run).sum();
        let repairs: Vec<&crate::tasks::RepairOutcome> =
            reports.iter().flat_map(|r| r.repair.iter()).collect();
        let solved = repairs.iter().filter(|r| r.solved).count();
        modes.push(ForgeModeResult {
            repair_tried: repairs.len(),
            repair_resolved_share: if repairs.is_empty() {
                0.0
            } else {
                solved as f64 / repairs.len() as f64
            },
            repair_median_candidates: median(
                repairs
                    .iter()
                    .map(|r| f64::from(r.repair_candidates))
                    .collect(),
            ),
            repair_median_seconds: median(repairs.iter().map(|r| r.seconds).collect()),
            rejected_weak_tests: weak,
            rejected_collection_failed: count(Rejection::CollectionFailed),
            rejected_no_regression_check: count(Rejection::NoRegressionCheck),
            weak_tests_share: if reached > 0 {
                weak as f64 / reached as f64
            } else {
                0.0
            },
            decoys_run,
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
