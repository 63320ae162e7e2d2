//! Evaluation: a patch in, a trustworthy verdict out.
//!
//! Owns patch checking (`patch.rs`), JUnit parsing (`junit.rs`), one evaluation in a fresh
//! sandbox (`harness.rs`) and resumable batch runs with SWE-bench-shaped reports (`run.rs`).
//! Uses `sandbox/` and the task model; knows nothing of miners, scores or the subnet.

pub mod harness;
pub mod junit;
pub mod patch;
pub mod run;

pub use harness::{
    ApplyMethod, EvalConfig, HARNESS_VERSION, Outcome, Timings, Verdict, evaluate, verdict_key,
};
pub use junit::{TestResult, TestStatus, junit_key, parse_junit, parse_junit_details};
pub use patch::{PatchError, PatchSummary, check_patch};
pub use run::{Prediction, Report, RunError, read_predictions, run_batch};
