//! The subnet's roles: the miner (`miner`: answer a task with the agent), the validator
//! (`validator`: send a task, evaluate, score, moving averages, weights, dataset), the local
//! subnet round that runs both on one machine (`local`), and the scoring rules (`scoring`).
//!
//! Decides what the edge only wires: uses `forge/`, `tasks/` (store), `agent/`, `eval/`,
//! `dataset/`, `subnet/`, `llm/`, `sandbox/` and `telemetry/` (events, `events`). Must not touch the command line (`cli/`).

pub mod events;
pub mod local;
pub mod miner;
pub mod scoring;
pub mod validator;
