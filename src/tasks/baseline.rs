//! The per-environment baseline: which tests exist, which pass reliably (two runs; tests whose
//! result differs are flaky and excluded), and which tests execute each line of the package
//! (coverage.py with one context per test, read straight from its SQLite data file).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::eval::{TestStatus, junit_key, parse_junit};
use crate::sandbox::{ExecRequest, ExecStatus, Sandbox, SandboxError};

/// `timeout -k GRACE SECS python -m pytest --junitxml=JUNIT` plus [`PYTEST_ARGS`]: the head of
/// every forge pytest run (the test selection follows).
pub fn pytest_argv(timeout: Duration, grace_secs: u32, junit: &str) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "timeout".into(),
        "-k".into(),
        grace_secs.to_string(),
        timeout.as_secs().max(1).to_string(),
        "python".into(),
        "-m".into(),
        "pytest".into(),
        format!("--junitxml={junit}"),
    ];
    argv.extend(PYTEST_ARGS.iter().map(|s| s.to_string()));
    argv
}

/// pytest options shared by every forge run (and mirrored by `eval/evaluate.sh`): node ids
/// relative to `/repo`, the project's `addopts` ignored, no random ordering, JUnit xunit1.
pub const PYTEST_ARGS: &[&str] = &[
    "-p",
    "no:cacheprovider",
    "-p",
    "no:randomly",
    "--rootdir=/repo",
    "-o",
    "addopts=",
    "-q",
    "--tb=short",
    "-o",
    "junit_family=xunit1",
];

const WORK: &str = "/tmp/agentao";
const COV_PLUGIN: &str = include_str!("agentao_cov.py");

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
    sandbox
        .write_files(
            "/tmp",
            &[("agentao/agentao_cov.py", COV_PLUGIN.as_bytes(), 0o644)],
        )
        .await?;
    let head = sandbox
        .exec(&ExecRequest::new([
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
    let keys: HashMap<String, &String> = collected.iter().map(|id| (junit_key(id), id)).collect();

    let cov_run = run_suite(sandbox, locations, suite_timeout, "run1.xml", true).await?;
    let t = Instant::now();
    let plain = run_suite(sandbox, locations, suite_timeout, "run2.xml", false).await?;
    let suite_seconds = t.elapsed().as_secs_f64();

    let mut passing = BTreeSet::new();
    let mut flaky = BTreeSet::new();
    for (key, id) in &keys {
        let a = cov_run.get(key).copied().unwrap_or(TestStatus::Missing);
        let b = plain.get(key).copied().unwrap_or(TestStatus::Missing);
        if a != b {
            flaky.insert((*id).clone());
        } else if a.passed() {
            passing.insert((*id).clone());
        }
    }
    if passing.is_empty() {
        return Err(BaselineError::NothingPasses {
            collected: collected.len(),
        });
    }
    let coverage = match sandbox
        .read_file(&format!("{WORK}/coverage.db"), 512 << 20)
        .await
    {
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
    let mut script =
        String::from("python -m pytest --collect-only --continue-on-collection-errors");
    for a in PYTEST_ARGS {
        script.push(' ');
        script.push_str(&shell_quote(a));
    }
    for l in locations {
        script.push(' ');
        script.push_str(&shell_quote(l));
    }
    script.push_str(&format!(" > {WORK}/collect.txt 2>&1; echo exit=$?"));
    let out = sandbox
        .exec(
            &ExecRequest::shell(script)
                .workdir("/repo")
                .timeout(Duration::from_secs(300)),
        )
        .await?;
    if out.status == ExecStatus::TimedOut {
        return Err(BaselineError::SuiteTooSlow(Duration::from_secs(300)));
    }
    let text = sandbox
        .read_file(&format!("{WORK}/collect.txt"), 64 << 20)
        .await?;
    let text = String::from_utf8_lossy(&text);
    let ids: Vec<String> = text
        .lines()
        .filter(|l| l.contains("::") && !l.starts_with(' ') && !l.contains(" - "))
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        return Err(BaselineError::NoTests(tail.join(" | ")));
    }
    Ok(ids)
}

async fn run_suite(
    sandbox: &Sandbox,
    locations: &[String],
    timeout: Duration,
    junit: &str,
    with_coverage: bool,
) -> Result<BTreeMap<String, TestStatus>, BaselineError> {
    let mut argv = pytest_argv(timeout, 5, &format!("{WORK}/{junit}"));
    argv.push("--continue-on-collection-errors".into());
    let mut req = ExecRequest::new(Vec::<String>::new());
    if with_coverage {
        argv.extend(["-p".into(), "agentao_cov".into()]);
        req = req
            .env(format!("PYTHONPATH={WORK}"))
            .env(format!("AGENTAO_COV_FILE={WORK}/coverage.db"));
    }
    argv.extend(locations.iter().cloned());
    req.cmd = argv;
    let out = sandbox
        .exec(
            &req.workdir("/repo")
                .timeout(timeout + Duration::from_secs(30))
                .output_cap(16 << 10),
        )
        .await?;
    if matches!(out.status, ExecStatus::TimedOut | ExecStatus::Exited(124)) {
        return Err(BaselineError::SuiteTooSlow(timeout));
    }
    let xml = match sandbox
        .read_file(&format!("{WORK}/{junit}"), 256 << 20)
        .await
    {
        Ok(x) => x,
        Err(SandboxError::BadPath(_)) => {
            return Err(BaselineError::NoTests(
                out.stdout
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | "),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    parse_junit(&String::from_utf8_lossy(&xml)).map_err(|e| {
        BaselineError::Sandbox(SandboxError::Tool {
            tool: "pytest".into(),
            reason: e.to_string(),
        })
    })
}

/// Single-quotes a word for `sh`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbits_decode_like_coverage_py() {
        // coverage.numbits.nums_to_numbits([1, 2, 9]) == b'\x06\x02'
        let bits = [0x06u8, 0x02];
        assert!(bit(&bits, 1) && bit(&bits, 2) && bit(&bits, 9));
        assert!(!bit(&bits, 3) && !bit(&bits, 8) && !bit(&bits, 100));
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("tests/a.py::t"), "tests/a.py::t");
        assert_eq!(shell_quote("t[a b]"), "'t[a b]'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
