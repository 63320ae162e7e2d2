//! `bench dataset`: exporting records to Parquet against streaming them out of the store,
//! with peak RSS.

use std::time::Instant;

use serde::Serialize;

use super::tempfile_dir;

#[derive(Debug, Serialize)]
pub(super) struct DatasetBench {
    benchmark: &'static str,
    rows: u64,
    jsonl_mb: f64,
    parquet_mb: f64,
    shards: usize,
    /// Baseline: streaming every record out of the store and parsing it, nothing else.
    read_seconds: f64,
    read_peak_rss_mb: f64,
    export_seconds: f64,
    export_peak_rss_mb: f64,
    /// export time / read time.
    time_ratio: f64,
    /// Peak RSS of the export / size of the records: far below 1 means streamed.
    rss_over_input: f64,
}

/// Peak resident memory of this process in MiB (VmHWM).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the peak (Linux: writing 5 to clear_refs resets VmHWM to the current RSS).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(super) fn bench_dataset(rows: u64) -> anyhow::Result<DatasetBench> {
    use crate::dataset::{ExportOptions, Record, RecordStore, export};
    let dir = tempfile_dir()?;
    let path = dir.join("records.jsonl");
    let mut store = RecordStore::open(&path)?;
    let task: crate::tasks::Task = serde_json::from_value(serde_json::json!({
        "instance_id": "bench__1.0-00000000", "repo": "pypi/bench", "patch": "diff --git a/x b/x\n",
        "problem_statement": "", "FAIL_TO_PASS": ["tests/test_a.py::test_x"], "PASS_TO_PASS": []
    }))?;
    let mut base = Record::for_task(&task);
    // Realistic sizes: a statement, a patch and a trajectory of a few KB, varied per row.
    for i in 0..rows {
        base.instance_id = format!("bench{}__1.0-{:08x}", i % 97, i / 5);
        base.package = format!("bench{}", i % 97);
        base.problem_statement = format!("{} {}", "The parser rejects valid input.".repeat(20), i);
        base.model_patch = format!(
            "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = {i}\n+x = {}\n",
            i + 1
        );
        base.trajectory = format!(
            "{{\"steps\": [{}]}}",
            (0..24)
                .map(|k| format!("{{\"n\": {}, \"out\": \"{}\"}}", k, i * 31 + k))
                .collect::<Vec<_>>()
                .join(",")
        );
        base.resolved = i % 4 == 0;
        base.final_score = if base.resolved { 0.93 } else { 0.0 };
        base.miner_hotkey = format!("5Miner{}", i % 64);
        store.append(&mut base.clone())?;
    }
    let jsonl_mb = std::fs::metadata(&path)?.len() as f64 / (1 << 20) as f64;

    reset_peak_rss();
    let t = Instant::now();
    let mut n = 0u64;
    for r in store.iter()? {
        std::hint::black_box(r?);
        n += 1;
    }
    let read_seconds = t.elapsed().as_secs_f64();
    let read_peak = peak_rss_mb();
    anyhow::ensure!(n == rows, "read {n} of {rows} records");

    reset_peak_rss();
    let out = dir.join("export");
    let t = Instant::now();
    let report = export(&store, &out, &ExportOptions::default())?;
    let export_seconds = t.elapsed().as_secs_f64();
    let export_peak = peak_rss_mb();
    let parquet_bytes: u64 = std::fs::read_dir(out.join("data"))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(DatasetBench {
        benchmark: "dataset_export",
        rows,
        jsonl_mb,
        parquet_mb: parquet_bytes as f64 / (1 << 20) as f64,
        shards: report.total_shards,
        read_seconds,
        read_peak_rss_mb: read_peak,
        export_seconds,
        export_peak_rss_mb: export_peak,
        time_ratio: export_seconds / read_seconds.max(1e-9),
        rss_over_input: export_peak / jsonl_mb.max(1e-9),
    })
}
