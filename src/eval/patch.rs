//! Checking a submitted patch before it touches anything: size, unified-diff syntax, paths.

/// Why a patch was refused before being applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PatchError {
    #[error("the patch is empty")]
    Empty,
    #[error("the patch has {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed diff at line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("the patch may not touch {path}: {reason}")]
    ForbiddenPath { path: String, reason: String },
    #[error("the patch adds code that tampers with the test run: {finding}")]
    Tampering { finding: String },
}

/// What a well-formed patch changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSummary {
    /// Paths touched (relative to the repository root), in order of appearance.
    pub files: Vec<String>,
    pub added_lines: usize,
    pub removed_lines: usize,
}

/// Checks `patch` against the size limit, unified-diff syntax (hunk line counts must match
/// their headers) and path rules: relative, no `..`, nothing under `.git/`, none of
/// `protected` (the tests that judge the patch).
pub fn check_patch(
    patch: &str,
    max_bytes: usize,
    protected: &[String],
) -> Result<PatchSummary, PatchError> {
    if patch.trim().is_empty() {
        return Err(PatchError::Empty);
    }
    if patch.len() > max_bytes {
        return Err(PatchError::TooLarge {
            size: patch.len(),
            limit: max_bytes,
        });
    }
    let summary = parse(patch)?;
    for path in &summary.files {
        check_path(path, protected)?;
    }
    Ok(summary)
}

fn malformed(line: usize, reason: impl Into<String>) -> PatchError {
    PatchError::Malformed {
        line,
        reason: reason.into(),
    }
}

fn parse(patch: &str) -> Result<PatchSummary, PatchError> {
    let mut files: Vec<String> = Vec::new();
    let mut push = |p: String| {
        if !files.contains(&p) {
            files.push(p);
        }
    };
    let (mut added, mut removed, mut hunks) = (0, 0, 0);
    let lines: Vec<&str> = patch.lines().collect();
    let mut i = 0;
    let mut saw_header = false;
    while i < lines.len() {
        let line = lines[i];
        let n = i + 1;
        if line.starts_with("GIT binary patch") || line.starts_with("Binary files ") {
            return Err(malformed(n, "binary patches are not accepted"));
        }
        if let Some(rest) = line.strip_prefix("diff --git ") {
            saw_header = true;
            if let Some((a, b)) = split_git_header(rest) {
                push(a);
                push(b);
            }
        } else if let Some(rest) = line
            .strip_prefix("rename from ")
            .or_else(|| line.strip_prefix("rename to "))
            .or_else(|| line.strip_prefix("copy from "))
            .or_else(|| line.strip_prefix("copy to "))
        {
            push(rest.trim().to_owned());
        } else if let Some(old) = line.strip_prefix("--- ") {
            let next = lines.get(i + 1).copied().unwrap_or("");
            let Some(new) = next.strip_prefix("+++ ") else {
                return Err(malformed(n + 1, "`---` line not followed by `+++`"));
            };
            saw_header = true;
            for side in [old, new] {
                if let Some(p) = header_path(side) {
                    push(p);
                }
            }
            i += 2;
            continue;
        } else if line.starts_with("@@") {
            if !saw_header {
                return Err(malformed(n, "hunk before any file header"));
            }
            let (old_len, new_len) =
                hunk_lengths(line).ok_or_else(|| malformed(n, "bad hunk header"))?;
            let (mut old_seen, mut new_seen) = (0usize, 0usize);
            i += 1;
            while old_seen < old_len || new_seen < new_len {
                let Some(body) = lines.get(i) else {
                    return Err(malformed(
                        i + 1,
                        format!(
                            "hunk ends early: expected {old_len} old and {new_len} new lines, got {old_seen} and {new_seen}"
                        ),
                    ));
                };
                match body.as_bytes().first() {
                    Some(b' ') => {
                        old_seen += 1;
                        new_seen += 1;
                    }
                    // An empty line stands for an empty context line in some generators.
                    None => {
                        old_seen += 1;
                        new_seen += 1;
                    }
                    Some(b'-') => {
                        old_seen += 1;
                        removed += 1;
                    }
                    Some(b'+') => {
                        new_seen += 1;
                        added += 1;
                    }
                    Some(b'\\') => {}
                    _ => {
                        return Err(malformed(
                            i + 1,
                            format!(
                                "unexpected line inside a hunk (expected {old_len} old and {new_len} new lines, got {old_seen} and {new_seen})"
                            ),
                        ));
                    }
                }
                i += 1;
            }
            if lines.get(i).is_some_and(|l| l.starts_with('\\')) {
                i += 1;
            }
            hunks += 1;
            continue;
        }
        i += 1;
    }
    if files.is_empty() {
        return Err(malformed(1, "no file headers (`--- a/…`, `+++ b/…`) found"));
    }
    if hunks == 0
        && !patch.contains("\nrename ")
        && !patch.contains("new file mode")
        && !patch.contains("deleted file mode")
    {
        return Err(malformed(1, "no hunks"));
    }
    Ok(PatchSummary {
        files,
        added_lines: added,
        removed_lines: removed,
    })
}

/// `a/x b/y` → (x, y); paths with spaces are taken from the `---`/`+++` lines instead.
fn split_git_header(rest: &str) -> Option<(String, String)> {
    let mut parts = rest.split(' ');
    let a = parts.next()?;
    let b = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((strip_prefix(a), strip_prefix(b)))
}

fn header_path(side: &str) -> Option<String> {
    let path = side.split('\t').next().unwrap_or(side).trim_end();
    if path == "/dev/null" {
        return None;
    }
    Some(strip_prefix(path))
}

fn strip_prefix(p: &str) -> String {
    let p = p.trim_matches('"');
    p.strip_prefix("a/")
        .or_else(|| p.strip_prefix("b/"))
        .unwrap_or(p)
        .to_owned()
}

fn hunk_lengths(header: &str) -> Option<(usize, usize)> {
    // @@ -l[,s] +l[,s] @@ optional section
    let inner = header.strip_prefix("@@ ")?.split(" @@").next()?;
    let mut it = inner.split_whitespace();
    let old = it.next()?.strip_prefix('-')?;
    let new = it.next()?.strip_prefix('+')?;
    let len = |r: &str| -> Option<usize> {
        match r.split_once(',') {
            Some((start, len)) => {
                start.parse::<usize>().ok()?;
                len.parse().ok()
            }
            None => {
                r.parse::<usize>().ok()?;
                Some(1)
            }
        }
    };
    Some((len(old)?, len(new)?))
}

fn check_path(path: &str, protected: &[String]) -> Result<(), PatchError> {
    let forbid = |reason: &str| PatchError::ForbiddenPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.starts_with('/') || path.starts_with('~') {
        return Err(forbid("absolute paths leave the repository"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.contains(&"..") {
        return Err(forbid("`..` leaves the repository"));
    }
    if parts.contains(&".git") {
        return Err(forbid("the git directory is off limits"));
    }
    let normal: String = parts
        .iter()
        .filter(|p| !p.is_empty() && **p != ".")
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if protected.iter().any(|t| protects(t, &normal)) {
        return Err(forbid("it holds the tests that judge the patch"));
    }
    Ok(())
}

/// A protected entry is a file (`tests/test_a.py`), a folder (`tests/`, everything below it),
/// or any file of a name (`*/conftest.py`, at any depth).
pub(crate) fn protects(entry: &str, path: &str) -> bool {
    if let Some(name) = entry.strip_prefix("*/") {
        return path == name || path.ends_with(&format!("/{name}"));
    }
    if entry.ends_with('/') {
        return path.starts_with(entry);
    }
    entry == path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_names_can_be_protected() {
        let p = [
            "tests/".to_owned(),
            "*/conftest.py".to_owned(),
            "t.py".to_owned(),
        ];
        for bad in [
            "tests/unit/test_a.py",
            "conftest.py",
            "src/pkg/conftest.py",
            "./t.py",
        ] {
            assert!(check_path(bad, &p).is_err(), "{bad} allowed");
        }
        for ok in ["src/pkg/tests_helpers.py", "testsuite.py", "src/t.py"] {
            assert!(check_path(ok, &p).is_ok(), "{ok} refused");
        }
    }

    const GOOD: &str = "diff --git a/pkg/mod.py b/pkg/mod.py
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,3 +1,3 @@
 def add(a, b):
-    return a - b
+    return a + b
 
";

    fn check(patch: &str) -> Result<PatchSummary, PatchError> {
        check_patch(patch, 1 << 20, &["tests/test_mod.py".to_owned()])
    }

    #[test]
    fn a_good_patch_is_summarised() {
        let s = check(GOOD).unwrap();
        assert_eq!(s.files, vec!["pkg/mod.py"]);
        assert_eq!((s.added_lines, s.removed_lines), (1, 1));
    }

    #[test]
    fn bad_patches_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("just some text\n", "no file headers"),
            (
                &GOOD.replace("@@ -1,3 +1,3 @@", "@@ -1,5 +1,3 @@"),
                "hunk ends early",
            ),
            (&GOOD.replace(" def add", "Xdef add"), "unexpected line"),
            (&GOOD.replace("pkg/mod.py", "../etc/passwd"), "`..`"),
            (&GOOD.replace("pkg/mod.py", ".git/config"), "git directory"),
            (&GOOD.replace("a/pkg/mod.py", "/etc/passwd"), "absolute"),
            (
                &GOOD.replace("pkg/mod.py", "tests/test_mod.py"),
                "tests that judge",
            ),
            (
                &GOOD.replace("@@ -1,3 +1,3 @@", "@@ nonsense @@"),
                "bad hunk header",
            ),
        ];
        for (patch, why) in cases {
            let err = check(patch).unwrap_err().to_string();
            assert!(err.contains(why), "{why:?} not in {err:?} for\n{patch}");
        }
        let big = "x".repeat(100);
        assert_eq!(
            check_patch(&big, 10, &[]).unwrap_err(),
            PatchError::TooLarge {
                size: 100,
                limit: 10
            }
        );
    }

    #[test]
    fn new_and_deleted_files_are_allowed() {
        let p = "diff --git a/new.py b/new.py
new file mode 100644
--- /dev/null
+++ b/new.py
@@ -0,0 +1,2 @@
+x = 1
+y = 2
";
        let s = check(p).unwrap();
        assert_eq!(s.files, vec!["new.py"]);
        assert_eq!(s.added_lines, 2);
    }

    #[test]
    fn hunk_headers_parse() {
        assert_eq!(hunk_lengths("@@ -1,3 +1,4 @@ def f():"), Some((3, 4)));
        assert_eq!(hunk_lengths("@@ -5 +5 @@"), Some((1, 1)));
        assert_eq!(hunk_lengths("@@ -0,0 +1 @@"), Some((0, 1)));
        assert_eq!(hunk_lengths("@@ x @@"), None);
    }
}
