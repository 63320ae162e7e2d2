//! The candidate pool: every tree-sitter mutation inside package code whose lines a stable
//! passing test executes, in a deterministic order spread over kinds, and the tests that can
//! observe each candidate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::baseline::Baseline;
use super::mutate::{Mutation, candidates};
use super::regression::test_file;
use super::validate::PackageCtx;
use super::{Forge, Selection};
use crate::sandbox;

impl Forge<'_> {
    /// Every candidate bug in the package's covered source, in a deterministic order that
    /// spreads over files, functions and kinds.
    pub(super) fn candidate_pool(&self, source: &Path, baseline: &Baseline) -> Vec<Mutation> {
        let files: Vec<String> = match &baseline.coverage {
            Some(cov) => {
                let mut f: Vec<String> = cov.files().map(str::to_owned).collect();
                f.sort();
                f
            }
            None => python_files(source),
        };
        let mut all = Vec::new();
        for file in files.iter().filter(|f| is_source_file(f)) {
            let Ok(text) = std::fs::read_to_string(source.join(file)) else {
                continue;
            };
            if text.len() > 400_000 {
                continue;
            }
            let Ok(muts) = candidates(file, &text) else {
                continue;
            };
            for m in muts {
                if let Some(focus) = &self.cfg.focus
                    && !format!("{}:{}", m.file, m.function).contains(focus.as_str())
                {
                    continue;
                }
                let observed = match &baseline.coverage {
                    Some(cov) => cov
                        .tests_covering(&m.file, m.lines.0, m.lines.1)
                        .iter()
                        .any(|t| baseline.passing.contains(*t)),
                    None => true,
                };
                if observed {
                    all.push(m);
                }
            }
        }
        // Deterministic shuffle keyed by the bug's content, then one of each kind in turn so
        // the pool is not all operator swaps.
        all.sort_by_key(|m| sandbox::hash_parts(&[&m.file, &m.start.to_string(), &m.replacement]));
        let mut by_kind: BTreeMap<_, std::collections::VecDeque<Mutation>> = BTreeMap::new();
        for m in all {
            by_kind.entry(m.kind).or_default().push_back(m);
        }
        let mut out = Vec::new();
        loop {
            let mut any = false;
            for q in by_kind.values_mut() {
                if let Some(m) = q.pop_front() {
                    out.push(m);
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        out
    }

    /// The tests for a candidate: `None` means the whole suite. Those executing the mutated
    /// line first, then the rest of its function (at most `max_selected`), then stable tests
    /// of the same files as neighbours (at most [`NEIGHBOURS`]): they become PASS_TO_PASS,
    /// so no task lacks a regression check just because only its failing tests cover it.
    pub(super) fn select_tests(&self, ctx: &PackageCtx<'_>, m: &Mutation) -> Option<Selected> {
        if self.cfg.selection == Selection::WholeSuite {
            return None;
        }
        let cov = ctx.baseline.coverage.as_ref()?;
        let on_line = cov.tests_covering(&m.file, m.lines.0, m.lines.1);
        let in_function = cov.tests_covering(&m.file, m.function_lines.0, m.function_lines.1);
        let covering: Vec<&str> = on_line
            .iter()
            .chain(in_function.difference(&on_line))
            .filter(|t| ctx.baseline.passing.contains(**t))
            .copied()
            .collect();
        let mut picked: BTreeSet<String> = covering
            .iter()
            .take(self.cfg.max_selected)
            .map(|t| (*t).to_owned())
            .collect();
        let files: BTreeSet<&str> = picked.iter().map(|t| test_file(t)).collect();
        let neighbours: Vec<String> = ctx
            .baseline
            .passing
            .iter()
            .filter(|t| files.contains(test_file(t)) && !picked.contains(*t))
            .take(NEIGHBOURS)
            .cloned()
            .collect();
        picked.extend(neighbours);
        Some(Selected {
            tests: picked.into_iter().collect(),
            covering: covering.len(),
        })
    }
}

/// Most same-file neighbours added to a candidate's tests.
pub(super) const NEIGHBOURS: usize = 100;

/// A candidate's tests.
pub(super) struct Selected {
    /// Sorted node ids.
    pub(super) tests: Vec<String>,
    /// Stable tests executing the mutated function, before the `max_selected` cap.
    pub(super) covering: usize,
}

/// Whether a path (relative to the repository) is package code the forge may mutate.
pub fn is_source_file(rel: &str) -> bool {
    const SKIP_DIRS: &[&str] = &[
        "tests",
        "test",
        "testing",
        "docs",
        "doc",
        "examples",
        "example",
        "benchmarks",
        "bench",
        "scripts",
        "tools",
        "_vendor",
        "vendor",
        "build",
        "ci",
        ".github",
    ];
    if !rel.ends_with(".py") {
        return false;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let name = parts.last().copied().unwrap_or("");
    if parts[..parts.len() - 1]
        .iter()
        .any(|p| SKIP_DIRS.contains(p))
    {
        return false;
    }
    !(name.starts_with("test_")
        || name.ends_with("_test.py")
        || matches!(
            name,
            "conftest.py"
                | "setup.py"
                | "noxfile.py"
                | "__main__.py"
                | "_version.py"
                | "version.py"
                | "__about__.py"
        ))
}

fn python_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let rel = rel.to_string_lossy().into_owned();
                if rel.ends_with(".py") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

/// How many files of the tree are package code.
pub(super) fn count_source_files(root: &Path) -> u32 {
    python_files(root)
        .iter()
        .filter(|f| is_source_file(f))
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_package_code_is_mutated() {
        for ok in [
            "src/attr/_make.py",
            "idna/core.py",
            "more_itertools/more.py",
        ] {
            assert!(is_source_file(ok), "{ok}");
        }
        for no in [
            "tests/test_a.py",
            "src/pkg/tests/helpers.py",
            "conftest.py",
            "setup.py",
            "docs/conf.py",
            "pkg/test_thing.py",
            "pkg/_vendor/six.py",
            "README.md",
        ] {
            assert!(!is_source_file(no), "{no}");
        }
    }
}
