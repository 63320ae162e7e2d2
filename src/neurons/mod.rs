//! The subnet's roles: the miner (`miner`: answer a task with the agent), the validator
//! (`validator`: send a task, evaluate, score, moving averages, weights, dataset), the local
//! subnet round that runs both on one machine (`local`), and the scoring rules (`scoring`).
//!
//! Uses `tasks/` (forge, store), `agent/`, `eval/`, `dataset/`, `subnet/` and `sandbox/`.

pub mod local;
pub mod miner;
pub mod scoring;
pub mod validator;
