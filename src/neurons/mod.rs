//! The subnet's roles. For now the local round (`local`): what a validator does with one
//! task and one miner, on this machine, with the embedded defaults; and the scoring rules
//! (`scoring`). The networked validator and miner build on these.
//!
//! Uses `tasks/` (forge, store), `agent/`, `eval/`, `dataset/` and `sandbox/`.

pub mod local;
pub mod scoring;
