//! `agentao bench …`: benchmarks printing JSON, each against a baseline measured in the same
//! run, so figures are ratios that do not depend on the machine.

use std::time::{Duration, Instant};

use clap::Subcommand;

mod adversarial;
use serde::Serialize;

use crate::config::Settings;
use crate::sandbox::{ExecRequest, Sandbox, SandboxSpec};

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// create+start+exec(true)+remove through agentao vs `docker run --rm IMAGE true`.
    Sandbox {
        /// Rounds of each (interleaved).
        #[arg(long, default_value_t = 15)]
        iterations: usize,
        /// Image (default: agentao/base:latest).
        #[arg(long)]
        image: Option<String>,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Evaluation of gold patches through agentao vs the same pytest command under
    /// `docker run --rm` on the same image; plus throughput with 1 and 2 workers.
    Eval {
        /// Tasks (JSON Lines with images), e.g. from `agentao tasks add`.
        #[arg(long)]
        tasks: std::path::PathBuf,
        /// Rounds per task.
        #[arg(long, default_value_t = 3)]
        iterations: usize,
        /// Evaluations per throughput measurement.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The hostile-patch corpus (every class of harness bypass, plus honest controls) against
    /// the first task it can aim at; every verdict checked, host disk space before and after.
    Adversarial {
        /// Tasks (JSON Lines with images).
        #[arg(long)]
        tasks: std::path::PathBuf,
        /// Evaluations at once.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Test timeout per evaluation, seconds.
        #[arg(long, default_value_t = 10)]
        test_timeout: u64,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Parquet export of N synthetic records: time and peak memory, against streaming the
    /// same records out of the store in the same run.
    Dataset {
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Signed requests per second our axon verifies and answers on loopback vs the Python
    /// SDK's axon, both loaded by the same load generator in a separate process.
    Axon {
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Decode speed of the embedded model (SmolLM2-135M) through agentao's model server
    /// (streamed chat completions over HTTP) vs the same llama.cpp build and model driven
    /// in-process by `llama_cpp.Llama`, same prompts, greedy, in the same run.
    Llm {
        /// Measured requests of each (after one warm-up).
        #[arg(long, default_value_t = 5)]
        requests: usize,
        /// Tokens asked for per request.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// The task forge with coverage-selected tests vs the whole suite per candidate: same
    /// packages, same candidates, same run. Reports validated tasks per CPU-minute and yield.
    Forge {
        /// Packages (`name` or `name==version`).
        #[arg(long = "package", required = true)]
        packages: Vec<String>,
        /// Candidates tried per package in each mode.
        #[arg(long, default_value_t = 8)]
        candidates: usize,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Serialize)]
struct DatasetBench {
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
struct ForgeBench {
    benchmark: &'static str,
    coverage: ForgeModeResult,
    whole_suite: ForgeModeResult,
    /// Coverage-selected tasks per CPU-minute / whole-suite tasks per CPU-minute.
    ratio: f64,
    note: &'static str,
}

#[derive(Debug, Serialize)]
struct SandboxBench {
    benchmark: &'static str,
    image: String,
    iterations: usize,
    agentao_median_ms: f64,
    agentao_p90_ms: f64,
    docker_cli_median_ms: f64,
    docker_cli_p90_ms: f64,
    /// agentao median / docker CLI median; below 1.0 means agentao is faster.
    ratio: f64,
}

pub async fn run(cmd: BenchCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Sandbox {
            iterations,
            image,
            out,
        } => {
            let image = image.unwrap_or_else(|| format!("{}:latest", crate::sandbox::BASE_REPO));
            let result = bench_sandbox(settings, &image, iterations.max(1)).await?;
            emit(&result, out)
        }
        BenchCmd::Eval {
            tasks,
            iterations,
            batch,
            out,
        } => {
            let tasks = crate::tasks::read_jsonl(&tasks)?;
            anyhow::ensure!(!tasks.is_empty(), "no tasks to benchmark");
            let result = bench_eval(settings, &tasks, iterations.max(1), batch.max(1)).await?;
            emit(&result, out)
        }
        BenchCmd::Adversarial {
            tasks,
            workers,
            test_timeout,
            out,
        } => {
            let tasks = crate::tasks::read_jsonl(&tasks)?;
            let result = adversarial::bench_adversarial(
                settings,
                &tasks,
                workers.max(1),
                Duration::from_secs(test_timeout.max(1)),
            )
            .await?;
            let wrong = result.wrong.len();
            emit(&result, out)?;
            anyhow::ensure!(wrong == 0, "{wrong} hostile patches got the wrong verdict");
            Ok(())
        }
        BenchCmd::Axon {
            requests,
            concurrency,
            out,
        } => {
            let result = bench_axon(settings, requests.max(1), concurrency.max(1)).await?;
            emit(&result, out)
        }
        BenchCmd::Dataset { records, out } => {
            let result =
                tokio::task::spawn_blocking(move || bench_dataset(records.max(1))).await??;
            emit(&result, out)
        }
        BenchCmd::Llm {
            requests,
            max_tokens,
            out,
        } => {
            let result = bench_llm(settings, requests.max(1), max_tokens.max(2)).await?;
            emit(&result, out)
        }
        BenchCmd::Forge {
            packages,
            candidates,
            out,
        } => {
            let result = bench_forge(settings, &packages, candidates.max(1)).await?;
            emit(&result, out)
        }
    }
}

#[derive(Debug, Serialize)]
struct AxonBench {
    benchmark: &'static str,
    requests: usize,
    concurrency: usize,
    agentao: super::subnet_cmd::LoadReport,
    python_sdk: super::subnet_cmd::LoadReport,
    /// agentao requests/s / Python SDK requests/s.
    ratio: f64,
}

/// The Python axon the benchmark measures against (bittensor 10.5.0).
const PYTHON_AXON: &str = r#"
import sys, time, typing
import bittensor as bt
import bittensor.utils.networking as net
net.get_external_ip = lambda: "127.0.0.1"
class CodingTask(bt.Synapse):
    required_hash_fields: typing.ClassVar[tuple[str, ...]] = (
        "repo", "problem_statement", "task_id", "version", "hints", "time_limit")
    repo: str = ""
    problem_statement: str = ""
    patch: typing.Optional[str] = ""
    task_id: str = ""
    version: str = ""
    hints: str = ""
    time_limit: float = 0.0
def forward(s: CodingTask) -> CodingTask:
    s.patch = "patch for " + s.repo
    return s
w = bt.Wallet(name="axon", hotkey="default", path=sys.argv[1])
ax = bt.Axon(wallet=w, port=int(sys.argv[2]), ip="127.0.0.1", external_ip="127.0.0.1")
ax.attach(forward_fn=forward)
ax.start()
time.sleep(3600)
"#;

async fn python_with_bittensor(settings: &Settings) -> anyhow::Result<std::path::PathBuf> {
    let dir = settings.paths().venv("bittensor");
    if !crate::python::venv::is_complete(&dir) {
        eprintln!("installing bittensor 10.5.0 into {}", dir.display());
    }
    let index = settings.pip_index_url.as_deref();
    Ok(crate::python::venv::ensure_venv(&dir, &["bittensor==10.5.0"], index).await?)
}

async fn run_load(
    wallets: &std::path::Path,
    port: u16,
    hotkey: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<super::subnet_cmd::LoadReport> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "subnet",
            "load",
            "--port",
            &port.to_string(),
            "--axon-hotkey",
            hotkey,
        ])
        .args([
            "--requests",
            &requests.to_string(),
            "--concurrency",
            &concurrency.to_string(),
        ])
        .arg("--wallets")
        .arg(wallets)
        .env("AGENTAO_LOG_FORMAT", "json")
        .kill_on_drop(true)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "load generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(text.lines().last().unwrap_or(""))?)
}

async fn bench_axon(
    settings: &Settings,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<AxonBench> {
    use crate::subnet::{Axon, AxonConfig, Metagraph, Neuron, Wallet};
    let python = python_with_bittensor(settings).await?;
    let dir = tempfile_dir()?;
    let loader = Wallet::new(&dir, "load", "default").create_hotkey()?;
    let axon_key = Wallet::new(&dir, "axon", "default").create_hotkey()?;

    // Ours, in this process; the load comes from another.
    let metagraph = Metagraph {
        netuid: settings.netuid,
        neurons: vec![Neuron {
            uid: 0,
            hotkey: loader.ss58(),
            coldkey: String::new(),
            stake: 1.0,
            ip: "127.0.0.1".into(),
            port: 0,
            validator_permit: true,
        }],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let cfg = AxonConfig {
        max_concurrent: concurrency.max(16),
        ..AxonConfig::default()
    };
    let server = Axon::new(axon_key.clone(), metagraph, cfg)
        .coding_task(|s| async move {
            let mut t = s.body;
            t.patch = Some(format!("patch for {}", t.repo));
            t
        })
        .serve(listener);
    let ours = run_load(&dir, port, &axon_key.ss58(), requests, concurrency).await;
    server.abort();
    let ours = ours?;

    // The Python SDK's axon with the same wallet.
    let py_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(&python)
        .args(["-c", PYTHON_AXON])
        .arg(&dir)
        .arg(py_port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while tokio::net::TcpStream::connect(("127.0.0.1", py_port))
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "the Python axon did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let theirs = run_load(&dir, py_port, &axon_key.ss58(), requests, concurrency).await;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let theirs = theirs?;
    Ok(AxonBench {
        benchmark: "axon",
        requests,
        concurrency,
        ratio: ours.requests_per_second / theirs.requests_per_second.max(1e-9),
        agentao: ours,
        python_sdk: theirs,
    })
}

/// One streamed completion, timed at the client: time to the first token (prompt
/// processing) and the rate of the tokens after it (decoding).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct StreamTiming {
    tokens: usize,
    ttft_s: f64,
    decode_s: f64,
    total_s: f64,
}

#[derive(Debug, Serialize)]
struct LlmSide {
    runs: Vec<StreamTiming>,
    /// Median over the runs of (tokens - 1) / decode seconds.
    decode_tokens_per_s: f64,
    /// Median time to the first token, in ms.
    ttft_ms: f64,
    /// Median of tokens / total seconds (prompt processing included).
    end_to_end_tokens_per_s: f64,
}

impl LlmSide {
    fn of(runs: Vec<StreamTiming>) -> LlmSide {
        let med = |mut xs: Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs.get(xs.len() / 2).copied().unwrap_or(0.0)
        };
        LlmSide {
            decode_tokens_per_s: med(runs
                .iter()
                .map(|r| (r.tokens.saturating_sub(1)) as f64 / r.decode_s.max(1e-9))
                .collect()),
            ttft_ms: med(runs.iter().map(|r| r.ttft_s * 1e3).collect()),
            end_to_end_tokens_per_s: med(runs
                .iter()
                .map(|r| r.tokens as f64 / r.total_s.max(1e-9))
                .collect()),
            runs,
        }
    }
}

#[derive(Debug, Serialize)]
struct LlmBench {
    benchmark: &'static str,
    model: &'static str,
    llama_cpp_python: String,
    variant: String,
    system_info: String,
    requests: usize,
    max_tokens: u32,
    /// agentao's embedded server: streamed chat completions over HTTP on loopback.
    served: LlmSide,
    /// Baseline: the same build and model in-process (`llama_cpp.Llama`), no server.
    in_process: LlmSide,
    /// served decode tokens/s / in-process decode tokens/s (1.0: serving costs nothing).
    ratio: f64,
    note: &'static str,
}

/// The in-process baseline: the prompts through `llama_cpp.Llama` as the server would run
/// them (chat template, greedy, streamed), timed the same way; the first is a warm-up.
const LLAMA_IN_PROCESS: &str = r#"
import json, sys, time
import llama_cpp
m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=8192, verbose=False)
max_tokens = int(sys.argv[2])
prompts = json.loads(sys.argv[3])
def once(p):
    t0 = time.perf_counter()
    first = last = None
    k = 0
    for ch in m.create_chat_completion(messages=[{"role": "user", "content": p}],
                                       max_tokens=max_tokens, temperature=0.0,
                                       repeat_penalty=1.1, stream=True):
        if ch["choices"][0]["delta"].get("content") is not None:
            now = time.perf_counter()
            k += 1
            first = first or now
            last = now
    end = time.perf_counter()
    first = first or end
    last = last or end
    return {"tokens": k, "ttft_s": first - t0, "decode_s": last - first, "total_s": end - t0}
once(prompts[0])
print(json.dumps([once(p) for p in prompts[1:]]))
"#;

/// One streamed chat completion from an OpenAI-compatible server, timed per token.
async fn streamed_completion(
    http: &reqwest::Client,
    base_url: &str,
    prompt: &str,
    max_tokens: u32,
) -> anyhow::Result<StreamTiming> {
    let body = serde_json::json!({
        "model": crate::llm::EMBEDDED_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        // The server's default, stated so both sides sample alike (greedy, same penalty).
        "repeat_penalty": 1.1,
        "stream": true,
    });
    let t0 = Instant::now();
    let mut resp = http
        .post(format!("{base_url}/chat/completions"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    let (mut first, mut last, mut tokens) = (None, None, 0usize);
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let now = Instant::now();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else {
                continue;
            };
            if v["choices"][0]["delta"]["content"].is_string() {
                tokens += 1;
                first.get_or_insert(now);
                last = Some(now);
            }
        }
    }
    let end = Instant::now();
    let (first, last) = (first.unwrap_or(end), last.unwrap_or(end));
    Ok(StreamTiming {
        tokens,
        ttft_s: (first - t0).as_secs_f64(),
        decode_s: (last - first).as_secs_f64(),
        total_s: (end - t0).as_secs_f64(),
    })
}

async fn bench_llm(
    settings: &Settings,
    requests: usize,
    max_tokens: u32,
) -> anyhow::Result<LlmBench> {
    use crate::llm::local::LocalModel;
    let local = LocalModel::new(&settings.cache_dir);
    if !local.is_installed() {
        eprintln!("installing the embedded model into {}", local.dir.display());
    }
    let build = local.install(settings.pip_index_url.as_deref()).await?;
    // Distinct prompts, so no request reuses the previous one's prompt cache.
    let prompts: Vec<String> = (0..=requests)
        .map(|i| {
            format!(
                "Request {i}. Write a Python function that splits a CSV line into fields, \
                 handling quoted fields, then explain it step by step."
            )
        })
        .collect();

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server = local.serve(port).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    streamed_completion(&http, &server.base_url, &prompts[0], max_tokens).await?;
    let mut served = Vec::new();
    for p in &prompts[1..] {
        served.push(streamed_completion(&http, &server.base_url, p, max_tokens).await?);
    }
    // The server is stopped before the baseline runs: they never share the CPU.
    drop(server);

    let out = tokio::process::Command::new(local.python())
        .args(["-c", LLAMA_IN_PROCESS])
        .arg(local.gguf())
        .arg(max_tokens.to_string())
        .arg(serde_json::to_string(&prompts)?)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "the in-process baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    let in_process: Vec<StreamTiming> = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(
        served.iter().chain(&in_process).all(|r| r.tokens >= 2),
        "a completion came back with fewer than 2 tokens: nothing to time"
    );
    let served = LlmSide::of(served);
    let in_process = LlmSide::of(in_process);
    Ok(LlmBench {
        benchmark: "llm",
        model: crate::llm::EMBEDDED_MODEL,
        llama_cpp_python: build.llama_cpp_python,
        variant: build.variant,
        system_info: build.system_info,
        requests,
        max_tokens,
        ratio: served.decode_tokens_per_s / in_process.decode_tokens_per_s.max(1e-9),
        served,
        in_process,
        note: "decode rate = tokens after the first / seconds from the first token to the last, \
               timed by the client of each; ttft is prompt processing plus the first token",
    })
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

fn bench_dataset(rows: u64) -> anyhow::Result<DatasetBench> {
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
        base.patch = format!(
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

async fn bench_forge(
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
            let (name, version) = super::tasks_cmd::parse_package_spec(p);
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

fn emit(result: &impl Serialize, out: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(result)?;
    if let Some(path) = out {
        std::fs::write(&path, &json)?;
    }
    println!("{json}");
    Ok(())
}

#[derive(Debug, Serialize)]
struct EvalBench {
    benchmark: &'static str,
    tasks: usize,
    iterations: usize,
    agentao_median_s: f64,
    docker_run_median_s: f64,
    /// agentao per evaluation / `docker run --rm` of the same test command. Target <= 1.15.
    overhead_ratio: f64,
    throughput_workers_1_per_min: f64,
    throughput_workers_2_per_min: f64,
}

async fn bench_eval(
    settings: &Settings,
    tasks: &[crate::tasks::Task],
    iterations: usize,
    batch: usize,
) -> anyhow::Result<EvalBench> {
    use crate::eval::{EvalConfig, Prediction, evaluate, run_batch};
    let engine = crate::cli::context::engine(settings).await?;
    let cfg = EvalConfig {
        limits: settings.limits.clone(),
        run_id: settings.run_id.clone(),
        ..EvalConfig::default()
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for task in tasks {
        for _ in 0..iterations {
            let t = Instant::now();
            let v = evaluate(&engine, task, &task.patch, &cfg).await;
            anyhow::ensure!(
                v.resolved,
                "gold patch of {} did not resolve: {:?}",
                task.instance_id,
                v.outcome
            );
            ours.push(t.elapsed());

            let t = Instant::now();
            let status = tokio::process::Command::new("docker")
                .args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "-w",
                    "/repo",
                    &task.image,
                ])
                .args([
                    "python",
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    "-q",
                    "--tb=short",
                ])
                .args(task.selected_tests())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await?;
            anyhow::ensure!(status.success(), "baseline pytest failed on {}", task.image);
            theirs.push(t.elapsed());
        }
    }
    let mut throughput = [0.0; 2];
    for (slot, workers) in [(0, 1), (1, 2)] {
        let dir = tempfile_dir()?;
        let (mut ts, mut ps) = (Vec::new(), Vec::new());
        for i in 0..batch {
            let mut t = tasks[i % tasks.len()].clone();
            t.instance_id = format!("{}#{i}", t.instance_id);
            ps.push(Prediction {
                instance_id: t.instance_id.clone(),
                model_name_or_path: "gold".into(),
                model_patch: Some(t.patch.clone()),
            });
            ts.push(t);
        }
        let t = Instant::now();
        run_batch(&engine, &ts, &ps, &dir, workers, &cfg, |_, _| {}).await?;
        throughput[slot] = batch as f64 / t.elapsed().as_secs_f64() * 60.0;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let om = percentile(&mut ours, 0.5);
    let tm = percentile(&mut theirs, 0.5);
    Ok(EvalBench {
        benchmark: "eval_overhead",
        tasks: tasks.len(),
        iterations,
        agentao_median_s: ms(om) / 1000.0,
        docker_run_median_s: ms(tm) / 1000.0,
        overhead_ratio: om.as_secs_f64() / tm.as_secs_f64(),
        throughput_workers_1_per_min: (throughput[0] * 100.0).round() / 100.0,
        throughput_workers_2_per_min: (throughput[1] * 100.0).round() / 100.0,
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("agentao-bench-{}", crate::config::new_run_id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn bench_sandbox(
    settings: &Settings,
    image: &str,
    iterations: usize,
) -> anyhow::Result<SandboxBench> {
    let engine = crate::cli::context::engine(settings).await?;
    let mut spec = SandboxSpec::new(image, settings.run_id.clone());
    spec.limits = settings.limits.clone();
    let mut ours = Vec::new();
    let mut cli = Vec::new();
    // One warm-up of each, not counted.
    for i in 0..=iterations {
        let t = Instant::now();
        let sandbox = Sandbox::start(&engine, &spec).await?;
        let out = sandbox
            .exec(&ExecRequest::new(["true"]).timeout(Duration::from_secs(30)))
            .await?;
        sandbox.remove().await?;
        anyhow::ensure!(out.success(), "`true` failed in the sandbox: {out:?}");
        let ours_t = t.elapsed();

        let t = Instant::now();
        let status = tokio::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", image, "true"])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "docker run failed: {status}");
        let cli_t = t.elapsed();
        if i > 0 {
            ours.push(ours_t);
            cli.push(cli_t);
        }
    }
    let (om, o90) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.9));
    let (cm, c90) = (percentile(&mut cli, 0.5), percentile(&mut cli, 0.9));
    Ok(SandboxBench {
        benchmark: "sandbox_roundtrip",
        image: image.to_owned(),
        iterations,
        agentao_median_ms: ms(om),
        agentao_p90_ms: ms(o90),
        docker_cli_median_ms: ms(cm),
        docker_cli_p90_ms: ms(c90),
        ratio: om.as_secs_f64() / cm.as_secs_f64(),
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// The `q` quantile (nearest rank) of `xs`, sorting it in place.
fn percentile(xs: &mut [Duration], q: f64) -> Duration {
    xs.sort();
    let idx = ((xs.len() as f64 - 1.0) * q).round() as usize;
    xs[idx.min(xs.len() - 1)]
}
