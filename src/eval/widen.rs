//! PASS_TO_PASS that follows the patch: at evaluation time, the stored PASS_TO_PASS plus every
//! stable test in a file holding a FAIL_TO_PASS test, plus every stable test whose coverage
//! (the task's regression index) executes a function the applied change touches. The
//! touched lines come from the canonical diff of what applying changed, never from the
//! submitted text. A patch that breaks neighbouring code then fails.

use std::collections::{BTreeMap, BTreeSet};

use crate::tasks::{RegressionIndex, Task};

/// Most tests added to one evaluation (the argument list and the run stay bounded).
pub const MAX_ADDED: usize = 3000;

/// Which PASS_TO_PASS an evaluation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum P2pSelection {
    /// The task's stored list only (the selection before issue 15).
    Stored,
    /// The stored list widened to what the patch touches.
    #[default]
    FollowPatch,
}

/// The tests to add to the task's PASS_TO_PASS for the applied change `canonical` (sorted,
/// none of them already selected, at most [`MAX_ADDED`]).
pub fn added_tests(task: &Task, canonical: &str) -> Vec<String> {
    match &task.regression {
        Some(index) => added_for(
            index,
            &task.fail_to_pass,
            &task.pass_to_pass,
            &task.bug_patch,
            canonical,
        ),
        None => Vec::new(),
    }
}

/// [`added_tests`] from the parts of a task: its index, F2P and P2P lists, and bug patch.
pub fn added_for(
    index: &RegressionIndex,
    fail_to_pass: &[String],
    pass_to_pass: &[String],
    bug_patch: &str,
    canonical: &str,
) -> Vec<String> {
    let selected: BTreeSet<&str> = fail_to_pass
        .iter()
        .chain(pass_to_pass)
        .map(String::as_str)
        .collect();
    let f2p_files: BTreeSet<&str> = fail_to_pass.iter().map(|t| file_of(t)).collect();
    let mut out: BTreeSet<&str> = index
        .tests
        .iter()
        .map(String::as_str)
        .filter(|t| f2p_files.contains(file_of(t)))
        .collect();
    let bug_shift = hunks_by_file(bug_patch);
    for (file, lines) in touched_lines(canonical) {
        let shift = bug_shift.get(&file).map(Vec::as_slice).unwrap_or(&[]);
        let functions: Vec<_> = index.functions.iter().filter(|f| f.file == file).collect();
        for line in lines {
            // The change is on the buggy tree; the index is on the clean one.
            let clean = to_old_side(line, shift);
            let hits: Vec<_> = functions
                .iter()
                .filter(|f| f.first <= clean && clean <= f.last)
                .collect();
            if hits.is_empty() {
                // Module level: whatever runs any function of the file.
                for f in &functions {
                    out.extend(index.tests_of(&f.tests));
                }
            } else {
                for f in hits {
                    out.extend(index.tests_of(&f.tests));
                }
            }
        }
    }
    out.into_iter()
        .filter(|t| !selected.contains(t))
        .take(MAX_ADDED)
        .map(str::to_owned)
        .collect()
}

fn file_of(id: &str) -> &str {
    id.split("::").next().unwrap_or(id)
}

/// A hunk header: (old start, old length, new start, new length).
type Hunk = (u32, u32, u32, u32);

fn parse_hunk(line: &str) -> Option<Hunk> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    let range = |r: &str| -> Option<(u32, u32)> {
        match r.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(old)?;
    let (c, d) = range(new)?;
    Some((a, b, c, d))
}

/// The file a `diff --git a/X b/Y` section changes (its old name), from its `---` line.
fn old_name(line: &str) -> Option<String> {
    let name = line.strip_prefix("--- ")?;
    name.strip_prefix("a/").map(str::to_owned)
}

/// Every hunk of a diff, by old file name.
fn hunks_by_file(diff: &str) -> BTreeMap<String, Vec<Hunk>> {
    let mut out: BTreeMap<String, Vec<Hunk>> = BTreeMap::new();
    let mut file = None;
    for line in diff.lines() {
        if line.starts_with("diff --git ") {
            file = None;
        } else if line.starts_with("--- ") {
            file = old_name(line);
        } else if let (Some(f), Some(h)) = (&file, parse_hunk(line)) {
            out.entry(f.clone()).or_default().push(h);
        }
    }
    out
}

/// A line of a diff's new side, on its old side (inside a hunk: clamped into it).
fn to_old_side(line: u32, hunks: &[Hunk]) -> u32 {
    let mut delta: i64 = 0;
    for &(a, b, c, d) in hunks {
        if line >= c + d {
            delta += i64::from(b) - i64::from(d);
        } else if line >= c {
            return (a + (line - c).min(b.saturating_sub(1))).max(1);
        }
    }
    (i64::from(line) + delta).max(1) as u32
}

/// The old-side lines each file's change touches: removed lines, and the lines on either
/// side of an insertion.
fn touched_lines(diff: &str) -> BTreeMap<String, BTreeSet<u32>> {
    let mut out: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut file: Option<String> = None;
    let mut old = 0u32;
    let mut in_hunk = false;
    for line in diff.lines() {
        if line.starts_with("diff --git ") {
            file = None;
            in_hunk = false;
            continue;
        }
        if !in_hunk && line.starts_with("--- ") {
            file = old_name(line);
            continue;
        }
        if let Some((a, _, _, _)) = parse_hunk(line) {
            old = a;
            in_hunk = true;
            continue;
        }
        let Some(f) = &file else { continue };
        if !in_hunk {
            continue;
        }
        match line.as_bytes().first() {
            Some(b'-') => {
                out.entry(f.clone()).or_default().insert(old);
                old += 1;
            }
            Some(b'+') => {
                let set = out.entry(f.clone()).or_default();
                set.insert(old.max(1));
                if old > 1 {
                    set.insert(old - 1);
                }
            }
            Some(b' ') => old += 1,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::FunctionTests;

    fn task() -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "instance_id": "demo__1", "repo": "pypi/demo", "patch": "", "problem_statement": "",
            "FAIL_TO_PASS": ["tests/test_a.py::f1"], "PASS_TO_PASS": ["tests/test_a.py::p1"],
            // The bug dropped line 3 of pkg/a.py: buggy lines after it are one lower.
            "bug_patch": "diff --git a/pkg/a.py b/pkg/a.py\n--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -2,3 +2,2 @@\n x\n-y\n z\n"
        }))
        .unwrap();
        t.regression = Some(RegressionIndex {
            tests: vec![
                "tests/test_a.py::f1".into(),
                "tests/test_a.py::n1".into(),
                "tests/test_a.py::p1".into(),
                "tests/test_b.py::g1".into(),
                "tests/test_b.py::h1".into(),
                "tests/test_c.py::k1".into(),
            ],
            functions: vec![
                FunctionTests {
                    file: "pkg/a.py".into(),
                    name: "f".into(),
                    first: 1,
                    last: 5,
                    tests: "0,2".into(),
                },
                FunctionTests {
                    file: "pkg/a.py".into(),
                    name: "g".into(),
                    first: 8,
                    last: 12,
                    tests: "3".into(),
                },
                FunctionTests {
                    file: "pkg/b.py".into(),
                    name: "h".into(),
                    first: 1,
                    last: 4,
                    tests: "4".into(),
                },
            ],
        });
        t
    }

    #[test]
    fn the_tests_added_follow_what_the_change_touches() {
        let t = task();
        // Touches buggy line 9 of pkg/a.py = clean line 10, inside `g`.
        let diff = "diff --git a/pkg/a.py b/pkg/a.py\n--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -8,3 +8,3 @@\n def g():\n-    return 1\n+    return 2\n \n";
        assert_eq!(
            added_tests(&t, diff),
            vec!["tests/test_a.py::n1", "tests/test_b.py::g1"]
        );
        // Outside every function of pkg/b.py: every test of the file's functions.
        let diff = "diff --git a/pkg/b.py b/pkg/b.py\n--- a/pkg/b.py\n+++ b/pkg/b.py\n@@ -20,1 +20,2 @@\n x = 1\n+y = 2\n";
        assert_eq!(
            added_tests(&t, diff),
            vec!["tests/test_a.py::n1", "tests/test_b.py::h1"]
        );
        // A new file: only the F2P files' neighbours.
        let diff = "diff --git a/pkg/new.py b/pkg/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1 @@\n+x = 1\n";
        assert_eq!(added_tests(&t, diff), vec!["tests/test_a.py::n1"]);
        let mut bare = t.clone();
        bare.regression = None;
        assert!(added_tests(&bare, diff).is_empty());
    }

    #[test]
    fn new_side_lines_map_to_the_old_side() {
        let h = [(2, 3, 2, 2), (10, 1, 9, 3)];
        assert_eq!(to_old_side(1, &h), 1);
        assert_eq!(to_old_side(5, &h), 6);
        assert_eq!(to_old_side(9, &h), 10);
        assert_eq!(to_old_side(12, &h), 11);
    }
}
