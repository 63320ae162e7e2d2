//! Running pytest the one way agentao trusts, for evaluations and the forge alike.
//!
//! - The tests run as an unprivileged user ([`TEST_USER`]) that cannot write `/repo`, the
//!   harness files or the test tools; what it can write (`/tmp`, `/var/tmp`) is a size-capped
//!   tmpfs, so a run cannot fill the host's disk.
//! - The interpreter is isolated (`python -I -B`: no current directory or script directory on
//!   `sys.path`, no `PYTHON*` variables, no user site), and pytest is the environment's, started
//!   by absolute path, so a `pytest.py` in the repository cannot stand in for it.
//! - Results come from our own plugin (`agentao_report.py`) as records signed with a per-run
//!   secret that the plugin reads from its stdin (then closed) before any code of the
//!   repository is imported: the secret is in no file, environment or command line. The host checks every signature and sequence number while the output
//!   streams ([`RecordReader`]), so printing, flooding, exiting early or rewriting a report
//!   file cannot make a failing test pass; a forged or missing record is an anomaly that counts
//!   against the run, never for it.
//!
//! What this does not cover: code that, once imported, subverts the interpreter itself
//! (finding the secret in memory, or rewriting pytest through a route the audit hook and the
//! integrity checks do not see) runs with the same rights as the reporter. The static tamper
//! scan (`eval/tamper.rs`) and the changed-path policy (`eval/policy.rs`) narrow that door; they do not
//! shut it.
//!
//! Owns the runner (`runner.rs`: argv, user, harness files, key, [`run_pytest`]), the record
//! reader (`records.rs`), test statuses (`results.rs`) and the two plugins
//! (`agentao_report.py`, `agentao_cov.py`). Uses `sandbox/` to exec; knows nothing of
//! tasks, patches, verdicts or the forge.

pub mod records;
pub mod results;
pub mod runner;

pub use records::{RecordReader, RunEnd, RunRecords};
pub use results::{TestResult, TestStatus};
pub use runner::{DISK_FULL_BYTES, HARNESS_DIR, PYTHON, PytestRun, RunKey, TEST_USER, run_pytest};
