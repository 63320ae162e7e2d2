//! The per-environment baseline: which tests exist, which pass reliably (two runs; tests whose
//! result differs are flaky and excluded), and which tests execute each line of the package
//! (coverage.py with one context per test, read straight from its SQLite data file).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::pytest::{PytestRun, TestResult, TestStatus, run_pytest};
use crate::sandbox::{Sandbox, SandboxError};

/// Where a baseline's coverage data goes (the forge's sandboxes keep `/tmp` on the
/// container's own file system, so the host can read it back).
const COVERAGE_FILE: &str = "/tmp/agentao-coverage.db";

/// Why a baseline could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("the test suite did not finish within {0:?}")]
    SuiteTooSlow(Duration),
    #[error("no test passes in this environment ({collected} collected)")]
    NothingPasses { collected: usize },
    #[error("pytest collected no tests: {0}")]
    NoTests(String),
    #[error("coverage data: {0}")]
    Coverage(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// Which tests execute which lines.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    /// Context names (test node ids), by context index.
    tests: Vec<String>,
    /// Per file (relative to `/repo`): (context index, line bitmap) pairs.
    files: HashMap<String, Vec<(usize, Vec<u8>)>>,
}

impl Coverage {
    /// Reads a coverage.py SQLite data file whose paths lie under `root`.
    pub fn from_sqlite(path: &Path, root: &str) -> Result<Coverage, BaselineError> {
        let err = |e: rusqlite::Error| BaselineError::Coverage(e.to_string());
        let conn =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(err)?;
        let mut ctx_index = HashMap::new();
        let mut tests = Vec::new();
        let mut stmt = conn
            .prepare("SELECT id, context FROM context")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(err)?;
        for row in rows {
            let (id, name) = row.map_err(err)?;
            // The empty context is import time, not a test.
            if !name.is_empty() {
                ctx_index.insert(id, tests.len());
                tests.push(name);
            }
        }
        let mut files: HashMap<String, Vec<(usize, Vec<u8>)>> = HashMap::new();
        let mut stmt = conn
            .prepare(
                "SELECT file.path, line_bits.context_id, line_bits.numbits \
                 FROM line_bits JOIN file ON file.id = line_bits.file_id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(err)?;
        let prefix = format!("{}/", root.trim_end_matches('/'));
        for row in rows {
            let (path, ctx, bits) = row.map_err(err)?;
            let (Some(rel), Some(&idx)) = (path.strip_prefix(&prefix), ctx_index.get(&ctx)) else {
                continue;
            };
            files.entry(rel.to_owned()).or_default().push((idx, bits));
        }
        Ok(Coverage { tests, files })
    }

    /// Files with any line executed by a test.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Node ids of the tests that execute any of the lines `first..=last` of `file`.
    pub fn tests_covering(&self, file: &str, first: u32, last: u32) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for (idx, bits) in self.files.get(file).map(Vec::as_slice).unwrap_or(&[]) {
            if (first..=last).any(|line| bit(bits, line)) {
                out.insert(self.tests[*idx].as_str());
            }
        }
        out
    }
}

impl Coverage {
    /// Per line of `file`, the node ids of the tests that executed it.
    pub fn tests_by_line(&self, file: &str) -> BTreeMap<u32, Vec<&str>> {
        let mut out: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for (idx, bits) in self.files.get(file).map(Vec::as_slice).unwrap_or(&[]) {
            for (byte, b) in bits.iter().enumerate() {
                for k in 0..8u32 {
                    if b & (1 << k) != 0 {
                        out.entry(byte as u32 * 8 + k)
                            .or_default()
                            .push(self.tests[*idx].as_str());
                    }
                }
            }
        }
        out
    }
}

/// coverage.py's numbits: bit `n % 8` of byte `n / 8` is set when line `n` ran.
fn bit(bits: &[u8], line: u32) -> bool {
    let byte = (line / 8) as usize;
    byte < bits.len() && bits[byte] & (1 << (line % 8)) != 0
}

/// What a package's suite does in its clean environment.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// `git rev-parse HEAD` of `/repo` (the clean commit).
    pub base_commit: String,
    /// Where the tests are (arguments to pytest).
    pub locations: Vec<String>,
    /// Every collected node id.
    pub collected: Vec<String>,
    /// Node ids that passed in both runs.
    pub passing: BTreeSet<String>,
    /// Node ids whose status differed between the runs.
    pub flaky: BTreeSet<String>,
    /// Per-test coverage, if the coverage run worked.
    pub coverage: Option<Coverage>,
    /// Seconds the plain run took.
    pub suite_seconds: f64,
    /// CPU seconds the container used (both runs and collection).
    pub cpu_seconds: f64,
}

/// Takes the baseline inside `sandbox` (a fresh container of the package's environment).
pub async fn take_baseline(
    sandbox: &Sandbox,
    locations: &[String],
    suite_timeout: Duration,
    scratch: &Path,
) -> Result<Baseline, BaselineError> {
    let head = sandbox
        .exec(&crate::sandbox::ExecRequest::new([
            "git",
            "-C",
            "/repo",
            "rev-parse",
            "HEAD",
        ]))
        .await?;
    let base_commit = head.stdout.trim().to_owned();

    let collected = collect(sandbox, locations).await?;
    if collected.is_empty() {
        return Err(BaselineError::NoTests("nothing collected".into()));
    }

    let cov_run = run_suite(sandbox, locations, suite_timeout, true).await?;
    let t = Instant::now();
    let plain = run_suite(sandbox, locations, suite_timeout, false).await?;
    let suite_seconds = t.elapsed().as_secs_f64();

    let mut passing = BTreeSet::new();
    let mut flaky = BTreeSet::new();
    for id in &collected {
        let a = cov_run.get(id).map_or(TestStatus::Missing, |r| r.status);
        let b = plain.get(id).map_or(TestStatus::Missing, |r| r.status);
        if a != b {
            flaky.insert(id.clone());
        } else if a.passed() {
            passing.insert(id.clone());
        }
    }
    if passing.is_empty() {
        return Err(BaselineError::NothingPasses {
            collected: collected.len(),
        });
    }
    let coverage = match sandbox.read_file(COVERAGE_FILE, 512 << 20).await {
        Ok(bytes) => {
            let path = scratch.join("coverage.db");
            std::fs::write(&path, bytes).map_err(|e| SandboxError::Io {
                context: path.display().to_string(),
                source: e,
            })?;
            match Coverage::from_sqlite(&path, "/repo") {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("coverage unreadable, tests will be chosen by whole suite: {e}");
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!("no coverage data ({e}); tests will be chosen by whole suite");
            None
        }
    };
    let cpu_seconds = sandbox.cpu_seconds().await.unwrap_or(0.0);
    Ok(Baseline {
        base_commit,
        locations: locations.to_vec(),
        collected,
        passing,
        flaky,
        coverage,
        suite_seconds,
        cpu_seconds,
    })
}

async fn collect(sandbox: &Sandbox, locations: &[String]) -> Result<Vec<String>, BaselineError> {
    let timeout = Duration::from_secs(300);
    let mut run = PytestRun::new(locations.to_vec(), timeout);
    run.collect_only = true;
    run.continue_on_collection_errors = true;
    let records = run_pytest(sandbox, &run)
        .await?
        .ok_or(BaselineError::SuiteTooSlow(timeout))?;
    if records.items.is_empty() {
        let why = records
            .collect_errors
            .first()
            .map(|(id, m)| format!("{id}: {}", m.lines().last().unwrap_or("")))
            .unwrap_or_else(|| "nothing collected".into());
        return Err(BaselineError::NoTests(why));
    }
    Ok(records.items)
}

async fn run_suite(
    sandbox: &Sandbox,
    locations: &[String],
    timeout: Duration,
    with_coverage: bool,
) -> Result<BTreeMap<String, TestResult>, BaselineError> {
    let mut run = PytestRun::new(locations.to_vec(), timeout);
    run.continue_on_collection_errors = true;
    run.output_cap = 16 << 10;
    if with_coverage {
        run.coverage_file = Some(COVERAGE_FILE.into());
    }
    let records = run_pytest(sandbox, &run)
        .await?
        .ok_or(BaselineError::SuiteTooSlow(timeout))?;
    Ok(records.results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbits_decode_like_coverage_py() {
        // coverage.numbits.nums_to_numbits([1, 2, 9]) == b'\x06\x02'
        let bits = [0x06u8, 0x02];
        assert!(bit(&bits, 1) && bit(&bits, 2) && bit(&bits, 9));
        let cov = Coverage {
            tests: vec!["t::a".into(), "t::b".into()],
            files: HashMap::from([("p.py".into(), vec![(0, bits.to_vec()), (1, vec![0x04])])]),
        };
        let by_line = cov.tests_by_line("p.py");
        assert_eq!(by_line[&1], vec!["t::a"]);
        assert_eq!(by_line[&2], vec!["t::a", "t::b"]);
        assert_eq!(by_line[&9], vec!["t::a"]);
        assert_eq!(by_line.len(), 3);
        assert!(!bit(&bits, 3) && !bit(&bits, 8) && !bit(&bits, 100));
    }
}
