//! agentao: an autonomous software-engineering marketplace on a Bittensor subnet (netuid 62).
//!
//! # Layout
//! From the top of the dependency line to the bottom:
//! - [`cli`]: the command line edge: clap, the composition root, the one printer, the only
//!   place that turns errors into exit codes (and the only user of `anyhow`).
//! - [`neurons`]: the miner, the validator, the local round and the scoring rules.
//! - [`github`]: closed GitHub issues with their merged fixes → validated tasks (octocrab;
//!   the checkout through [`git`], the environment through [`forge`]).
//! - [`materialize`]: a task description from another machine → a task the miner's agent
//!   runs (sdist or git checkout, environment image, workspace), cached by hash.
//! - [`forge`]: PyPI package → validated coding tasks (baseline, mutations, validation, the
//!   gold check through [`eval`]).
//! - [`agent`]: the miner's SWE agent in a sandbox.
//! - [`eval`]: patch → verdict in a fresh sandbox; resumable batch runs and reports.
//! - [`dataset`]: (problem, solution, score) records, Parquet export, the Hub push.
//! - [`subnet`]: the Bittensor wire protocol and chains; knows nothing of Docker or tasks.
//! - [`pytest`]: the one trusted way pytest runs (signed records), for the forge and eval.
//! - [`cerebro`]: will an agent resolve a task: features, an item-response model trained in
//!   Rust on published agents' outcomes, cross-validation, forecasts.
//! - [`tasks`]: the task model and the SQLite task store.
//! - [`python`]: host-side Python: the index client, sdists, wheelhouses, venvs, PEP 440/508.
//! - [`sandbox`]: the Docker engine via bollard: images, containers with limits, exec, copy,
//!   reaping. Knows nothing of tasks or subnets.
//! - [`llm`]: model aliases and prices; the OpenAI-compatible client, the judge, the embedded
//!   model server.
//! - [`prompts`]: the prompt templates of `prompts/`, compiled in.
//! - [`config`]: settings resolved once (defaults < `.env` < environment < flags), limits,
//!   the directory layout ([`config::Paths`]) and the documented environment variables.
//! - [`jsonl`]: the one JSON Lines reader (tasks, predictions).
//! - [`git`]: git2: bare mirrors in the cache, checkouts of one commit, branches pushed.
//! - [`telemetry`]: logging (pretty or JSON) and opt-in PostHog telemetry (posthog-rs).
//! - [`dashboard`]: the validator's read-only HTML page over the data directory (axum).
//!
//! Dependencies point one way: `cli` → `neurons` → {`github`, `materialize`} → {`forge`,
//! `agent`, `eval`, `dataset`, `subnet`} → {`pytest`, `tasks`, `python`, `sandbox`, `llm`} →
//! {`prompts`, `config`, `jsonl`}; `tests/it/architecture.rs` holds the table and fails on any
//! other import.

pub mod agent;
pub mod cerebro;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod dataset;
pub mod eval;
pub mod forge;
pub mod git;
pub mod github;
pub mod jsonl;
pub mod likeness;
pub mod llm;
pub mod materialize;
pub mod neurons;
pub mod prompts;
pub mod pytest;
pub mod python;
pub mod sandbox;
pub mod subnet;
pub mod tasks;
pub mod telemetry;
