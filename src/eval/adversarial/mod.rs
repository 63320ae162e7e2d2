//! A corpus of hostile patches for one task: what a dishonest miner would send to get a
//! verdict it did not earn, with the verdict each must get. Used by the adversarial test and
//! `agentao bench adversarial`.
//!
//! The cases are generated from the task itself (its fixed file, the line its reference fix
//! changes, its tests), so they aim at the real tree. Classes:
//! - [`Class::Paths`]: reaching the tests, git, start-up or configuration files through what
//!   the patch text hides (`-p1` prefixes, quoting, `Index:` sections, symlinks, renames);
//! - [`Class::Forgery`]: making a failing run report a pass from inside the tested code
//!   (monkeypatching pytest, fake records, early exits, introspection), spelled plainly and
//!   obfuscated;
//! - [`Class::Blame`]: making the harness blame the task or the machine (fake markers, floods,
//!   junk results);
//! - [`Class::Resources`]: disk, memory, processes and time;
//! - [`Class::Controls`]: honest fixes in awkward shapes that must still resolve.

//!
//! The case table is data-ish code, one file per class (`paths.rs`, `forgery.rs`, `blame.rs`,
//! `resources.rs`, `controls.rs`) over the reference fix's pieces (`gold.rs`). Part of
//! `eval/`; uses only the harness's `evaluate` and the task model.

mod blame;
mod controls;
mod forgery;
mod gold;
mod paths;
mod resources;

use super::harness::Outcome;
use gold::{Gold, parse_gold};

/// What a case is trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Paths,
    Forgery,
    Blame,
    Resources,
    Controls,
}

/// The verdict a case must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Refused or failed before any test ran (rejected, not applicable, or empty).
    Refused,
    /// Anything but resolved, and never the environment's fault.
    NotResolved,
    /// Exactly this outcome kind (see [`Outcome::kind`]).
    Kind(&'static str),
    /// An honest fix: resolved.
    Resolved,
}

impl Expect {
    /// Whether `outcome` meets the expectation.
    pub fn met_by(self, outcome: &Outcome) -> bool {
        let kind = outcome.kind();
        match self {
            Expect::Refused => matches!(kind, "patch_rejected" | "apply_failed" | "empty_patch"),
            Expect::NotResolved => kind != "resolved" && kind != "environment_error",
            Expect::Kind(k) => kind == k,
            Expect::Resolved => kind == "resolved",
        }
    }
}

/// One hostile (or control) patch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Case {
    pub name: String,
    pub class: Class,
    pub expect: Expect,
    pub patch: String,
}

/// What every class's cases are built from.
pub(super) struct Ctx<'a> {
    task: &'a crate::tasks::Task,
    gold: Gold<'a>,
    /// The file of the first FAIL_TO_PASS test, and its folder.
    test_file: String,
    test_dir: String,
    /// The folder of the file the reference fix changes.
    pkg_dir: String,
    /// The FAIL_TO_PASS tests' function names.
    f2p_names: Vec<String>,
    /// Passing stand-ins for those tests.
    fake_tests: String,
    /// The top-level module or package the fix is in.
    top_module: String,
}

impl Ctx<'_> {
    fn in_pkg(&self, name: &str) -> String {
        if self.pkg_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.pkg_dir)
        }
    }

    fn in_tests(&self, name: &str) -> String {
        if self.test_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.test_dir)
        }
    }
}

/// The corpus as it is built.
pub(super) struct Cases(Vec<Case>);

impl Cases {
    fn add(&mut self, name: &str, class: Class, expect: Expect, patch: String) {
        self.0.push(Case {
            name: name.to_owned(),
            class,
            expect,
            patch,
        });
    }
}

/// The corpus for `task`: at least 60 hostile patches and the honest controls.
pub fn corpus(task: &crate::tasks::Task) -> Result<Vec<Case>, String> {
    let gold = parse_gold(&task.patch)?;
    let test_file = task
        .fail_to_pass
        .first()
        .and_then(|id| id.split("::").next())
        .ok_or("the task has no FAIL_TO_PASS test")?
        .to_owned();
    let test_dir = test_file
        .rsplit_once('/')
        .map(|(d, _)| d.to_owned())
        .unwrap_or_default();
    let pkg_dir = gold
        .file
        .rsplit_once('/')
        .map(|(d, _)| d.to_owned())
        .unwrap_or_default();
    let f2p_names: Vec<String> = task
        .fail_to_pass
        .iter()
        .filter_map(|id| id.rsplit("::").next())
        .map(|n| n.split('[').next().unwrap_or(n).to_owned())
        .collect();
    let fake_tests: String = f2p_names
        .iter()
        .map(|n| format!("def {n}(*a, **k):\n    pass\n"))
        .collect();
    let top_module = gold
        .file
        .split('/')
        .next()
        .unwrap_or("pkg")
        .trim_end_matches(".py")
        .to_owned();
    let cx = Ctx {
        task,
        gold,
        test_file,
        test_dir,
        pkg_dir,
        f2p_names,
        fake_tests,
        top_module,
    };
    let mut cases = Cases(Vec::new());
    paths::add(&cx, &mut cases);
    forgery::add(&cx, &mut cases);
    blame::add(&cx, &mut cases);
    resources::add(&cx, &mut cases);
    controls::add(&cx, &mut cases);
    Ok(cases.0)
}

/// What one case got.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub name: String,
    pub class: Class,
    pub expect: Expect,
    /// The outcome's kind.
    pub got: &'static str,
    /// The outcome, with its reason.
    pub outcome: Outcome,
    pub met: bool,
    pub seconds: f64,
}

/// Evaluates every case of `cases` on `task`, `workers` at a time, in corpus order.
pub async fn run_cases(
    engine: &crate::sandbox::Engine,
    task: &crate::tasks::Task,
    cases: &[Case],
    cfg: &super::EvalConfig,
    workers: usize,
) -> Vec<CaseResult> {
    use futures_util::StreamExt;
    futures_util::stream::iter(cases.iter().map(|case| async move {
        let t = std::time::Instant::now();
        let v = super::evaluate(engine, task, &case.patch, cfg).await;
        CaseResult {
            name: case.name.clone(),
            class: case.class,
            expect: case.expect,
            got: v.outcome.kind(),
            met: case.expect.met_by(&v.outcome),
            outcome: v.outcome,
            seconds: t.elapsed().as_secs_f64(),
        }
    }))
    .buffered(workers.max(1))
    .collect()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> crate::tasks::Task {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tinycalc.task.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_corpus_is_large_and_covers_every_class() {
        let cases = corpus(&task()).unwrap();
        assert!(cases.len() >= 65, "{}", cases.len());
        for class in [
            Class::Paths,
            Class::Forgery,
            Class::Blame,
            Class::Resources,
            Class::Controls,
        ] {
            assert!(cases.iter().filter(|c| c.class == class).count() >= 3);
        }
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len(), "case names are unique");
    }

    #[test]
    fn injected_code_keeps_the_diff_well_formed() {
        let t = task();
        let gold = parse_gold(&t.patch).unwrap();
        for fixed in [true, false] {
            let p = gold.with("x = 1\nif x:\n    y = 2", fixed);
            let s = crate::eval::check_patch(&p, 1 << 20, &[]).unwrap();
            assert_eq!(s.added_lines, 3 + usize::from(fixed), "{p}");
            assert!(p.contains("+    if x:\n+        y = 2\n"), "{p}");
        }
    }
}
