//! `bench dashboard`: the validator's page over N recorded answers, fetched over HTTP from the
//! dashboard on loopback: the first load (reads and parses every record), then later loads
//! (only new lines are read), against streaming and parsing the same records out of the store
//! in the same run.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{ms, percentile, tempfile_dir};
use crate::dashboard::{Dashboard, Sources};
use crate::dataset::{Record, RecordStore};

#[derive(Debug, Serialize)]
pub(super) struct DashboardBench {
    benchmark: &'static str,
    answers: u64,
    miners: u64,
    rounds: u64,
    jsonl_mb: f64,
    page_kb: f64,
    /// Baseline: streaming every record out of the store and parsing it, nothing else.
    read_ms: f64,
    /// The first request: every record read, the page rendered and sent.
    first_page_ms: f64,
    /// Later requests (nothing new to read), median and worst of `loads`.
    page_p50_ms: f64,
    page_max_ms: f64,
    loads: usize,
    /// first page / read baseline.
    first_over_read: f64,
}

const MINERS: u64 = 16;
const OUTCOMES: &[&str] = &[
    "resolved",
    "unresolved",
    "patch_rejected",
    "empty_patch",
    "timeout",
    "unreachable",
];

pub(super) async fn bench_dashboard(answers: u64) -> anyhow::Result<DashboardBench> {
    let dir = tempfile_dir()?;
    let records = dir.join("records.jsonl");
    let scores = dir.join("scores.json");
    let mut store = RecordStore::open(&records)?;
    let task: crate::tasks::Task = serde_json::from_value(serde_json::json!({
        "instance_id": "bench__1", "repo": "pypi/bench", "patch": "diff --git a/x b/x\n",
        "problem_statement": "", "FAIL_TO_PASS": ["tests/test_a.py::test_x"], "PASS_TO_PASS": [],
        "mutation_kind": "flip_comparison",
        "difficulty": {"gold_lines": 2, "gold_files": 1, "fail_to_pass": 1, "pass_to_pass": 40,
                       "function_lines": 12, "source_files": 9, "test_seconds": 3.5, "statement_words": 80}
    }))?;
    let mut base = Record::for_task(&task);
    let mut averages = serde_json::Map::new();
    // Realistic sizes: a statement, a patch, test statuses and a trajectory of a few KB.
    for i in 0..answers {
        let miner = i % MINERS;
        base.round_id = format!("bench-{}", i / MINERS);
        base.instance_id = format!("bench{}__1.0-{:04}", (i / MINERS) % 97, (i / MINERS) % 300);
        base.package = format!("bench{}", (i / MINERS) % 97);
        base.problem_statement = format!("{} {i}", "The parser rejects valid input.".repeat(20));
        base.model_patch = format!(
            "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = {i}\n+x = {}\n",
            i + 1
        );
        base.trajectory = format!(
            "{{\"steps\": [{}]}}",
            (0..24)
                .map(|k| format!("{{\"n\": {k}, \"out\": \"{}\"}}", i * 31 + k))
                .collect::<Vec<_>>()
                .join(",")
        );
        base.outcome = OUTCOMES[((i * 7 + miner) % OUTCOMES.len() as u64) as usize].into();
        base.resolved = base.outcome == "resolved";
        base.final_score = if base.resolved { 0.9 } else { 0.0 };
        base.miner_hotkey = format!("5Miner{miner:02}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        base.miner_uid = miner as i64 + 1;
        base.model = "gpt-4o-mini".into();
        base.agent = "agentao".into();
        base.response_seconds = (i % 600) as f64 / 3.0;
        base.cost_usd = 0.002;
        store.append(&mut base.clone())?;
        averages.insert(
            base.miner_hotkey.clone(),
            (miner as f64 / MINERS as f64).into(),
        );
    }
    std::fs::write(
        &scores,
        serde_json::to_vec(&serde_json::json!({ "by_hotkey": averages }))?,
    )?;
    let jsonl_mb = std::fs::metadata(&records)?.len() as f64 / (1 << 20) as f64;

    let t = Instant::now();
    let mut n = 0u64;
    for r in RecordStore::open(&records)?.iter()? {
        r?;
        n += 1;
    }
    let read = t.elapsed();
    anyhow::ensure!(n == answers, "read {n} of {answers} records");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let dashboard = Dashboard::new(Sources { records, scores });
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(crate::dashboard::serve(
        listener,
        dashboard,
        stop.clone().cancelled_owned(),
    ));
    let client = reqwest::Client::new();
    let get = || async {
        let t = Instant::now();
        let resp = client.get(&url).send().await?.error_for_status()?;
        let body = resp.text().await?;
        Ok::<_, anyhow::Error>((t.elapsed(), body))
    };
    let (first, page) = get().await?;
    anyhow::ensure!(
        page.contains("<svg id=\"score-chart\"") && page.contains(&format!("{answers} answers")),
        "the page does not show the answers"
    );
    let loads = 20;
    let mut times: Vec<Duration> = Vec::with_capacity(loads);
    for _ in 0..loads {
        times.push(get().await?.0);
    }
    stop.cancel();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    let max = *times.iter().max().unwrap_or(&Duration::ZERO);
    Ok(DashboardBench {
        benchmark: "dashboard",
        answers,
        miners: MINERS,
        rounds: answers.div_ceil(MINERS),
        jsonl_mb,
        page_kb: page.len() as f64 / 1024.0,
        read_ms: ms(read),
        first_page_ms: ms(first),
        page_p50_ms: ms(percentile(&mut times, 0.5)),
        page_max_ms: ms(max),
        loads,
        first_over_read: first.as_secs_f64() / read.as_secs_f64().max(1e-9),
    })
}
