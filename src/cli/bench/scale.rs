//! `bench scale`: the figures that matter at scale, measured on the stored tasks given —
//! disk used by their images (layers on the engine's disk, shared ones once) extrapolated to
//! 100 tasks, the peak memory of this process while it evaluates `answers` answers with a
//! sandbox budget of 2, and how often a gold patch flips across fresh replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use super::tempfile_dir;
use crate::config::Settings;
use crate::eval::{EvalConfig, Prediction, run_batch};
use crate::tasks::Task;

#[derive(Debug, Serialize)]
pub(super) struct ScaleBench {
    benchmark: &'static str,
    tasks: usize,
    distinct_images: usize,
    /// Bytes of the layers every task image shares (the base image), counted once.
    shared_bytes: u64,
    /// Bytes of the layers only task images have, over all of them.
    task_layers_bytes: u64,
    /// shared + task layers per task × 100: the disk 100 stored tasks like these need.
    disk_per_100_tasks_gb: f64,
    answers: usize,
    max_sandboxes: usize,
    /// Peak resident memory of this process while it evaluated `answers` answers (VmHWM,
    /// reset before), and the sandboxes' own bound: budget × memory limit.
    validator_peak_rss_mb: f64,
    sandboxes_memory_bound_mb: u64,
    answers_s: f64,
    replicas: usize,
    /// Gold-patch evaluations that did not resolve, and tasks whose replicas disagreed.
    gold_failures: usize,
    flipped_tasks: Vec<String>,
    flip_rate: f64,
}

fn layer_dirs(image: &str) -> anyhow::Result<Vec<String>> {
    let out = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .GraphDriver.Data}}",
            image,
        ])
        .output()?;
    anyhow::ensure!(out.status.success(), "docker image inspect {image} failed");
    let data: BTreeMap<String, String> = serde_json::from_slice(&out.stdout)?;
    let mut dirs = Vec::new();
    for key in ["UpperDir", "LowerDir"] {
        if let Some(v) = data.get(key) {
            dirs.extend(v.split(':').filter(|d| !d.is_empty()).map(str::to_owned));
        }
    }
    Ok(dirs)
}

fn du(dir: &str) -> u64 {
    std::process::Command::new("du")
        .args(["-sb", dir])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(super) fn copies(tasks: &[Task], n: usize, tag: &str) -> (Vec<Task>, Vec<Prediction>) {
    let (mut ts, mut ps) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut t = tasks[i % tasks.len()].clone();
        t.instance_id = format!("{}#{tag}{i}", t.instance_id);
        ps.push(Prediction {
            instance_id: t.instance_id.clone(),
            model_name_or_path: "gold".into(),
            model_patch: Some(t.patch.clone()),
        });
        ts.push(t);
    }
    (ts, ps)
}

pub(super) async fn bench_scale(
    settings: &Settings,
    tasks: &[Task],
    answers: usize,
    replicas: usize,
) -> anyhow::Result<ScaleBench> {
    let mut settings = settings.clone();
    settings.max_sandboxes = 2;
    let engine = crate::cli::context::engine(&settings).await?;
    let cfg = EvalConfig {
        limits: settings.limits.clone(),
        run_id: settings.run_id.clone(),
        ..EvalConfig::default()
    };

    // Disk: every layer directory of the task images, shared ones once.
    let images: BTreeSet<&str> = tasks.iter().map(|t| t.image.as_str()).collect();
    let base = crate::sandbox::base_image_tag().reference;
    let shared: BTreeSet<String> = layer_dirs(&base)?.into_iter().collect();
    let mut task_dirs = BTreeSet::new();
    for image in &images {
        task_dirs.extend(
            layer_dirs(image)?
                .into_iter()
                .filter(|d| !shared.contains(d)),
        );
    }
    let shared_bytes: u64 = shared.iter().map(|d| du(d)).sum();
    let task_layers_bytes: u64 = task_dirs.iter().map(|d| du(d)).sum();
    let per_task = task_layers_bytes as f64 / tasks.len().max(1) as f64;
    let disk_per_100 = (shared_bytes as f64 + per_task * 100.0) / 1e9;

    // Peak memory: `answers` gold answers evaluated with the budget at 2.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (ts, ps) = copies(tasks, answers, "a");
    let dir = tempfile_dir()?;
    let t = Instant::now();
    run_batch(&engine, &ts, &ps, &dir, 2, &cfg, |_, _| {}).await?;
    let answers_s = t.elapsed().as_secs_f64();
    let peak = peak_rss_mb();
    let _ = std::fs::remove_dir_all(&dir);

    // Flips: every task's gold patch in `replicas` fresh containers.
    let (ts, ps) = copies(tasks, tasks.len() * replicas, "r");
    let dir = tempfile_dir()?;
    let report = run_batch(&engine, &ts, &ps, &dir, 2, &cfg, |_, _| {}).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    engine.shutdown(std::time::Duration::from_secs(60)).await;
    let resolved: BTreeSet<&str> = report.resolved_ids.iter().map(String::as_str).collect();
    let mut by_task: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, t) in ts.iter().enumerate() {
        let slot = by_task
            .entry(tasks[i % tasks.len()].instance_id.as_str())
            .or_default();
        if resolved.contains(t.instance_id.as_str()) {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    let flipped_tasks: Vec<String> = by_task
        .iter()
        .filter(|(_, (ok, bad))| *ok > 0 && *bad > 0)
        .map(|(id, _)| (*id).to_owned())
        .collect();
    Ok(ScaleBench {
        benchmark: "scale",
        tasks: tasks.len(),
        distinct_images: images.len(),
        shared_bytes,
        task_layers_bytes,
        disk_per_100_tasks_gb: (disk_per_100 * 1000.0).round() / 1000.0,
        answers,
        max_sandboxes: settings.max_sandboxes,
        validator_peak_rss_mb: (peak * 10.0).round() / 10.0,
        sandboxes_memory_bound_mb: settings.limits.memory_mb * settings.max_sandboxes as u64,
        answers_s,
        replicas,
        gold_failures: ts.len() - resolved.len(),
        flip_rate: flipped_tasks.len() as f64 / tasks.len().max(1) as f64,
        flipped_tasks,
    })
}
