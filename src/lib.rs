//! agentao: an autonomous software-engineering marketplace on a Bittensor subnet (netuid 62).
//!
//! # Layout
//! - [`config`]: settings resolved once (defaults < `.env` < environment < flags) and the
//!   documented environment variables.
//! - [`sandbox`]: the Docker engine via bollard: images (the offline base image), containers
//!   with limits, exec, copy, reaping. Knows nothing of tasks or subnets.
//! - [`tasks`]: the task model (SWE-bench fields plus ours), PyPI sources, environment images,
//!   the bug forge and the SQLite task store.
//! - [`prompts`]: the prompt templates of `prompts/`, compiled in.
//! - [`pyenv`]: host-side Python virtualenvs in the cache (model server, SDK for benchmarks).
//! - [`eval`]: patch → verdict in a fresh sandbox; resumable batch runs and reports.
//! - [`jsonl`]: the one JSON Lines reader (tasks, predictions).
//! - [`llm`]: model aliases and prices; the OpenAI-compatible client and judge.
//! - [`telemetry`]: logging (pretty or JSON) and opt-in telemetry.
//! - [`cli`]: the command line edge; the only place that turns errors into exit codes.
//!
//! Dependencies point one way: `cli` → (`neurons`) → (`eval`, `agent`, `tasks`) → (`sandbox`,
//! `llm`) → `config` values passed in. Nothing low imports anything high.

pub mod agent;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod eval;
pub mod forge;
pub mod jsonl;
pub mod llm;
pub mod neurons;
pub mod prompts;
pub mod pytest;
pub mod python;
pub mod sandbox;
pub mod subnet;
pub mod tasks;
pub mod telemetry;
