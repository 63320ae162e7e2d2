//! `agentao bench …`: benchmarks printing JSON, each against a baseline measured in the same
//! run, so figures are ratios that do not depend on the machine.

use std::time::Duration;

use clap::Subcommand;

mod adversarial;
mod axon;
mod cerebro;
mod cluster;
mod dashboard;
mod dataset;
mod eval;
mod forge;
mod llm;
mod materialize;
mod sandbox;
mod scale;
use serde::Serialize;

use crate::config::Settings;

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
    /// Disk per 100 stored tasks, a validator's peak memory over `answers` answers with the
    /// budget at 2, and the gold patches' flip rate over `replicas` fresh replicas.
    Scale {
        #[arg(long)]
        tasks: std::path::PathBuf,
        #[arg(long, default_value_t = 50)]
        answers: usize,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Sandboxes on a Docker Swarm vs the local engine, same machine, same run: the wall time
    /// of an `answers`-answer round at budget 2 through each, and evaluations per minute.
    Cluster {
        /// Tasks (JSON Lines with images).
        #[arg(long)]
        tasks: std::path::PathBuf,
        #[arg(long, default_value_t = 50)]
        answers: usize,
        /// Rounds of each (interleaved; the best of each is compared).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Make a single-node swarm on loopback for the run (and leave it) when the engine
        /// is in none.
        #[arg(long)]
        init_swarm: bool,
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
    /// The validator's dashboard page over N recorded answers (first load and later loads,
    /// over HTTP on loopback) against streaming the same records out of the store.
    Dashboard {
        #[arg(long, default_value_t = 10_000)]
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
    /// A miner's cold and warm materialisation of a release's task description against the
    /// validator's own environment build of it in the same run; bytes on the wire.
    Materialize {
        /// Packages (`name` or `name==version`).
        #[arg(long = "package", required = true)]
        packages: Vec<String>,
        /// Also write the JSON here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Training Cerebro on the shipped data vs fitting the ability-only head on the same
    /// outcomes in the same run; the model file's size.
    Cerebro {
        /// Rounds of each (interleaved; the best of each is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
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

pub async fn run(cmd: BenchCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Sandbox {
            iterations,
            image,
            out,
        } => {
            let image = image.unwrap_or_else(|| format!("{}:latest", crate::sandbox::BASE_REPO));
            let result = sandbox::bench_sandbox(settings, &image, iterations.max(1)).await?;
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
            let result =
                eval::bench_eval(settings, &tasks, iterations.max(1), batch.max(1)).await?;
            emit(&result, out)
        }
        BenchCmd::Scale {
            tasks,
            answers,
            replicas,
            out,
        } => {
            let tasks = crate::tasks::read_jsonl(&tasks)?;
            anyhow::ensure!(!tasks.is_empty(), "no tasks to measure");
            let result =
                scale::bench_scale(settings, &tasks, answers.max(1), replicas.max(1)).await?;
            emit(&result, out)
        }
        BenchCmd::Cluster {
            tasks,
            answers,
            rounds,
            init_swarm,
            out,
        } => {
            let tasks = crate::tasks::read_jsonl(&tasks)?;
            anyhow::ensure!(!tasks.is_empty(), "no tasks to evaluate");
            let result =
                cluster::bench_cluster(settings, &tasks, answers.max(1), rounds.max(1), init_swarm)
                    .await?;
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
            let result = axon::bench_axon(settings, requests.max(1), concurrency.max(1)).await?;
            emit(&result, out)
        }
        BenchCmd::Dataset { records, out } => {
            let result =
                tokio::task::spawn_blocking(move || dataset::bench_dataset(records.max(1)))
                    .await??;
            emit(&result, out)
        }
        BenchCmd::Dashboard { records, out } => {
            let result = dashboard::bench_dashboard(records.max(1)).await?;
            emit(&result, out)
        }
        BenchCmd::Llm {
            requests,
            max_tokens,
            out,
        } => {
            let result = llm::bench_llm(settings, requests.max(1), max_tokens.max(2)).await?;
            emit(&result, out)
        }
        BenchCmd::Materialize { packages, out } => {
            let result = materialize::bench_materialize(settings, &packages).await?;
            emit(&result, out)
        }
        BenchCmd::Cerebro { rounds, out } => {
            let result = tokio::task::spawn_blocking(move || cerebro::bench_cerebro(rounds.max(1)))
                .await??;
            emit(&result, out)
        }
        BenchCmd::Forge {
            packages,
            candidates,
            out,
        } => {
            let result = forge::bench_forge(settings, &packages, candidates.max(1)).await?;
            emit(&result, out)
        }
    }
}

fn emit(result: &impl Serialize, out: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(result)?;
    if let Some(path) = out {
        std::fs::write(&path, &json)?;
    }
    crate::cli::printer::data(format_args!("{json}"));
    Ok(())
}

pub(super) fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("agentao-bench-{}", crate::config::new_run_id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// The median (0 for none).
pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `q` quantile (nearest rank) of `xs`, sorting it in place.
pub(super) fn percentile(xs: &mut [Duration], q: f64) -> Duration {
    xs.sort();
    let idx = ((xs.len() as f64 - 1.0) * q).round() as usize;
    xs[idx.min(xs.len() - 1)]
}
