//! What a package's test suite needs: its tests folder and the requirements it declares for
//! running them, read from the places packages put them (PKG-INFO extras, pyproject's
//! optional dependencies and dependency groups, `requirements*test*.txt`, tox.ini).

use std::path::{Path, PathBuf};

use crate::python::version::Marker;

/// Extras and groups that hold test requirements.
const TEST_GROUPS: &[&str] = &["test", "tests", "testing"];

/// Requirements of a source tree, as pip requirement strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// What the package itself needs at run time.
    pub runtime: Vec<String>,
    /// What its tests need on top.
    pub test: Vec<String>,
    /// Build backends and helpers (`[build-system] requires`).
    pub build: Vec<String>,
}

impl Requirements {
    /// Everything to download, deduplicated, the package itself and pytest's own runner
    /// plugins that the base image pins left out.
    pub fn all(&self, own_name: &str) -> Vec<String> {
        let own = crate::python::normalize(own_name);
        let mut out: Vec<String> = Vec::new();
        for r in self.runtime.iter().chain(&self.test).chain(&self.build) {
            let name = crate::python::normalize(requirement_name(r));
            if name.is_empty() || name == own {
                continue;
            }
            if !out.iter().any(|o| o == r) {
                out.push(r.clone());
            }
        }
        out
    }
}

/// The project name at the start of a requirement string.
pub fn requirement_name(req: &str) -> &str {
    let end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(req.len());
    &req[..end]
}

/// The folders and files holding a source tree's tests (relative paths), empty when it ships
/// none.
pub fn test_locations(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["tests", "test", "testing", "t"] {
        if root.join(dir).is_dir() && contains_test_files(&root.join(dir), 4) {
            found.push(dir.to_owned());
        }
    }
    if found.is_empty() {
        // Tests inside the package (`pkg/tests`) or beside it (`test_*.py` at the top).
        if contains_test_files(root, 4) {
            found.push(".".to_owned());
        }
    }
    found
}

fn is_test_file(name: &str) -> bool {
    name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
}

fn contains_test_files(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if path.is_file() && is_test_file(&name) {
            return true;
        }
        if depth > 0
            && path.is_dir()
            && !name.starts_with('.')
            && contains_test_files(&path, depth - 1)
        {
            return true;
        }
    }
    false
}

/// Reads every declaration of requirements in `root`.
pub fn discover(root: &Path) -> Requirements {
    let mut req = Requirements::default();
    if let Ok(text) = std::fs::read_to_string(root.join("PKG-INFO")) {
        read_pkg_info(&text, &mut req);
    }
    if let Ok(text) = std::fs::read_to_string(root.join("pyproject.toml")) {
        read_pyproject(&text, &mut req);
    }
    for file in requirement_files(root) {
        req.test.extend(read_requirements_file(&file, 0));
    }
    if let Ok(text) = std::fs::read_to_string(root.join("tox.ini")) {
        req.test.extend(read_tox(&text, root));
    }
    // hatchling's editable installs may need `editables`, which the base image lacks.
    if req.build.iter().any(|r| requirement_name(r) == "hatchling") {
        req.build.push("editables".to_owned());
    }
    for list in [&mut req.runtime, &mut req.test, &mut req.build] {
        list.retain(|r| usable(r));
        let mut seen = Vec::new();
        list.retain(|r| {
            let fresh = !seen.contains(r);
            seen.push(r.clone());
            fresh
        });
    }
    req
}

/// Judges a requirement's marker for the sandbox (PEP 508, with the marker's own extra
/// requested): the bare requirement when it holds, nothing when it does not (another platform
/// or Python), and the requirement as written when the marker does not parse (pip judges).
fn clean(req: &str) -> Option<String> {
    let (spec, marker) = match req.split_once(';') {
        Some((s, m)) => (s.trim(), Some(m.trim())),
        None => (req.trim(), None),
    };
    if spec.is_empty() {
        return None;
    }
    match marker.map(|m| (m, Marker::parse(m))) {
        None => Some(spec.to_owned()),
        Some((_, Some(marker))) => marker.holds_in_sandbox().then(|| spec.to_owned()),
        Some((m, None)) => Some(format!("{spec}; {m}")),
    }
}

fn usable(req: &str) -> bool {
    let name = requirement_name(req);
    !name.is_empty()
        && !req.contains("://")
        && !req.starts_with('-')
        && !req.starts_with('.')
        && !req.starts_with('/')
}

fn read_pkg_info(text: &str, req: &mut Requirements) {
    // Headers end at the first blank line.
    for line in text.lines().take_while(|l| !l.trim().is_empty()) {
        let Some(value) = line.strip_prefix("Requires-Dist:") else {
            continue;
        };
        let value = value.trim();
        let extra = value.split_once(';').and_then(|(_, m)| extra_of(m));
        match extra {
            None => req.runtime.extend(clean(value)),
            Some(e) if TEST_GROUPS.contains(&e.as_str()) => req.test.extend(clean(value)),
            Some(_) => {}
        }
    }
}

/// The extra a marker requires (`extra == "test"`), normalised.
fn extra_of(marker: &str) -> Option<String> {
    Marker::parse(marker)?.extra()
}

fn read_pyproject(text: &str, req: &mut Requirements) {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return;
    };
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .filter_map(clean)
                    .collect()
            })
            .unwrap_or_default()
    };
    req.build.extend(strings(
        doc.get("build-system").and_then(|b| b.get("requires")),
    ));
    if let Some(project) = doc.get("project") {
        req.runtime.extend(strings(project.get("dependencies")));
        if let Some(extras) = project
            .get("optional-dependencies")
            .and_then(|e| e.as_table())
        {
            for (k, v) in extras {
                if TEST_GROUPS.contains(&crate::python::normalize(k).as_str()) {
                    req.test.extend(strings(Some(v)));
                }
            }
        }
    }
    if let Some(groups) = doc.get("dependency-groups").and_then(|g| g.as_table()) {
        for (k, _) in groups {
            if TEST_GROUPS.contains(&crate::python::normalize(k).as_str()) {
                req.test.extend(group(groups, k, 0));
            }
        }
    }
}

/// A PEP 735 dependency group with its `include-group`s expanded.
fn group(groups: &toml::Table, name: &str, depth: usize) -> Vec<String> {
    let Some(items) = groups.get(name).and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(s) = item.as_str() {
            out.extend(clean(s));
        } else if let Some(inc) = item.get("include-group").and_then(|v| v.as_str())
            && depth < 8
        {
            out.extend(group(groups, inc, depth + 1));
        }
    }
    out
}

fn requirement_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        root.to_path_buf(),
        root.join("requirements"),
        root.join("tests"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                let in_req_dir = dir.ends_with("requirements");
                let in_tests = dir.ends_with("tests");
                (name.ends_with(".txt") || name.ends_with(".in"))
                    && (name.contains("test")
                        || (in_tests && name.starts_with("requirements"))
                        || (in_req_dir && name.starts_with("dev")))
            })
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

fn read_requirements_file(path: &Path, depth: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(inc) = line
            .strip_prefix("-r")
            .or_else(|| line.strip_prefix("--requirement"))
        {
            if depth < 4
                && let Some(dir) = path.parent()
            {
                out.extend(read_requirements_file(&dir.join(inc.trim()), depth + 1));
            }
            continue;
        }
        out.extend(clean(line));
    }
    out
}

fn read_tox(text: &str, root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_testenv = false;
    let mut in_deps = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('[') {
            in_testenv = line == "[testenv]";
            in_deps = false;
            continue;
        }
        if !in_testenv {
            continue;
        }
        let continuation = raw.starts_with(' ') || raw.starts_with('\t');
        if let Some(v) = line.strip_prefix("deps") {
            let v = v.trim_start();
            if let Some(v) = v.strip_prefix('=') {
                in_deps = true;
                let v = v.trim();
                if !v.is_empty() {
                    out.extend(tox_dep(v, root));
                }
            }
            continue;
        }
        if in_deps && continuation && !line.is_empty() {
            out.extend(tox_dep(line, root));
        } else if !continuation {
            in_deps = false;
        }
    }
    out
}

fn tox_dep(line: &str, root: &Path) -> Vec<String> {
    // Factor-conditional lines (`py38: foo`) and substitutions are left out.
    if line.contains('{') || line.starts_with('#') {
        return Vec::new();
    }
    if let Some(inc) = line.strip_prefix("-r") {
        return read_requirements_file(&root.join(inc.trim()), 1);
    }
    if line.contains(": ") {
        return Vec::new();
    }
    clean(line).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_of_test_requirements_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("PKG-INFO"),
            "Metadata-Version: 2.1\nName: demo\nRequires-Dist: idna>=2\nRequires-Dist: pytest-mock; extra == \"testing\"\nRequires-Dist: sphinx; extra == \"docs\"\nRequires-Dist: pywin32; sys_platform == \"win32\"\n\nbody\nRequires-Dist: ignored\n",
        )
        .unwrap();
        std::fs::write(
            root.join("pyproject.toml"),
            "[build-system]\nrequires = [\"hatchling\"]\n[project]\nname=\"demo\"\ndependencies=[\"attrs\"]\n[project.optional-dependencies]\ntests=[\"hypothesis\"]\n[dependency-groups]\ncov=[\"coverage\"]\ntest=[\"pretend\", {include-group = \"cov\"}]\n",
        )
        .unwrap();
        std::fs::create_dir(root.join("requirements")).unwrap();
        std::fs::write(root.join("requirements/base.txt"), "six\n").unwrap();
        std::fs::write(
            root.join("requirements/tests.txt"),
            "# comment\n-r base.txt\nfreezegun==1.5 # pinned\n-e .\n",
        )
        .unwrap();
        std::fs::write(
            root.join("tox.ini"),
            "[tox]\nenvlist=py\n[testenv]\ndeps =\n    pytest-timeout\n    py38: oldthing\ncommands = pytest\n[testenv:docs]\ndeps = sphinx\n",
        )
        .unwrap();
        let r = discover(root);
        assert_eq!(r.runtime, vec!["idna>=2", "attrs"]);
        assert_eq!(r.build, vec!["hatchling", "editables"]);
        for want in [
            "pytest-mock",
            "hypothesis",
            "pretend",
            "coverage",
            "six",
            "freezegun==1.5",
            "pytest-timeout",
        ] {
            assert!(
                r.test.iter().any(|t| t == want),
                "{want} missing from {:?}",
                r.test
            );
        }
        assert!(
            !r.test
                .iter()
                .any(|t| t.contains("sphinx") || t.contains("oldthing"))
        );
        assert!(!r.all("demo").iter().any(|t| t.contains("pywin32")));
    }

    #[test]
    fn test_folders_are_found() {
        let dir = tempfile::tempdir().unwrap();
        assert!(test_locations(dir.path()).is_empty());
        std::fs::create_dir_all(dir.path().join("tests/unit")).unwrap();
        std::fs::write(dir.path().join("tests/unit/test_a.py"), "").unwrap();
        assert_eq!(test_locations(dir.path()), vec!["tests"]);
    }
}
