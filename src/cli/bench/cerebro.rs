//! `bench cerebro`: training Cerebro's model on the shipped data (both item-response heads and
//! both effort heads) against fitting the agent-ability-only head on the same outcomes with the
//! same optimiser, in the same run; and the saved model's size.

use std::time::Instant;

use serde::Serialize;

use super::tempfile_dir;
use crate::cerebro::{self, Dataset, Features, TrainConfig};

#[derive(Debug, Serialize)]
pub(super) struct CerebroBench {
    benchmark: &'static str,
    tasks: usize,
    outcomes: usize,
    /// Best of the rounds, seconds of wall clock.
    train_seconds: f64,
    /// Baseline: the ability-only head (θ per agent, β per task, no features).
    baseline_seconds: f64,
    /// train / baseline.
    time_ratio: f64,
    model_bytes: u64,
    rounds: usize,
}

pub(super) fn bench_cerebro(rounds: usize) -> anyhow::Result<CerebroBench> {
    let data = Dataset::shipped()?;
    let cfg = TrainConfig::default();
    let all: Vec<usize> = (0..data.tasks.len()).collect();
    let (mut train, mut baseline) = (f64::INFINITY, f64::INFINITY);
    let mut model = None;
    // Interleaved, so both see the same machine load.
    for _ in 0..rounds {
        let started = Instant::now();
        let m = cerebro::train(&data, &cfg);
        train = train.min(started.elapsed().as_secs_f64());
        model = Some(m);
        let started = Instant::now();
        let _ = cerebro::train::fit_head(&data, &all, Features::None, &cfg);
        baseline = baseline.min(started.elapsed().as_secs_f64());
    }
    let path = tempfile_dir()?.join("model.json");
    model.expect("one round at least").save(&path)?;
    let model_bytes = std::fs::metadata(&path)?.len();
    let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    Ok(CerebroBench {
        benchmark: "cerebro",
        tasks: data.tasks.len(),
        outcomes: data.responses.len(),
        train_seconds: train,
        baseline_seconds: baseline,
        time_ratio: train / baseline.max(1e-9),
        model_bytes,
        rounds,
    })
}
