//! Evaluation: a patch in, a trustworthy verdict out.
//!
//! Owns patch checking (`patch.rs`: the text; `policy.rs`: what applying changed;
//! `tamper.rs`: what the added code reaches for), the one trusted way to run pytest
//! (`pytest_run.rs`, with its plugin `agentao_report.py`), test statuses (`results.rs`), one
//! evaluation in a fresh sandbox (`harness.rs`) and resumable batch runs with
//! SWE-bench-shaped reports (`run.rs`).
//! Uses `sandbox/` and the task model; knows nothing of miners, scores or the subnet.

pub mod adversarial;
pub mod harness;
pub mod patch;
pub mod policy;
pub mod pytest_run;
pub mod results;
pub mod run;
pub mod tamper;

pub use harness::{
    ApplyMethod, EvalConfig, HARNESS_VERSION, Outcome, Timings, Verdict, evaluate, verdict_key,
};
pub use patch::{PatchError, PatchSummary, check_patch};
pub use results::{TestResult, TestStatus};
pub use run::{Prediction, Report, RunError, read_predictions, run_batch};
