//! The subnet's roles: the miner (`miner`: answer a task with the agent), the validator
//! (`validator`: send a task, evaluate, score, moving averages, weights, dataset), the local
//! subnet round that runs both on one machine (`local`), the scoring rules (`scoring`), and
//! Cerebro's forecasts: the miner's `Forecast` answer and the validator's Brier book
//! (`forecast`), kept apart from the coding score, which kinds of task go to remote miners
//! (`remote`), and what running unattended takes
//! (`lifecycle`: the retry policy of chain calls, background work stopped by a deadline).
//! `miner::run` and `validator::run` take a `CancellationToken`; the CLI cancels it on SIGINT
//! or SIGTERM.
//!
//! Decides what the edge only wires: uses `materialize/`, `forge/`, `tasks/` (store),
//! `agent/`, `eval/`, `dataset/`, `subnet/`, `llm/`, `cerebro/`, `sandbox/` and `telemetry/`
//! (the events it sends: `events`). Must not touch the command line (`cli/`).

pub mod agents;
pub mod events;
pub mod forecast;
pub mod lifecycle;
pub mod local;
pub mod miner;
pub mod remote;
pub mod scoring;
pub mod validator;
