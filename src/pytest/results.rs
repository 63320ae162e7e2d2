//! Test results as the trusted runner (`runner.rs`) reports them: one status per pytest
//! node id, with what pytest said about a failure.

use serde::{Deserialize, Serialize};

/// The status of one test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TestStatus {
    #[default]
    Passed,
    Failed,
    Error,
    Skipped,
    /// Selected but absent from the report (collection error, crash, renamed test).
    Missing,
}

impl TestStatus {
    /// Only a pass counts as a pass.
    pub fn passed(self) -> bool {
        self == TestStatus::Passed
    }
}

/// One test's result with what pytest said about a failure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestResult {
    pub status: TestStatus,
    /// The crash line of the failure or error (e.g. `AssertionError: assert 1 == 2`).
    pub message: String,
    /// The start of the failure's text (pytest's one-line traceback: `file:line: message`).
    pub text: String,
    /// Seconds the test took (all phases).
    pub time: f64,
}
