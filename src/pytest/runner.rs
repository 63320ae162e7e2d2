//! The trusted runner: the argv, user, environment and harness files of one pytest run, the
//! per-run signing key, and [`run_pytest`], which runs it in a sandbox and reads the signed
//! records back (see the module doc of [`crate::pytest`] for what this guarantees).

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::records::{RecordReader, RunRecords};
use crate::sandbox::{ExecRequest, ExecStatus, OutputStream, Sandbox, SandboxError};

/// `uid:gid` the tests run as: it owns nothing on the image.
pub const TEST_USER: &str = "1000:1000";
/// Root-owned folder holding the bootstrap and the plugins (uploads go to the container's
/// own file system: the engine's copy API cannot reach the tmpfs at `/tmp`).
pub const HARNESS_DIR: &str = "/agentao/h";
/// The environment's interpreter, by absolute path.
pub const PYTHON: &str = "/opt/agentao/venv/bin/python";

const BOOTSTRAP: &str = "import sys\nsys.path.insert(0, sys.argv.pop(1))\nimport pytest\nsys.exit(pytest.main(sys.argv[1:]))\n";
const REPORT_PLUGIN: &str = include_str!("agentao_report.py");
const COV_PLUGIN: &str = include_str!("agentao_cov.py");
pub(super) const RECORD_PREFIX: &[u8] = b"AGENTAO1 ";
/// Longest record line accepted; longer lines are dropped (and counted if they claim to be
/// records).
pub(super) const MAX_LINE: usize = 256 * 1024;
/// More records than this is an anomaly, not more memory.
pub(super) const MAX_RECORDS: u64 = 2_000_000;
/// Longest node id kept (longer ones are an anomaly).
pub(super) const MAX_ID: usize = 4096;
/// Most tests followed in one run.
pub(super) const MAX_TESTS: usize = 200_000;
/// `/tmp` with less free space than this at the end of a run means the run hit its disk limit.
pub const DISK_FULL_BYTES: i64 = 1 << 20;

/// pytest options of every run: node ids relative to `/repo`, the project's `addopts`
/// ignored, no cache, no random order, one line per failure (`file:line: message`). Longer
/// tracebacks cost seconds per failure on some suites: 33 failing UTS #46 tests of idna
/// took 98 s with `--tb=short` and 8 s with `--tb=line`, so a wrong patch failing thousands
/// of widened PASS_TO_PASS tests ran out of time instead of being judged.
pub const PYTEST_ARGS: &[&str] = &[
    "-p",
    "agentao_report",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:randomly",
    "--rootdir=/repo",
    "-o",
    "addopts=",
    "-q",
    "--tb=line",
];

/// One pytest run.
#[derive(Debug, Clone)]
pub struct PytestRun {
    /// Node ids or locations to run.
    pub targets: Vec<String>,
    /// Killed after this long.
    pub timeout: Duration,
    /// `--collect-only`: report the items instead of running them.
    pub collect_only: bool,
    /// Keep going past collection errors.
    pub continue_on_collection_errors: bool,
    /// Record per-test coverage into this file (inside the sandbox).
    pub coverage_file: Option<String>,
    /// A unified diff whose added lines the audit hook watches.
    pub added_diff: Option<String>,
    /// Bytes of output kept for the log.
    pub output_cap: usize,
}

impl PytestRun {
    pub fn new(targets: Vec<String>, timeout: Duration) -> PytestRun {
        PytestRun {
            targets,
            timeout,
            collect_only: false,
            continue_on_collection_errors: false,
            coverage_file: None,
            added_diff: None,
            output_cap: 64 << 10,
        }
    }

    /// Files to upload under `/` before the run (`(path, bytes, mode)`): the harness,
    /// root-owned and read-only to the test user.
    pub fn files(&self) -> Vec<(String, Vec<u8>, u32)> {
        let h = HARNESS_DIR.trim_start_matches('/');
        vec![
            (format!("{h}/bootstrap.py"), BOOTSTRAP.into(), 0o644),
            (
                format!("{h}/agentao_report.py"),
                REPORT_PLUGIN.into(),
                0o644,
            ),
            (format!("{h}/agentao_cov.py"), COV_PLUGIN.into(), 0o644),
        ]
    }

    /// The exec request (run as [`TEST_USER`] in `/repo`), signing with `key`.
    pub fn request(&self, key: &RunKey) -> ExecRequest {
        let mut argv: Vec<String> = vec![
            PYTHON.into(),
            "-I".into(),
            "-B".into(),
            format!("{HARNESS_DIR}/bootstrap.py"),
            HARNESS_DIR.into(),
        ];
        argv.extend(PYTEST_ARGS.iter().map(|s| s.to_string()));
        if self.collect_only {
            argv.push("--collect-only".into());
        }
        if self.continue_on_collection_errors {
            argv.push("--continue-on-collection-errors".into());
        }
        let mut req = ExecRequest::new(Vec::<String>::new())
            .user(TEST_USER)
            .workdir("/repo")
            .env("HOME=/tmp")
            .env("LANG=C.UTF-8")
            .env("AGENTAO_KEY_STDIN=1")
            .stdin(key.hex.clone().into_bytes())
            .timeout(self.timeout)
            .output_cap(self.output_cap);
        if let Some(file) = &self.coverage_file {
            argv.extend(["-p".into(), "agentao_cov".into()]);
            req = req.env(format!("AGENTAO_COV_FILE={file}"));
        }
        if let Some(diff) = &self.added_diff {
            req = req.env(format!("AGENTAO_ADDED_FILE={diff}"));
        }
        argv.extend(self.targets.iter().cloned());
        req.cmd = argv;
        req
    }
}

/// The per-run secret the records are signed with.
#[derive(Clone)]
pub struct RunKey {
    hex: String,
}

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunKey(..)")
    }
}

impl RunKey {
    /// 256 random bits.
    pub fn random() -> RunKey {
        let mut bytes = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        RunKey {
            hex: hex::encode(bytes),
        }
    }

    pub(super) fn mac(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(self.hex.as_bytes(), message)
    }
}

/// HMAC-SHA256 (RFC 2104).
pub(super) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Runs pytest in `sandbox` through the trusted runner: uploads the harness, hands the key,
/// reads the signed records. A run that timed out is `None`.
pub async fn run_pytest(
    sandbox: &Sandbox,
    run: &PytestRun,
) -> Result<Option<RunRecords>, SandboxError> {
    sandbox.write_files("/", &run.files()).await?;
    let key = RunKey::random();
    let mut reader = RecordReader::new(key.clone());
    let out = sandbox
        .exec_with(
            &run.request(&key)
                .timeout(run.timeout + Duration::from_secs(30)),
            |stream, bytes| {
                if stream == OutputStream::Stdout {
                    reader.feed(bytes);
                }
            },
        )
        .await?;
    let records = reader.finish();
    if matches!(
        out.status,
        ExecStatus::TimedOut | ExecStatus::OutOfMemory | ExecStatus::Exited(124)
    ) {
        return Ok(None);
    }
    if !records.started {
        return Err(SandboxError::Tool {
            tool: "pytest".into(),
            reason: out
                .stderr
                .lines()
                .chain(out.stdout.lines())
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | "),
        });
    }
    Ok(Some(records))
}
