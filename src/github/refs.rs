//! Reading a merged pull request the SWE-bench way: which issues it closes ("fixes #N" and
//! the other closing keywords in its title, body and commit messages), its diff split into
//! the fix (`patch`) and the tests (`test_patch`), and a problem statement written from the
//! issue alone (title, body, first comments, bounded), never from the pull request.

/// GitHub's closing keywords.
const KEYWORDS: &[&str] = &[
    "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
];

/// Issue numbers `text` closes: a keyword, an optional `:`, spaces, then `#N` or
/// `<owner>/<repo>#N` naming `repo` (`owner/name`, compared without case).
pub fn closing_refs(text: &str, repo: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let lower = text.to_lowercase();
    let words: Vec<(usize, &str)> = word_starts(&lower);
    for (i, (_, word)) in words.iter().enumerate() {
        let word = word.trim_end_matches(':');
        if !KEYWORDS.contains(&word) {
            continue;
        }
        let Some((_, target)) = words.get(i + 1) else {
            continue;
        };
        let target = target.trim_end_matches(['.', ',', ';', ')', ':']);
        let number = match target.split_once('#') {
            Some(("", n)) => n,
            Some((r, n)) if r.eq_ignore_ascii_case(repo) => n,
            _ => continue,
        };
        if let Ok(n) = number.parse::<u64>()
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

fn word_starts(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, &text[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

/// True for a file that holds tests (or their fixtures): a path component `test`, `tests`,
/// `testing` or `e2e`, a `test_*.py`/`*_test.py` file, or a `conftest.py`.
pub fn is_test_path(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    let file = parts.pop().unwrap_or("");
    parts
        .iter()
        .any(|p| matches!(*p, "test" | "tests" | "testing" | "e2e"))
        || file.starts_with("test_")
        || file.ends_with("_test.py")
        || file == "conftest.py"
}

/// A pull request's diff in two parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitDiff {
    pub patch: String,
    pub test_patch: String,
    /// Files of each part, in order.
    pub patch_files: Vec<String>,
    pub test_files: Vec<String>,
}

/// Splits a `git diff` into the fix and the tests, file by file. `Err` when the text is not
/// a well-formed git diff (each part must pass the harness's own syntax check).
pub fn split_diff(diff: &str) -> Result<SplitDiff, String> {
    if !diff.starts_with("diff --git ") {
        return Err("the diff does not start with a `diff --git` header".into());
    }
    let mut out = SplitDiff::default();
    let mut sections: Vec<String> = Vec::new();
    for line in diff.split_inclusive('\n') {
        if line.starts_with("diff --git ") || sections.is_empty() {
            sections.push(String::new());
        }
        if let Some(s) = sections.last_mut() {
            s.push_str(line);
        }
    }
    for section in sections {
        let header = section.lines().next().unwrap_or("");
        let path = header
            .rsplit_once(" b/")
            .map(|(_, p)| p.trim().to_owned())
            .ok_or_else(|| format!("unreadable file header {header:?}"))?;
        if is_test_path(&path) {
            out.test_patch.push_str(&section);
            out.test_files.push(path);
        } else {
            out.patch.push_str(&section);
            out.patch_files.push(path);
        }
    }
    for (part, text) in [("patch", &out.patch), ("test_patch", &out.test_patch)] {
        if !text.is_empty() {
            crate::eval::check_patch(text, 8 << 20, &[])
                .map_err(|e| format!("malformed {part}: {e}"))?;
        }
    }
    Ok(out)
}

/// Bounds of a problem statement.
#[derive(Debug, Clone, Copy)]
pub struct StatementBounds {
    /// Comments after the issue's body that may join it.
    pub comments: usize,
    /// Longest statement, in bytes (cut at a character boundary).
    pub bytes: usize,
}

impl Default for StatementBounds {
    fn default() -> Self {
        StatementBounds {
            comments: 3,
            bytes: 16 << 10,
        }
    }
}

/// The statement: the issue's title and body, then its first comments, within `bounds`.
pub fn statement(title: &str, body: &str, comments: &[String], bounds: StatementBounds) -> String {
    let mut text = format!("{}\n\n{}", title.trim(), body.trim());
    for c in comments.iter().take(bounds.comments) {
        let c = c.trim();
        if !c.is_empty() {
            text.push_str("\n\n---\n\n");
            text.push_str(c);
        }
    }
    let mut text = text.trim().to_owned();
    if text.len() > bounds.bytes {
        let mut cut = bounds.bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_keywords_link_issues_of_this_repository_only() {
        let t = "Fixes #12, closes: #13 and resolves acme/lib#14; fixes other/lib#15. Fixed #12 \
                 see #16 prefix #17";
        assert_eq!(closing_refs(t, "acme/lib"), vec![12, 13, 14]);
        assert_eq!(closing_refs("RESOLVED #3.", "a/b"), vec![3]);
        assert!(closing_refs("fixes the #1 bug", "a/b").is_empty());
    }

    #[test]
    fn diffs_split_into_fix_and_tests() {
        let diff = "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n@@ -1 +1 @@\n-a\n+b\n\
                    diff --git a/tests/test_m.py b/tests/test_m.py\n--- a/tests/test_m.py\n+++ b/tests/test_m.py\n@@ -1 +1,2 @@\n x\n+y\n";
        let s = split_diff(diff).unwrap();
        assert_eq!(s.patch_files, vec!["src/m.py"]);
        assert_eq!(s.test_files, vec!["tests/test_m.py"]);
        assert!(s.patch.ends_with("+b\n") && s.test_patch.ends_with("+y\n"));
        let bad = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,5 +1,5 @@\n-a\n+b\n";
        assert!(split_diff(bad).unwrap_err().contains("malformed"));
        assert!(split_diff("<html>oops</html>").is_err());
        assert!(is_test_path("pkg/tests/data.json") && is_test_path("test_x.py"));
        assert!(!is_test_path("src/pytest_plugin.py") && !is_test_path("contest.py"));
    }

    #[test]
    fn statements_are_the_issue_within_bounds() {
        let comments = vec!["first".to_owned(), "second".to_owned(), "third".to_owned()];
        let b = StatementBounds {
            comments: 2,
            bytes: 1000,
        };
        let s = statement("Title", "Body", &comments, b);
        assert!(s.starts_with("Title\n\nBody") && s.contains("second") && !s.contains("third"));
        let s = statement(
            "Tïtle",
            "x".repeat(50).as_str(),
            &[],
            StatementBounds {
                comments: 0,
                bytes: 3,
            },
        );
        assert_eq!(s, "T\u{ef}");
    }
}
