//! The regression index of a task: the package's stable tests and, per function of its
//! source, the tests that execute it (from the baseline's per-test coverage). Stored in the
//! task, so an evaluation can widen PASS_TO_PASS to whatever a submitted patch touches.

use std::collections::BTreeSet;
use std::path::Path;

use tree_sitter::Node;

use super::baseline::Baseline;
use super::candidates::is_source_file;
use super::mutate::{parser, qualified_name};
use crate::tasks::{FunctionTests, RegressionIndex, index_ranges};

/// Most tests one task's index holds (a suite of tens of thousands would make every task
/// megabytes): tests in the files of the F2P tests first, then those executing the mutated
/// file, then the rest in order.
pub const MAX_INDEX_TESTS: usize = 4000;

/// The package-wide index, built once per package.
pub(super) struct PackageIndex {
    /// Stable passing tests, sorted.
    tests: Vec<String>,
    /// (file, qualified name, first line, last line, indices into `tests`).
    functions: Vec<(String, String, u32, u32, Vec<usize>)>,
}

impl PackageIndex {
    /// Every function of the package's covered source files with the stable tests that run
    /// it; `None` without coverage.
    pub(super) fn build(source: &Path, baseline: &Baseline) -> Option<PackageIndex> {
        let cov = baseline.coverage.as_ref()?;
        let tests: Vec<String> = baseline.passing.iter().cloned().collect();
        let mut files: Vec<&str> = cov.files().filter(|f| is_source_file(f)).collect();
        files.sort();
        let mut functions = Vec::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(source.join(file)) else {
                continue;
            };
            for (name, first, last) in function_spans(&text) {
                let mut idx: Vec<usize> = cov
                    .tests_covering(file, first, last)
                    .into_iter()
                    .filter_map(|t| tests.binary_search_by(|x| x.as_str().cmp(t)).ok())
                    .collect();
                if idx.is_empty() {
                    continue;
                }
                idx.sort_unstable();
                functions.push((file.to_owned(), name, first, last, idx));
            }
        }
        Some(PackageIndex { tests, functions })
    }

    /// The index stored in one task, at most [`MAX_INDEX_TESTS`] tests.
    pub(super) fn for_task(&self, f2p: &[String], mutated_file: &str) -> RegressionIndex {
        let keep: Vec<usize> = if self.tests.len() <= MAX_INDEX_TESTS {
            (0..self.tests.len()).collect()
        } else {
            let f2p_files: BTreeSet<&str> = f2p.iter().map(|t| test_file(t)).collect();
            let mut picked: BTreeSet<usize> = (0..self.tests.len())
                .filter(|i| f2p_files.contains(test_file(&self.tests[*i])))
                .collect();
            let near = self
                .functions
                .iter()
                .filter(|f| f.0 == mutated_file)
                .flat_map(|f| f.4.iter().copied());
            let rest = 0..self.tests.len();
            for i in near.chain(rest) {
                if picked.len() >= MAX_INDEX_TESTS {
                    break;
                }
                picked.insert(i);
            }
            picked.into_iter().collect()
        };
        // Old index → new index.
        let mut renumber = vec![usize::MAX; self.tests.len()];
        for (new, old) in keep.iter().enumerate() {
            renumber[*old] = new;
        }
        let functions = self
            .functions
            .iter()
            .filter_map(|(file, name, first, last, idx)| {
                let mut kept: Vec<usize> = idx
                    .iter()
                    .map(|i| renumber[*i])
                    .filter(|i| *i != usize::MAX)
                    .collect();
                kept.sort_unstable();
                (!kept.is_empty()).then(|| FunctionTests {
                    file: file.clone(),
                    name: name.clone(),
                    first: *first,
                    last: *last,
                    tests: index_ranges(&kept),
                })
            })
            .collect();
        RegressionIndex {
            tests: keep.iter().map(|i| self.tests[*i].clone()).collect(),
            functions,
        }
    }
}

/// The file part of a node id.
pub fn test_file(id: &str) -> &str {
    id.split("::").next().unwrap_or(id)
}

/// Every function of a Python file: qualified name, first and last line (1-based).
pub fn function_spans(text: &str) -> Vec<(String, u32, u32)> {
    let Ok(mut p) = parser() else {
        return Vec::new();
    };
    let Some(tree) = p.parse(text, None) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack: Vec<Node<'_>> = vec![tree.root_node()];
    while let Some(n) = stack.pop() {
        if n.kind() == "function_definition" {
            out.push((
                qualified_name(n, text),
                n.start_position().row as u32 + 1,
                n.end_position().row as u32 + 1,
            ));
        }
        let mut cursor = n.walk();
        stack.extend(n.children(&mut cursor));
    }
    out.sort_by_key(|f| (f.1, f.2));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_listed_with_their_lines() {
        let src = "import os\n\nclass A:\n    def f(self):\n        return 1\n\n    def g(self):\n        def inner():\n            pass\n        return inner\n\ndef h():\n    pass\n";
        let spans = function_spans(src);
        assert_eq!(
            spans,
            vec![
                ("A.f".into(), 4, 5),
                ("A.g".into(), 7, 10),
                ("A.g.inner".into(), 8, 9),
                ("h".into(), 12, 13),
            ]
        );
    }
}
