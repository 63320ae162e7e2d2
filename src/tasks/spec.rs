//! The portable task description: what a miner on another machine needs to rebuild a task's
//! starting point, and nothing of its answer. Versioned (`spec_version`) and hashed: the hash
//! is SHA-256 over the canonical JSON of the whole description (keys sorted, no spaces) with
//! its `hash` field removed, so unknown fields a newer sender adds are covered too.
//!
//! A description comes from a stranger. [`TaskSpec::from_wire`] is the only way in: it refuses
//! an unknown version, a wrong hash, and names that are not plain index names and versions
//! (a direct URL, a path, a flag).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Task;

/// The description version this build reads and writes.
pub const SPEC_VERSION: u32 = 1;
/// Longest problem statement a description may carry.
pub const MAX_STATEMENT_BYTES: usize = 64 << 10;
/// Most wheels an environment recipe may pin.
pub const MAX_WHEELS: usize = 200;

/// Who can read a task's answer without solving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exposure {
    /// The answer is public: a forged task (a public release plus the bug: diff it against the
    /// release), or a closed issue whose fix was merged.
    PublicAnswer,
    /// No public answer: an open issue, a private task.
    None,
}

impl Exposure {
    pub fn as_str(self) -> &'static str {
        match self {
            Exposure::PublicAnswer => "public-answer",
            Exposure::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Exposure> {
        match s {
            "public-answer" => Some(Exposure::PublicAnswer),
            "none" => Some(Exposure::None),
            _ => None,
        }
    }

    /// A task's exposure: as stored when the task was made (an open issue, a private task:
    /// `none`), else read from what it holds: a task with a reference fix (every forged task;
    /// every SWE-bench row, whose fix was merged) has a public answer, one without has none.
    pub fn of(task: &Task) -> Exposure {
        task.exposure.unwrap_or(if task.patch.trim().is_empty() {
            Exposure::None
        } else {
            Exposure::PublicAnswer
        })
    }
}

/// Where the task's pristine source comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// An sdist on the package index, checked by its sha256.
    Pypi {
        name: String,
        version: String,
        filename: String,
        sha256: String,
    },
    /// A git repository at a commit.
    Git { url: String, commit: String },
}

/// One wheel of the environment, pinned by file name (which names `name==version`) and sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WheelPin {
    pub filename: String,
    pub sha256: String,
}

impl WheelPin {
    /// `name==version` from the wheel's file name (PEP 427: `{name}-{version}-…​.whl`).
    pub fn requirement(&self) -> Option<String> {
        let stem = self.filename.strip_suffix(".whl")?;
        let mut parts = stem.split('-');
        let (name, version) = (parts.next()?, parts.next()?);
        (parts.count() >= 3).then(|| format!("{name}=={version}"))
    }
}

/// Exactly the inputs that name the environment image: the same recipe gives the same tag on
/// both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvRecipe {
    /// The environment recipe's version (the forge's `ENV_RECIPE_VERSION`).
    pub recipe: String,
    /// The base image (its tag is the hash of its own recipe).
    pub base_image: String,
    pub python: String,
    /// How the source is installed (`editable`).
    pub install: String,
    /// The test requirements, as wheels.
    pub wheels: Vec<WheelPin>,
    /// The tag the sender's image has (the receiver's must come out the same).
    pub image: String,
}

/// How the starting tree differs from the pristine source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workspace {
    /// The source as it is.
    Pristine,
    /// Files laid over the source: a zstd tar (see `tasks::bundle`), content-addressed.
    Bundle { sha256: String, bytes: u64 },
}

/// The description itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub spec_version: u32,
    pub instance_id: String,
    pub source: Source,
    pub environment: EnvRecipe,
    pub workspace: Workspace,
    pub exposure: Exposure,
    pub problem_statement: String,
    #[serde(default)]
    pub hints: String,
    /// Seconds the miner has.
    pub time_limit: f64,
    /// SHA-256 of the rest (see the module doc).
    #[serde(default)]
    pub hash: String,
}

/// Why a description was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("unknown spec_version {0} (this miner reads {SPEC_VERSION})")]
    UnknownVersion(i64),
    #[error("not a task description: {0}")]
    Malformed(String),
    #[error("description hash mismatch (says {claimed}, is {actual})")]
    HashMismatch { claimed: String, actual: String },
    #[error("refused {what} {value:?}: {why}")]
    Refused {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

impl TaskSpec {
    /// Fills `hash` and returns the description as its wire value.
    pub fn sealed(mut self) -> TaskSpec {
        self.hash = String::new();
        let value = serde_json::to_value(&self).expect("a description serialises");
        self.hash = hash_value(&value);
        self
    }

    /// Reads and checks a description from the wire: version, hash, then every name.
    pub fn from_wire(value: &serde_json::Value) -> Result<TaskSpec, SpecError> {
        let version = value
            .get("spec_version")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| SpecError::Malformed("no spec_version".into()))?;
        if version != SPEC_VERSION as i64 {
            return Err(SpecError::UnknownVersion(version));
        }
        let claimed = value
            .get("hash")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let actual = hash_value(value);
        if claimed != actual {
            return Err(SpecError::HashMismatch { claimed, actual });
        }
        let spec: TaskSpec = serde_json::from_value(value.clone())
            .map_err(|e| SpecError::Malformed(e.to_string()))?;
        spec.check()?;
        Ok(spec)
    }

    /// Every name and digest is plain: index names and versions, file names without paths,
    /// hex digests; no URL where a name belongs.
    fn check(&self) -> Result<(), SpecError> {
        let refuse = |what: &'static str, value: &str, why: &'static str| {
            Err(SpecError::Refused {
                what,
                value: value.chars().take(200).collect(),
                why,
            })
        };
        if !plain(&self.instance_id, "._-") || self.instance_id.len() > 200 {
            return refuse("instance_id", &self.instance_id, "not a plain id");
        }
        if self.problem_statement.len() > MAX_STATEMENT_BYTES {
            return refuse("problem_statement", "", "too long");
        }
        if !(self.time_limit.is_finite() && self.time_limit >= 0.0) {
            return refuse("time_limit", &self.time_limit.to_string(), "not a duration");
        }
        match &self.source {
            Source::Pypi {
                name,
                version,
                filename,
                sha256,
            } => {
                if !plain(name, "._-") {
                    return refuse("package", name, "not an index name");
                }
                if !plain(version, ".+!_-") {
                    return refuse("version", version, "not a version");
                }
                if !plain(filename, "._-") || !filename.ends_with(".tar.gz") {
                    return refuse("sdist", filename, "not a .tar.gz file name");
                }
                if !is_sha256(sha256) {
                    return refuse("sdist sha256", sha256, "not a sha256");
                }
            }
            Source::Git { url, commit } => {
                if url.contains(char::is_whitespace) || url.starts_with('-') {
                    return refuse("git url", url, "not a URL");
                }
                if !is_commit_id(commit) {
                    return refuse("commit", commit, "not a full commit id");
                }
            }
        }
        let env = &self.environment;
        if env.wheels.len() > MAX_WHEELS {
            return refuse("wheels", &env.wheels.len().to_string(), "too many");
        }
        for w in &env.wheels {
            if w.filename.contains("://") || w.filename.contains('@') {
                return refuse("requirement", &w.filename, "a direct URL");
            }
            if !plain(&w.filename, "._-+!") || w.requirement().is_none() {
                return refuse("wheel", &w.filename, "not a wheel file name");
            }
            if !is_sha256(&w.sha256) {
                return refuse("wheel sha256", &w.sha256, "not a sha256");
            }
        }
        if let Workspace::Bundle { sha256, .. } = &self.workspace
            && !is_sha256(sha256)
        {
            return refuse("bundle sha256", sha256, "not a sha256");
        }
        Ok(())
    }
}

/// ASCII letters and digits plus `extra`, not empty, not starting with a dot or dash.
fn plain(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// `owner/name` as a git host spells a repository: two plain names (ASCII letters, digits,
/// `.`, `_`, `-`; not starting with a dot or dash), so it can be joined onto a base URL.
pub fn is_owner_name(repo: &str) -> bool {
    repo.split_once('/')
        .is_some_and(|(o, n)| plain(o, "._-") && plain(n, "._-"))
}

/// A full commit id: 40 hex digits.
pub fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The description hash of a wire value: SHA-256 of its canonical JSON without `hash`.
pub fn hash_value(value: &serde_json::Value) -> String {
    let mut v = value.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("hash");
    }
    let mut out = String::new();
    canonical(&v, &mut out);
    sha256_hex(out.as_bytes())
}

/// JSON with object keys sorted at every level and no whitespace.
fn canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_and_commit_ids_are_checked_before_they_reach_a_url() {
        for good in ["psf/requests", "fixture-org/tiny_lib.py"] {
            assert!(is_owner_name(good), "{good}");
        }
        for bad in [
            "requests", "a/b/c", "../x", "a/..", "-o/x", "o/-x", "o/", "/x", "o/x y", "o/x?y",
        ] {
            assert!(!is_owner_name(bad), "{bad}");
        }
        assert!(is_commit_id(&"a1".repeat(20)));
        assert!(!is_commit_id(&"a1".repeat(19)));
        assert!(!is_commit_id(&"g1".repeat(20)));
    }

    pub(crate) fn sample() -> TaskSpec {
        TaskSpec {
            spec_version: SPEC_VERSION,
            instance_id: "tinycalc-1.0.0-add-1".into(),
            source: Source::Pypi {
                name: "tinycalc".into(),
                version: "1.0.0".into(),
                filename: "tinycalc-1.0.0.tar.gz".into(),
                sha256: "a".repeat(64),
            },
            environment: EnvRecipe {
                recipe: "3".into(),
                base_image: "agentao/base:0123456789ab".into(),
                python: "3.11".into(),
                install: "editable".into(),
                wheels: vec![WheelPin {
                    filename: "pretend-1.0.9-py2.py3-none-any.whl".into(),
                    sha256: "b".repeat(64),
                }],
                image: "agentao/env-tinycalc:1.0.0-01234567".into(),
            },
            workspace: Workspace::Bundle {
                sha256: "c".repeat(64),
                bytes: 120,
            },
            exposure: Exposure::PublicAnswer,
            problem_statement: "add(1, 2) returns -1".into(),
            hints: String::new(),
            time_limit: 600.0,
            hash: String::new(),
        }
        .sealed()
    }

    #[test]
    fn a_sealed_description_reads_back_and_any_change_breaks_its_hash() {
        let spec = sample();
        let wire = serde_json::to_value(&spec).unwrap();
        assert_eq!(TaskSpec::from_wire(&wire).unwrap(), spec);
        // Key order does not matter; content does, unknown fields included.
        let reordered: serde_json::Value =
            serde_json::from_str(&serde_json::to_string_pretty(&wire).unwrap()).unwrap();
        assert_eq!(hash_value(&reordered), spec.hash);
        for (path, value) in [
            ("/problem_statement", serde_json::json!("other")),
            (
                "/environment/wheels/0/sha256",
                serde_json::json!("d".repeat(64)),
            ),
            ("/time_limit", serde_json::json!(1.0)),
        ] {
            let mut w = wire.clone();
            *w.pointer_mut(path).unwrap() = value;
            assert!(matches!(
                TaskSpec::from_wire(&w),
                Err(SpecError::HashMismatch { .. })
            ));
        }
        let mut w = wire.clone();
        w["added_later"] = serde_json::json!(1);
        assert!(matches!(
            TaskSpec::from_wire(&w),
            Err(SpecError::HashMismatch { .. })
        ));
    }

    #[test]
    fn unknown_versions_urls_and_paths_are_refused() {
        let mut w = serde_json::to_value(sample()).unwrap();
        w["spec_version"] = serde_json::json!(2);
        assert_eq!(TaskSpec::from_wire(&w), Err(SpecError::UnknownVersion(2)));
        let bad = |f: &dyn Fn(&mut TaskSpec)| {
            let mut s = sample();
            f(&mut s);
            let w = serde_json::to_value(s.sealed()).unwrap();
            TaskSpec::from_wire(&w).unwrap_err().to_string()
        };
        let url =
            bad(&|s| s.environment.wheels[0].filename = "evil @ https://x.invalid/e.whl".into());
        assert!(url.contains("direct URL"), "{url}");
        assert!(
            bad(&|s| s.environment.wheels[0].filename = "../x-1-py3-none-any.whl".into())
                .contains("wheel")
        );
        assert!(
            bad(&|s| s.environment.wheels[0].filename = "evil-1.0.tar.gz".into()).contains("wheel")
        );
        assert!(
            bad(&|s| {
                s.source = Source::Pypi {
                    name: "--index-url=http://x".into(),
                    version: "1".into(),
                    filename: "x-1.tar.gz".into(),
                    sha256: "a".repeat(64),
                }
            })
            .contains("package")
        );
        assert!(
            bad(&|s| {
                s.source = Source::Git {
                    url: "file:///x".into(),
                    commit: "HEAD".into(),
                }
            })
            .contains("commit")
        );
    }

    #[test]
    fn wheel_names_give_their_requirement_and_exposure_follows_the_reference_fix() {
        let pin = |f: &str| WheelPin {
            filename: f.into(),
            sha256: String::new(),
        };
        assert_eq!(
            pin("pytest_mock-3.14.0-py3-none-any.whl")
                .requirement()
                .as_deref(),
            Some("pytest_mock==3.14.0")
        );
        assert_eq!(pin("x-1.0.whl").requirement(), None);
        assert_eq!(
            Exposure::parse("public-answer"),
            Some(Exposure::PublicAnswer)
        );
        assert_eq!(Exposure::None.as_str(), "none");
    }
}
