//! Evaluation: a patch in, a trustworthy verdict out.
//!
//! Owns patch checking (`patch.rs`: the text; `policy.rs`: what applying changed;
//! `tamper.rs`: what the added code reaches for), one evaluation in a fresh sandbox
//! (`harness.rs`, `apply.sh`; PASS_TO_PASS widened to what the change touches in
//! `widen.rs`), resumable batch runs with SWE-bench-shaped reports (`run.rs`)
//! and the corpus of hostile patches (`adversarial/`).
//! Uses `sandbox/`, `pytest/` (the one trusted way tests run) and the task model; knows
//! nothing of the forge, miners, scores or the subnet.

pub mod adversarial;
pub mod harness;
mod markers;
pub mod patch;
pub mod policy;
pub mod reading;
pub mod run;
pub mod tamper;
pub mod widen;

pub use crate::pytest::{TestResult, TestStatus};
pub use harness::{
    ApplyMethod, EvalConfig, HARNESS_VERSION, Outcome, Timings, Verdict, evaluate, sandbox_spec,
    verdict_key, warm,
};
pub use patch::{PatchError, PatchSummary, check_patch};
pub use run::{
    Prediction, REPORT_SCHEMA_VERSION, Report, RunError, check_inputs, read_predictions, run_batch,
};
pub use widen::P2pSelection;
