//! Problem statements: an issue-like text built from what a user would see when the bug is in
//! (which tests fail, the assertion or traceback excerpt, expected versus actual). It never
//! quotes the mutated line, never points at it, and never holds a diff; [`leaks`] checks that,
//! and an LLM rewrite that fails the check is thrown away.

use crate::llm::{Budget, LlmClient, Message};
use crate::prompts;
use crate::pytest::TestResult;

/// Lines of traceback kept in the excerpt.
const EXCERPT_LINES: usize = 25;

/// What the statement may not reveal.
#[derive(Debug, Clone)]
pub struct Secrets<'a> {
    /// Path of the mutated file (relative to the repository).
    pub file: &'a str,
    /// Text of the mutated lines, before and after the edit.
    pub lines: Vec<&'a str>,
}

/// The template statement for a package's failing tests (`failures`: node id and result).
pub fn template_statement(
    package: &str,
    version: &str,
    failures: &[(&str, &TestResult)],
    secrets: &Secrets<'_>,
) -> String {
    let Some((first_id, first)) = failures.first() else {
        return String::new();
    };
    let headline_error = first
        .message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !mentions(l, secrets))
        .unwrap_or("the test fails");
    let headline = format!(
        "{} fails: {}",
        short_test_name(first_id),
        clip(headline_error, 90)
    );
    let tests: String = failures
        .iter()
        .take(10)
        .map(|(id, _)| format!("- `{id}`\n"))
        .chain((failures.len() > 10).then(|| format!("- … and {} more\n", failures.len() - 10)))
        .collect();
    let source = if first.text.trim().is_empty() {
        &first.message
    } else {
        &first.text
    };
    let excerpt: Vec<&str> = source
        .lines()
        .filter(|l| !mentions(l, secrets))
        .take(EXCERPT_LINES)
        .collect();
    let excerpt = if excerpt.is_empty() {
        "(no output)".to_owned()
    } else {
        excerpt.join("\n")
    };
    let count = failures.len().to_string();
    prompts::render(
        prompts::get("issue_template"),
        &[
            ("package", package),
            ("version", version),
            ("headline", &headline),
            ("count", &count),
            ("tests", tests.trim_end()),
            ("first_test", first_id),
            ("excerpt", &excerpt),
        ],
    )
}

/// Rewrites a template statement with a model through `prompts/issue_writer.md`. The rewrite
/// is kept only if it passes [`leaks`] and is not empty; otherwise (or when the model fails)
/// the template stays. Returns the statement and whether the model's text was used.
pub async fn rewrite(
    llm: &LlmClient,
    package: &str,
    statement: &str,
    secrets: &Secrets<'_>,
    budget: &mut Budget,
) -> (String, bool) {
    let prompt = prompts::render(
        prompts::get("issue_writer"),
        &[("package", package), ("statement", statement)],
    );
    match llm.chat(&[Message::user(prompt)], &[], budget).await {
        Ok(c) => {
            let text = c.message.content.trim().to_owned();
            if text.len() >= 40 && !leaks(&text, secrets) {
                (text, true)
            } else {
                tracing::debug!(
                    "issue writer's rewrite refused (empty or leaking); keeping the template"
                );
                (statement.to_owned(), false)
            }
        }
        Err(e) => {
            tracing::warn!("issue writer failed, keeping the template: {e}");
            (statement.to_owned(), false)
        }
    }
}

/// Whether `text` gives the bug away: a diff, the mutated lines (before or after), or a
/// reference into the mutated file.
pub fn leaks(text: &str, secrets: &Secrets<'_>) -> bool {
    text.contains("diff --git")
        || text.contains("\n@@ ")
        || text.starts_with("@@ ")
        || text.contains("\n+++ ")
        || text.contains("\n--- a/")
        || text.lines().any(|l| mentions(l, secrets))
}

/// Whether one line quotes a mutated line or points into the mutated file.
fn mentions(line: &str, secrets: &Secrets<'_>) -> bool {
    let l = line.trim();
    if l.is_empty() {
        return false;
    }
    if !secrets.file.is_empty() && line.contains(secrets.file) {
        return true;
    }
    // Traceback frames name files by their basename relative to the rootdir sometimes.
    if let Some(base) = secrets.file.rsplit('/').next()
        && !base.is_empty()
    {
        let needle = format!("{base}:");
        let mut from = 0;
        while let Some(at) = line[from..].find(&needle) {
            let at = from + at;
            let before = line[..at].chars().next_back();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                return true;
            }
            from = at + needle.len();
        }
    }
    secrets.lines.iter().any(|s| {
        let s = s.trim();
        revealing(s) && line.contains(s)
    })
}

/// Whether a source line says anything about the code: a bare keyword (`pass`, `return`,
/// `else:`) reveals nothing and appears in ordinary prose.
fn revealing(line: &str) -> bool {
    line.len() >= 4 && (line.len() >= 10 || line.chars().any(|c| "()[]{}=<>+-*/%.,'\"".contains(c)))
}

fn short_test_name(id: &str) -> &str {
    id.rsplit("::").next().unwrap_or(id)
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pytest::TestStatus;

    #[test]
    fn the_template_shows_the_failure_but_not_the_bug() {
        let r = TestResult {
            status: TestStatus::Failed,
            message: "AssertionError: assert -1 == 3".into(),
            text: "tests/test_calc.py:5: in test_add\n    assert add(1, 2) == 3\npkg/calc.py:2: in add\n    return a - b\nE   AssertionError: assert -1 == 3".into(),
            time: 0.0,
        };
        let secrets = Secrets {
            file: "pkg/calc.py",
            lines: vec!["    return a - b", "    return a + b"],
        };
        let s = template_statement(
            "calc",
            "1.0",
            &[("tests/test_calc.py::test_add", &r)],
            &secrets,
        );
        assert!(
            s.contains("test_add fails: AssertionError: assert -1 == 3"),
            "{s}"
        );
        assert!(s.contains("assert add(1, 2) == 3"));
        assert!(s.contains("tests/test_calc.py:5: in test_add"));
        assert!(!s.contains("calc.py:2"));
        assert!(!leaks(&s, &secrets), "{s}");
        assert!(!s.contains("return a"));
        assert!(leaks("see\n    return a - b\n", &secrets));
        assert!(leaks("x\n@@ -1 +1 @@\n", &secrets));
        let bare = Secrets {
            file: "pkg/calc.py",
            lines: vec!["        pass", "return"],
        };
        assert!(!leaks("the other tests still pass and return", &bare));
    }
}
