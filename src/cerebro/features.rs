//! Task features, computed one way for SWE-bench rows, forged tasks and GitHub tasks.
//!
//! A task becomes [`RawFeatures`]: named numbers ([`DENSE`]: sizes of the statement, the gold
//! patch and the tests, how much of the fix the statement already points at, the forge's
//! measurements) and hashed token counts (word uni- and bigrams of the statement and hints,
//! identifiers of the gold patch's changed lines and of the tests, the mutation kind). A
//! [`Encoder`] fitted on the training tasks turns them into one sparse vector: dense numbers
//! standardised, the repository one-hot, token counts weighted by sublinear TF-IDF and
//! L2-normalised per namespace.
//!
//! [`View::Text`] sees only what a new issue has (statement and repository): it is what a miner
//! can forecast from. [`View::Fix`] adds what the validator holds for its own tasks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::facts::TaskFacts;

/// Which facts a head may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Statement and repository only.
    Text,
    /// Also the hints, the gold patch, the tests and the forge's measurements.
    Fix,
}

/// Names of the dense features, in order. Counts enter as `ln(1 + n)`, shares as [0, 1].
pub const DENSE: &[&str] = &[
    // The statement (both views).
    "statement_chars",
    "statement_lines",
    "statement_words",
    "code_blocks",
    "traceback",
    "inline_code",
    "urls",
    "suggested_diff",
    "expectation_words",
    "dotted_calls",
    "questions",
    // Hints and the gold patch (fix view).
    "hints_chars",
    "patch_files",
    "patch_hunks",
    "lines_added",
    "lines_removed",
    "chars_added",
    "largest_hunk",
    "functions_touched",
    "new_definitions",
    "control_flow_added",
    "new_identifiers",
    "path_depth",
    "non_python_files",
    // How much of the fix the statement (and hints) already name.
    "files_named_in_statement",
    "functions_named_in_statement",
    "removed_identifiers_in_statement",
    "added_identifiers_in_statement",
    "new_identifiers_in_statement",
    "new_identifiers_in_hints",
    "removed_identifiers_in_hints",
    "removed_line_quoted",
    "added_line_quoted",
    // The tests.
    "test_files",
    "tests_added",
    "test_lines_added",
    "asserts_added",
    "test_identifiers_in_statement",
    "pass_to_pass",
    // The forge's measurements (zero for tasks it did not make).
    "forge_function_lines",
    "forge_source_files",
    "forge_test_seconds",
];

/// How many of [`DENSE`] the text view reads (the statement block).
const TEXT_DENSE: usize = 11;

/// Buckets of the hashed token space.
pub const HASH_BUCKETS: usize = 1 << 13;

/// Token namespaces: each is weighted and normalised on its own.
pub const NAMESPACES: [&str; 4] = ["statement", "patch", "tests", "forge"];

/// A task's features before fitting: dense numbers (in [`DENSE`] order) and token counts per
/// namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFeatures {
    pub dense: Vec<f64>,
    pub repo: String,
    /// (namespace index, bucket) → count.
    pub tokens: BTreeMap<(usize, u32), f64>,
}

/// FNV-1a, 64 bits: stable across builds and machines, so a saved model reads the same hashes.
pub(crate) fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub(crate) fn bucket(namespace: usize, token: &str) -> u32 {
    (fnv1a(namespace as u64 + 1, token.as_bytes()) % HASH_BUCKETS as u64) as u32
}

/// Identifier-like words: runs of letters, digits and `_`, lower-cased, two characters or
/// more, not all digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 2 && !w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .collect()
}

fn ln1p(n: usize) -> f64 {
    (n as f64).ln_1p()
}

/// What a unified diff changes.
#[derive(Debug, Default)]
struct DiffStats {
    files: Vec<String>,
    hunks: usize,
    added: Vec<String>,
    removed: Vec<String>,
    largest_hunk: usize,
    /// Names from hunk headers (`@@ ... @@ def name(`) and from changed `def`/`class` lines.
    functions: BTreeSet<String>,
}

fn diff_stats(diff: &str) -> DiffStats {
    let mut s = DiffStats::default();
    let mut hunk = 0usize;
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("+++ ") {
            let path = rest.trim().trim_start_matches("b/");
            if path != "/dev/null" {
                s.files.push(path.to_owned());
            }
        } else if line.starts_with("--- ") || line.starts_with("diff --git") {
        } else if let Some(rest) = line.strip_prefix("@@") {
            s.hunks += 1;
            s.largest_hunk = s.largest_hunk.max(hunk);
            hunk = 0;
            if let Some((_, context)) = rest.split_once("@@")
                && let Some(name) = defined_name(context.trim())
            {
                s.functions.insert(name);
            }
        } else if let Some(l) = line.strip_prefix('+') {
            hunk += 1;
            if let Some(name) = defined_name(l.trim()) {
                s.functions.insert(name);
            }
            s.added.push(l.to_owned());
        } else if let Some(l) = line.strip_prefix('-') {
            hunk += 1;
            s.removed.push(l.to_owned());
        }
    }
    s.largest_hunk = s.largest_hunk.max(hunk);
    s
}

/// `name` of a line `def name(` / `async def name(` / `class name`.
fn defined_name(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("async def ")
        .or_else(|| line.strip_prefix("def "))
        .or_else(|| line.strip_prefix("class "))?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The share of `names` found in `words` (0 when there are none).
fn share_named(names: &BTreeSet<String>, words: &BTreeSet<String>) -> f64 {
    if names.is_empty() {
        return 0.0;
    }
    names.iter().filter(|n| words.contains(*n)).count() as f64 / names.len() as f64
}

fn file_stem(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('.').next().unwrap_or(base).to_lowercase()
}

/// Python keywords and builtins that say nothing about where a fix is.
const COMMON: &[&str] = &[
    "self",
    "return",
    "if",
    "else",
    "elif",
    "for",
    "in",
    "not",
    "and",
    "or",
    "is",
    "none",
    "true",
    "false",
    "def",
    "class",
    "import",
    "from",
    "as",
    "try",
    "except",
    "raise",
    "with",
    "while",
    "pass",
    "len",
    "str",
    "int",
    "isinstance",
    "lambda",
    "yield",
    "break",
    "continue",
    "cls",
];

/// The telling identifiers of some lines: three characters or more, not [`COMMON`].
fn identifiers<'a>(lines: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    lines
        .into_iter()
        .flat_map(|l| words(l))
        .filter(|w| w.len() >= 3 && !COMMON.contains(&w.as_str()))
        .collect()
}

/// Whether a line of some length appears verbatim in `text`.
fn quoted<'a>(lines: impl IntoIterator<Item = &'a String>, text: &str) -> f64 {
    let hit = lines.into_iter().any(|l| {
        let l = l.trim();
        l.len() > 12 && text.contains(l)
    });
    f64::from(u8::from(hit))
}

/// Dense features by name, written in [`DENSE`] order.
struct Dense(Vec<f64>);

impl Dense {
    fn set(&mut self, name: &str, v: f64) {
        let i = DENSE.iter().position(|d| *d == name);
        debug_assert!(i.is_some(), "{name} is not a dense feature");
        if let Some(i) = i {
            self.0[i] = v;
        }
    }
}

type Tokens = BTreeMap<(usize, u32), f64>;

fn add_token(tokens: &mut Tokens, ns: usize, token: &str) {
    *tokens.entry((ns, bucket(ns, token))).or_insert(0.0) += 1.0;
}

/// The statement block: sizes, markers, and its word uni- and bigrams.
fn statement_block(st: &str, st_words: &[String], d: &mut Dense, tokens: &mut Tokens) {
    let lower = st.to_lowercase();
    d.set("statement_chars", ln1p(st.chars().count()));
    d.set("statement_lines", ln1p(st.lines().count()));
    d.set("statement_words", ln1p(st_words.len()));
    d.set("code_blocks", ln1p(st.matches("```").count() / 2));
    let traceback = lower.contains("traceback (most recent call last)");
    d.set("traceback", f64::from(u8::from(traceback)));
    d.set("inline_code", ln1p(st.matches('`').count() / 2));
    d.set("urls", ln1p(lower.matches("http").count()));
    let diff_lines = st
        .lines()
        .filter(|l| l.starts_with("+ ") || l.starts_with("- "))
        .count();
    let suggested = lower.contains("```diff") || diff_lines >= 2;
    d.set("suggested_diff", f64::from(u8::from(suggested)));
    let expect: usize = ["expected", "should", "instead", "actual"]
        .iter()
        .map(|w| lower.matches(w).count())
        .sum();
    d.set("expectation_words", ln1p(expect));
    let dotted = st
        .split(char::is_whitespace)
        .filter(|w| w.contains('.') && w.contains('('))
        .count();
    d.set("dotted_calls", ln1p(dotted));
    d.set("questions", ln1p(st.matches('?').count()));
    for w in st_words {
        add_token(tokens, 0, w);
    }
    for pair in st_words.windows(2) {
        add_token(tokens, 0, &format!("{} {}", pair[0], pair[1]));
    }
}

/// The gold patch's block: sizes, and how much of it the statement and hints name.
fn fix_block(task: &TaskFacts, st_set: &BTreeSet<String>, d: &mut Dense, tokens: &mut Tokens) {
    let fix = diff_stats(&task.patch);
    let hinted: BTreeSet<String> = st_set
        .iter()
        .cloned()
        .chain(words(&task.hints_text))
        .collect();
    d.set("hints_chars", ln1p(task.hints_text.chars().count()));
    d.set("patch_files", ln1p(fix.files.len()));
    d.set("patch_hunks", ln1p(fix.hunks));
    d.set("lines_added", ln1p(fix.added.len()));
    d.set("lines_removed", ln1p(fix.removed.len()));
    d.set("chars_added", ln1p(fix.added.iter().map(String::len).sum()));
    d.set("largest_hunk", ln1p(fix.largest_hunk));
    d.set("functions_touched", ln1p(fix.functions.len()));
    let defs = fix
        .added
        .iter()
        .filter(|l| defined_name(l.trim()).is_some());
    d.set("new_definitions", ln1p(defs.count()));
    let flow = fix.added.iter().filter(|l| {
        let t = l.trim_start();
        [
            "if ", "elif ", "else:", "for ", "while ", "try:", "except", "return",
        ]
        .iter()
        .any(|k| t.starts_with(k))
    });
    d.set("control_flow_added", ln1p(flow.count()));
    let added = identifiers(&fix.added);
    let removed = identifiers(&fix.removed);
    let new: BTreeSet<String> = added.difference(&removed).cloned().collect();
    d.set("new_identifiers", ln1p(new.len()));
    let depth: usize = fix.files.iter().map(|f| f.matches('/').count()).sum();
    d.set("path_depth", depth as f64 / fix.files.len().max(1) as f64);
    let non_py = fix.files.iter().filter(|f| !f.ends_with(".py")).count();
    d.set("non_python_files", ln1p(non_py));
    let stems: BTreeSet<String> = fix.files.iter().map(|f| file_stem(f)).collect();
    d.set("files_named_in_statement", share_named(&stems, st_set));
    let funcs: BTreeSet<String> = fix.functions.iter().map(|f| f.to_lowercase()).collect();
    d.set("functions_named_in_statement", share_named(&funcs, st_set));
    d.set(
        "removed_identifiers_in_statement",
        share_named(&removed, st_set),
    );
    d.set(
        "added_identifiers_in_statement",
        share_named(&added, st_set),
    );
    d.set("new_identifiers_in_statement", share_named(&new, st_set));
    d.set("new_identifiers_in_hints", share_named(&new, &hinted));
    d.set(
        "removed_identifiers_in_hints",
        share_named(&removed, &hinted),
    );
    d.set(
        "removed_line_quoted",
        quoted(&fix.removed, &task.problem_statement),
    );
    d.set(
        "added_line_quoted",
        quoted(&fix.added, &task.problem_statement),
    );
    for w in words(&task.hints_text) {
        add_token(tokens, 0, &w);
    }
    for line in fix.added.iter().chain(&fix.removed) {
        for w in words(line) {
            add_token(tokens, 1, &w);
        }
    }
    for f in &fix.files {
        for part in f.split('/') {
            add_token(tokens, 1, &format!("path:{part}"));
        }
    }
}

/// The tests' block. Forged tasks carry no test patch: their failing tests stand for the
/// tests added.
fn test_block(task: &TaskFacts, st_set: &BTreeSet<String>, d: &mut Dense, tokens: &mut Tokens) {
    let tests = diff_stats(&task.test_patch);
    let (files, added, lines) = if task.test_patch.trim().is_empty() {
        let files: BTreeSet<&str> = task
            .fail_to_pass
            .iter()
            .map(|id| id.split("::").next().unwrap_or(id))
            .collect();
        (
            files.len(),
            task.fail_to_pass.len(),
            task.fail_to_pass.clone(),
        )
    } else {
        let defs = tests
            .added
            .iter()
            .filter(|l| l.trim_start().starts_with("def test"))
            .count();
        (tests.files.len(), defs, tests.added.clone())
    };
    d.set("test_files", ln1p(files));
    d.set("tests_added", ln1p(added));
    d.set("test_lines_added", ln1p(tests.added.len()));
    let asserts = tests.added.iter().filter(|l| l.contains("assert"));
    d.set("asserts_added", ln1p(asserts.count()));
    d.set(
        "test_identifiers_in_statement",
        share_named(&identifiers(&lines), st_set),
    );
    d.set("pass_to_pass", ln1p(task.pass_to_pass.len()));
    for line in lines.iter().chain(&task.fail_to_pass) {
        for w in words(line) {
            add_token(tokens, 2, &w);
        }
    }
}

/// The raw features of a task under `view`.
pub fn raw(task: &TaskFacts, view: View) -> RawFeatures {
    let st_words = words(&task.problem_statement);
    let st_set: BTreeSet<String> = st_words.iter().cloned().collect();
    let mut d = Dense(vec![0.0; DENSE.len()]);
    let mut tokens = Tokens::new();
    statement_block(&task.problem_statement, &st_words, &mut d, &mut tokens);
    if view == View::Fix {
        fix_block(task, &st_set, &mut d, &mut tokens);
        test_block(task, &st_set, &mut d, &mut tokens);
        d.set(
            "forge_function_lines",
            task.forge_number("function_lines").ln_1p(),
        );
        d.set(
            "forge_source_files",
            task.forge_number("source_files").ln_1p(),
        );
        d.set(
            "forge_test_seconds",
            task.forge_number("test_seconds").ln_1p(),
        );
        if !task.mutation_kind.is_empty() {
            add_token(&mut tokens, 3, &format!("mutation:{}", task.mutation_kind));
        }
    } else {
        d.0.truncate(TEXT_DENSE);
    }
    RawFeatures {
        dense: d.0,
        repo: task.repo.clone(),
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "diff --git a/pkg/core.py b/pkg/core.py\n--- a/pkg/core.py\n+++ b/pkg/core.py\n@@ -10,3 +10,4 @@ def parse_header(value):\n-    if value > limit:\n+    if value >= limit:\n+        return None\n     return value\n";

    fn facts(statement: &str, patch: &str) -> TaskFacts {
        TaskFacts {
            instance_id: "t".into(),
            repo: "o/r".into(),
            problem_statement: statement.into(),
            patch: patch.into(),
            fail_to_pass: vec!["tests/test_core.py::test_a".into()],
            ..TaskFacts::default()
        }
    }

    #[test]
    fn the_fix_view_measures_the_patch_and_what_the_statement_points_at() {
        let named = raw(
            &facts("`parse_header` in core fails on limit", PATCH),
            View::Fix,
        );
        let blind = raw(&facts("something is off", PATCH), View::Fix);
        let at = |name: &str| DENSE.iter().position(|d| *d == name).unwrap();
        assert_eq!(named.dense[at("patch_files")], 1f64.ln_1p());
        assert_eq!(named.dense[at("patch_hunks")], 1f64.ln_1p());
        assert_eq!(named.dense[at("lines_added")], 2f64.ln_1p());
        assert_eq!(named.dense[at("lines_removed")], 1f64.ln_1p());
        assert_eq!(named.dense[at("control_flow_added")], 2f64.ln_1p());
        assert_eq!(named.dense[at("files_named_in_statement")], 1.0);
        assert_eq!(named.dense[at("functions_named_in_statement")], 1.0);
        // `limit` is named, `value` is not.
        assert_eq!(named.dense[at("removed_identifiers_in_statement")], 0.5);
        assert_eq!(named.dense[at("new_identifiers")], 0.0);
        assert_eq!(blind.dense[at("files_named_in_statement")], 0.0);
        // No test patch: the failing tests count as the tests added.
        assert_eq!(named.dense[at("tests_added")], 1f64.ln_1p());
        assert_eq!(named.dense[at("test_files")], 1f64.ln_1p());
        assert_eq!(named.dense.len(), DENSE.len());
    }

    #[test]
    fn the_text_view_reads_the_statement_only() {
        let a = raw(
            &facts("Traceback (most recent call last)", PATCH),
            View::Text,
        );
        let b = raw(&facts("Traceback (most recent call last)", ""), View::Text);
        assert_eq!(a, b);
        assert_eq!(a.dense.len(), TEXT_DENSE);
        assert_eq!(a.dense[4], 1.0);
        assert!(a.tokens.keys().all(|(ns, _)| *ns == 0));
    }
}
