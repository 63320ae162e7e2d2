//! What a submitted patch may change, judged on what applying it changed.
//!
//! The apply phase (`apply.sh`) applies the patch in a scratch clone and asks git for the
//! change list (`git diff --cached --raw -z --no-renames`, ignored files included). That list
//! is the truth whatever the patch's text said: `-p1` stripping an arbitrary first component,
//! quoted or escaped names, `Index:`-only sections, old-style diffs, symlinks written through.
//! [`check_changes`] refuses, before any test runs:
//! - symbolic links and submodules (a link can point a later write anywhere);
//! - anything under a `.git` folder;
//! - the tests that judge the patch (the task's protected files and folders);
//! - files that change how tests are collected or how the interpreter starts: `conftest.py`,
//!   `pytest.py`, `sitecustomize.py`, `usercustomize.py`, `*.pth`, pytest's configuration
//!   files (`pytest.ini`, `pyproject.toml`, `tox.ini`, `setup.cfg`), `.gitattributes`;
//! - package metadata (`*.egg-info/`, `*.dist-info/`, `*.egg-link`): entry points there can
//!   load a pytest plugin;
//! - a new Python module or package at the repository root, or in a folder pytest puts on
//!   `sys.path` for the selected tests (it would shadow what the tests import by that name).

use super::patch::PatchError;

/// One entry of git's change list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A`, `M`, `D`, `T` (type change)...
    pub status: char,
    pub old_mode: u32,
    pub new_mode: u32,
    /// Path relative to the repository root.
    pub path: String,
}

const SYMLINK: u32 = 0o120000;
const GITLINK: u32 = 0o160000;

/// File names that steer collection, configuration or interpreter start-up.
const STARTUP_NAMES: &[&str] = &[
    "conftest.py",
    "pytest.py",
    "sitecustomize.py",
    "usercustomize.py",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
    ".gitattributes",
    ".gitmodules",
];

/// Parses `git diff --raw -z --no-renames` output:
/// `:<old mode> <new mode> <old sha> <new sha> <status>\0<path>\0` per entry.
pub fn parse_listing(raw: &[u8]) -> Result<Vec<Change>, String> {
    let mut out = Vec::new();
    let mut fields = raw.split(|b| *b == 0);
    while let Some(meta) = fields.next() {
        if meta.is_empty() {
            continue;
        }
        let meta = std::str::from_utf8(meta).map_err(|_| "a change entry is not UTF-8")?;
        let meta = meta
            .strip_prefix(':')
            .ok_or_else(|| format!("unexpected change entry {meta:?}"))?;
        let parts: Vec<&str> = meta.split(' ').collect();
        if parts.len() != 5 {
            return Err(format!("unexpected change entry {meta:?}"));
        }
        let mode = |s: &str| u32::from_str_radix(s, 8).map_err(|_| format!("bad mode {s:?}"));
        let path = fields
            .next()
            .ok_or("a change entry without its path")?
            .to_vec();
        out.push(Change {
            old_mode: mode(parts[0])?,
            new_mode: mode(parts[1])?,
            status: parts[4].chars().next().unwrap_or('?'),
            path: String::from_utf8(path).map_err(|_| "a changed path is not UTF-8")?,
        });
    }
    Ok(out)
}

/// Refuses a change list that touches what a patch may not touch; `protected` are the task's
/// protected entries (see [`super::patch::protects`]), `basedirs` the folders pytest puts on
/// `sys.path` for the selected tests (`.` is the root).
pub fn check_changes(
    changes: &[Change],
    protected: &[String],
    basedirs: &[String],
) -> Result<(), PatchError> {
    for c in changes {
        let forbid = |reason: &str| PatchError::ForbiddenPath {
            path: c.path.clone(),
            reason: reason.to_owned(),
        };
        if c.old_mode == SYMLINK || c.new_mode == SYMLINK {
            return Err(forbid("symbolic links are not accepted"));
        }
        if c.old_mode == GITLINK || c.new_mode == GITLINK {
            return Err(forbid(
                "submodules and nested repositories are not accepted",
            ));
        }
        let parts: Vec<&str> = c.path.split('/').collect();
        if parts.iter().any(|p| *p == ".git" || *p == "..") || c.path.starts_with('/') {
            return Err(forbid("the git directory is off limits"));
        }
        if protected.iter().any(|t| super::patch::protects(t, &c.path)) {
            return Err(forbid("it holds the tests that judge the patch"));
        }
        let name = parts.last().copied().unwrap_or("");
        if STARTUP_NAMES.contains(&name) || name.ends_with(".pth") {
            return Err(forbid(
                "it changes how the tests are collected or how Python starts",
            ));
        }
        if parts.iter().any(|p| {
            p.ends_with(".egg-info")
                || p.ends_with(".dist-info")
                || p.ends_with(".egg-link")
                || p.starts_with("__editable__")
        }) {
            return Err(forbid(
                "package metadata can load plugins into the test run",
            ));
        }
        if c.status == 'A' && shadows(&c.path, basedirs) {
            return Err(forbid(
                "a new module where the tests import from can shadow what they import",
            ));
        }
    }
    Ok(())
}

/// Whether an added `path` is a new module (`B/x.py`) or package (`B/x/__init__.py`) directly
/// in the root or one of `basedirs`.
fn shadows(path: &str, basedirs: &[String]) -> bool {
    let roots = std::iter::once(".").chain(basedirs.iter().map(String::as_str));
    roots.into_iter().any(|b| {
        let rel = if b == "." || b.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(b).and_then(|r| r.strip_prefix('/'))
        };
        rel.is_some_and(|r| {
            let parts: Vec<&str> = r.split('/').collect();
            (parts.len() == 1 && (r.ends_with(".py") || r.ends_with(".so")))
                || (parts.len() == 2 && parts[1] == "__init__.py")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(old: &str, new: &str, status: &str, path: &str) -> Vec<u8> {
        let z = "0".repeat(40);
        format!(":{old} {new} {z} {z} {status}\0{path}\0").into_bytes()
    }

    #[test]
    fn git_listings_parse() {
        let mut raw = entry("100644", "100644", "M", "pkg/a b.py");
        raw.extend(entry("000000", "120000", "A", "lnk"));
        let c = parse_listing(&raw).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].path, "pkg/a b.py");
        assert_eq!((c[1].status, c[1].new_mode), ('A', 0o120000));
        assert!(parse_listing(b"garbage\0x\0").is_err());
    }

    #[test]
    fn the_rules_hold() {
        let protected = ["tests/".to_owned(), "*/conftest.py".to_owned()];
        let basedirs = ["tests".to_owned(), "src".to_owned()];
        let change = |status: char, mode: u32, path: &str| Change {
            status,
            old_mode: if status == 'A' { 0 } else { 0o100644 },
            new_mode: mode,
            path: path.into(),
        };
        for (c, why) in [
            (change('A', 0o120000, "lnk"), "symbolic"),
            (change('A', 0o160000, "sub"), "submodules"),
            (change('M', 0o100644, "tests/test_a.py"), "tests that judge"),
            (change('A', 0o100644, "src/conftest.py"), "tests that judge"),
            (change('A', 0o100644, "pytest.py"), "collected"),
            (
                change('A', 0o100644, "src/pkg/sitecustomize.py"),
                "collected",
            ),
            (change('A', 0o100644, "src/evil.pth"), "collected"),
            (change('M', 0o100644, "pyproject.toml"), "collected"),
            (
                change('A', 0o100644, "pkg.egg-info/entry_points.txt"),
                "metadata",
            ),
            (change('A', 0o100644, "shadow.py"), "shadow"),
            (change('A', 0o100644, "src/pkg2/__init__.py"), "shadow"),
            (change('A', 0o100644, "src/json.py"), "shadow"),
            (change('A', 0o100644, "x/.git/config"), "git directory"),
        ] {
            let err = check_changes(std::slice::from_ref(&c), &protected, &basedirs)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{c:?}: {err}");
        }
        for ok in [
            change('M', 0o100644, "pkg/core.py"),
            change('M', 0o100644, "module.py"),
            change('A', 0o100644, "pkg/new_helper.py"),
            change('A', 0o100644, "src/pkg/new_helper.py"),
            change('D', 0, "pkg/old.py"),
            change('M', 0o100755, "bin/tool"),
        ] {
            assert_eq!(
                check_changes(std::slice::from_ref(&ok), &protected, &basedirs),
                Ok(())
            );
        }
    }
}
