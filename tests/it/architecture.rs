//! The architecture's invariants, read from the source: which top-level module may import
//! which (and no cycles between them), which external crates stay behind one module, and how
//! long a source file may grow. ARCHITECTURE.md names this file for each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module of `src/` may import, read as: `cli` → `neurons` → {`forge`,
/// `agent`, `eval`, `dataset`, `subnet`} → {`pytest`, `tasks`, `cerebro`, `python`, `sandbox`,
/// `llm`} → {`prompts`, `config`, `jsonl`}. Within a layer only the arrows listed here exist (the forge's
/// gold check through `eval`; `pytest` runs in a `sandbox`; the base image's wheelhouse and
/// the embedded model's venv come from `python`).
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "cli",
        &[
            "neurons",
            "github",
            "materialize",
            "cerebro",
            "forge",
            "agent",
            "eval",
            "dataset",
            "subnet",
            "pytest",
            "tasks",
            "python",
            "sandbox",
            "llm",
            "prompts",
            "config",
            "jsonl",
            "likeness",
            "telemetry",
            "git",
            "dashboard",
        ],
    ),
    (
        "neurons",
        &[
            "github",
            "materialize",
            "forge",
            "agent",
            "eval",
            "dataset",
            "subnet",
            "cerebro",
            "pytest",
            "tasks",
            "python",
            "sandbox",
            "llm",
            "prompts",
            "config",
            "jsonl",
            "likeness",
            "telemetry",
        ],
    ),
    // A stranger's task description → a task for the miner's agent; never used in scoring.
    (
        "materialize",
        &[
            "forge", "tasks", "python", "sandbox", "config", "jsonl", "git",
        ],
    ),
    (
        "github",
        &[
            "forge", "eval", "cerebro", "pytest", "tasks", "python", "sandbox", "llm", "prompts",
            "config", "jsonl", "git",
        ],
    ),
    (
        "forge",
        &[
            "eval", "cerebro", "pytest", "tasks", "python", "sandbox", "llm", "prompts", "config",
            "jsonl",
        ],
    ),
    (
        "agent",
        &[
            "tasks", "sandbox", "llm", "prompts", "config", "jsonl", "likeness",
        ],
    ),
    (
        "eval",
        &["pytest", "tasks", "sandbox", "config", "jsonl", "likeness"],
    ),
    ("dataset", &["tasks", "prompts", "config", "jsonl"]),
    // Knows nothing of Docker, tasks or scoring.
    ("subnet", &["prompts", "config", "jsonl"]),
    // Knows nothing of Docker, the wire or scoring rules.
    ("cerebro", &["tasks", "config", "jsonl"]),
    ("pytest", &["sandbox", "config", "jsonl"]),
    ("tasks", &["config", "jsonl"]),
    ("python", &["config", "jsonl"]),
    ("sandbox", &["python", "config", "jsonl"]),
    ("llm", &["python", "prompts", "config", "jsonl"]),
    ("prompts", &["config", "jsonl"]),
    ("git", &[]),
    ("config", &[]),
    ("jsonl", &[]),
    ("likeness", &[]),
    ("telemetry", &[]),
    // Reads the data directory's files itself; knows no other module.
    ("dashboard", &[]),
];

/// External crates that only one top-level module may use.
const CONFINED: &[(&str, &str)] = &[
    ("bollard", "sandbox"),
    ("kube", "sandbox"),
    ("k8s_openapi", "sandbox"),
    ("async_openai", "llm"),
    ("anyhow", "cli"),
    ("octocrab", "github"),
    ("git2", "git"),
];

/// Longest source file, in lines.
const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, exts, out);
        } else if path
            .extension()
            .is_some_and(|e| exts.iter().any(|x| e == *x))
        {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/`: `forge/validate.rs` → `[forge, validate]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code of a file without comments and string literals (so neither a doc comment nor a
/// Dockerfile in a string counts as an import).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if rest.starts_with("/*") {
            rest = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else if let Some(r) = rest.strip_prefix('r').filter(|r| r.starts_with(['"', '#'])) {
            let hashes = r.len() - r.trim_start_matches('#').len();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = &r[hashes + 1..];
            rest = body.find(&close).map_or("", |i| &body[i + close.len()..]);
        } else if let Some(body) = rest.strip_prefix('"') {
            let mut escaped = false;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map_or(body.len(), |(i, _)| i + 1);
            rest = &body[end..];
        } else if rest.starts_with("'\"'") || rest.starts_with("'\\\"'") {
            rest = &rest[rest[1..].find('\'').map_or(rest.len(), |i| i + 2)..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every item of a `{a, b::c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(ident(item.trim()).to_owned());
                item.clear();
                continue;
            }
            _ => {}
        }
        if depth >= 0 {
            item.push(c);
        }
    }
    heads.push(ident(item.trim()).to_owned());
    heads.retain(|h| !h.is_empty() && h != "self");
    heads
}

/// Whether a path starting after `before` is a path of its own (not `x::crate::…`).
fn starts_path(before: &str) -> bool {
    before
        .chars()
        .last()
        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
}

/// The top-level modules a file's code names (`crate::x`, `crate::{x, y}`, `super::…::x`).
fn imports(module: &[String], code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let boundary = starts_path(&rest[..i]);
        rest = &rest[i + "crate::".len()..];
        if !boundary {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            out.extend(group_heads(&group[..end]));
        } else {
            out.insert(ident(rest).to_owned());
        }
    }
    // `super::` chains that climb to the crate root.
    let mut rest = code;
    while let Some(i) = rest.find("super::") {
        let boundary = starts_path(&rest[..i]);
        rest = &rest[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if boundary && ups >= module.len() {
            if let Some(group) = rest.strip_prefix('{') {
                out.extend(group_heads(
                    &group[..group.find('}').unwrap_or(group.len())],
                ));
            } else {
                out.insert(ident(rest).to_owned());
            }
        }
    }
    out
}

/// Every top-level module's imports of other top-level modules, with the files that make them.
fn module_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = root().join("src");
    let mut paths = Vec::new();
    files(&src, &["rs"], &mut paths);
    let tops: BTreeSet<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for path in paths {
        let rel = path.strip_prefix(&src).unwrap();
        let module = module_path(rel);
        let Some(top) = module.first() else { continue };
        let text = std::fs::read_to_string(&path).unwrap();
        for used in imports(&module, &code(&text)) {
            if used != *top && tops.contains(used.as_str()) {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    graph
}

#[test]
fn every_top_level_module_is_in_the_table() {
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("src")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let name = name.trim_end_matches(".rs").to_owned();
        if entry.path().is_dir() || entry.path().extension().is_some_and(|e| e == "rs") {
            on_disk.insert(name);
        }
    }
    on_disk.remove("lib");
    on_disk.remove("main");
    let table: BTreeSet<String> = ALLOWED.iter().map(|(m, _)| (*m).to_owned()).collect();
    assert_eq!(on_disk, table, "src/ and the dependency table disagree");
}

#[test]
fn modules_import_only_what_the_layering_allows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, uses) in module_graph() {
        for (used, files) in uses {
            if !allowed[module.as_str()].contains(&used.as_str()) {
                wrong.push(format!("{module} → {used} (in {files:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn top_level_modules_have_no_cycles() {
    let graph = module_graph();
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("cycle between top-level modules: {}", cycle.join(" → "));
        }
    }
    // The forge is above the evaluation: nothing in eval may name it.
    assert!(
        !graph
            .get("eval")
            .is_some_and(|uses| uses.contains_key("forge"))
    );
}

#[test]
fn confined_crates_stay_in_their_module() {
    let src = root().join("src");
    let mut paths = Vec::new();
    files(&src, &["rs"], &mut paths);
    let mut wrong = Vec::new();
    for path in paths {
        let rel = path.strip_prefix(&src).unwrap();
        let top = module_path(rel).first().cloned().unwrap_or_default();
        let code = code(&std::fs::read_to_string(&path).unwrap());
        for (krate, home) in CONFINED {
            let named = code.match_indices(krate).any(|(i, _)| {
                let before = code[..i].chars().last();
                let after = code[i + krate.len()..].chars().next();
                before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
                    && after.is_some_and(|c| c == ':' || c == ';' || c == '!')
            });
            // A crate may have more than one home (one row each).
            if named && !CONFINED.iter().any(|(k, h)| k == krate && top == *h) {
                wrong.push(format!("{} uses {krate} (only {home}/ may)", rel.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_source_file_is_longer_than_600_lines() {
    let mut paths = Vec::new();
    files(&root().join("src"), &["rs", "py", "sh"], &mut paths);
    files(&root().join("tests"), &["rs", "py", "sh"], &mut paths);
    let long: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}

#[test]
fn the_import_reader_reads_groups_and_super_paths() {
    let m = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
    let found = imports(
        &m("forge/validate"),
        "use crate::{eval::{self, Outcome}, tasks::Task};\nuse super::super::pytest::X;\nlet x = crate::llm::Budget::new(1.0);",
    );
    let want: BTreeSet<String> = ["eval", "tasks", "pytest", "llm"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(found, want);
    assert_eq!(code("a // crate::x\n/* crate::y */ b").trim(), "a \n b");
    assert_eq!(
        code("x(\"./*.whl \\\" crate::a\"); y(r#\"crate::b \"\"#); z('\"'); crate::c"),
        "x(); y(); z(); crate::c"
    );
}
