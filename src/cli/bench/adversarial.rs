//! `bench adversarial`: the hostile-patch corpus against a task, every verdict checked, with
//! the host's free disk space before and after (the sandboxes' writes must not reach it).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Settings;
use crate::eval::EvalConfig;
use crate::eval::adversarial::{CaseResult, corpus, run_cases};

#[derive(Debug, Serialize)]
pub struct AdversarialBench {
    benchmark: &'static str,
    instance_id: String,
    cases: usize,
    met: usize,
    pub wrong: Vec<String>,
    /// Cases per class: (met, total).
    by_class: std::collections::BTreeMap<String, (usize, usize)>,
    seconds: f64,
    /// Free bytes on the engine's disk before and after the run, and the difference.
    host_free_before: u64,
    host_free_after: u64,
    host_free_delta_mib: f64,
    results: Vec<CaseResult>,
}

/// Free bytes of the file system holding `dir`.
async fn free_bytes(dir: &str) -> anyhow::Result<u64> {
    let out = tokio::process::Command::new("df")
        .args(["-B1", "--output=avail", dir])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read free space of {dir}: {text}"))
}

pub async fn bench_adversarial(
    settings: &Settings,
    tasks: &[crate::tasks::Task],
    workers: usize,
    test_timeout: Duration,
) -> anyhow::Result<AdversarialBench> {
    let (task, cases) = tasks
        .iter()
        .find_map(|t| corpus(t).ok().map(|c| (t, c)))
        .ok_or_else(|| {
            anyhow::anyhow!("no task whose reference fix can take a statement before it")
        })?;
    let engine = crate::cli::context::engine(settings).await?;
    let root = engine.root_dir().await?;
    let root = if root.is_empty() {
        "/".to_owned()
    } else {
        root
    };
    let cfg = EvalConfig {
        limits: settings.limits.clone(),
        run_id: settings.run_id.clone(),
        test_timeout,
        ..EvalConfig::default()
    };
    let before = free_bytes(&root).await?;
    let t = Instant::now();
    let results = run_cases(&engine, task, &cases, &cfg, workers).await;
    let seconds = t.elapsed().as_secs_f64();
    let after = free_bytes(&root).await?;
    let mut by_class = std::collections::BTreeMap::new();
    for r in &results {
        let e = by_class
            .entry(format!("{:?}", r.class).to_lowercase())
            .or_insert((0, 0));
        e.0 += usize::from(r.met);
        e.1 += 1;
    }
    Ok(AdversarialBench {
        benchmark: "adversarial",
        instance_id: task.instance_id.clone(),
        cases: results.len(),
        met: results.iter().filter(|r| r.met).count(),
        wrong: results
            .iter()
            .filter(|r| !r.met)
            .map(|r| format!("{}: expected {:?}, got {}", r.name, r.expect, r.got))
            .collect(),
        by_class,
        seconds,
        host_free_before: before,
        host_free_after: after,
        host_free_delta_mib: (before as f64 - after as f64) / (1024.0 * 1024.0),
        results,
    })
}
