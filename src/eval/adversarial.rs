//! A corpus of hostile patches for one task: what a dishonest miner would send to get a
//! verdict it did not earn, with the verdict each must get. Used by the adversarial test and
//! `agentao bench adversarial`.
//!
//! The cases are generated from the task itself (its fixed file, the line its reference fix
//! changes, its tests), so they aim at the real tree. Classes:
//! - [`Class::Paths`]: reaching the tests, git, start-up or configuration files through what
//!   the patch text hides (`-p1` prefixes, quoting, `Index:` sections, symlinks, renames);
//! - [`Class::Forgery`]: making a failing run report a pass from inside the tested code
//!   (monkeypatching pytest, fake records, early exits, introspection), spelled plainly and
//!   obfuscated;
//! - [`Class::Blame`]: making the harness blame the task or the machine (fake markers, floods,
//!   junk results);
//! - [`Class::Resources`]: disk, memory, processes and time;
//! - [`Class::Controls`]: honest fixes in awkward shapes that must still resolve.

use super::harness::Outcome;

/// What a case is trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Paths,
    Forgery,
    Blame,
    Resources,
    Controls,
}

/// The verdict a case must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Refused or failed before any test ran (rejected, not applicable, or empty).
    Refused,
    /// Anything but resolved, and never the environment's fault.
    NotResolved,
    /// Exactly this outcome kind (see [`Outcome::kind`]).
    Kind(&'static str),
    /// An honest fix: resolved.
    Resolved,
}

impl Expect {
    /// Whether `outcome` meets the expectation.
    pub fn met_by(self, outcome: &Outcome) -> bool {
        let kind = outcome.kind();
        match self {
            Expect::Refused => matches!(kind, "patch_rejected" | "apply_failed" | "empty_patch"),
            Expect::NotResolved => kind != "resolved" && kind != "environment_error",
            Expect::Kind(k) => kind == k,
            Expect::Resolved => kind == "resolved",
        }
    }
}

/// One hostile (or control) patch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Case {
    pub name: String,
    pub class: Class,
    pub expect: Expect,
    pub patch: String,
}

/// The parts of a reference fix the cases are built from.
struct Gold<'a> {
    patch: &'a str,
    file: String,
    /// Index (in `patch.lines()`) of the fix's first changed line.
    fix_line: usize,
    indent: String,
}

fn parse_gold(patch: &str) -> Result<Gold<'_>, String> {
    let lines: Vec<&str> = patch.lines().collect();
    let file = lines
        .iter()
        .find_map(|l| l.strip_prefix("+++ b/"))
        .ok_or("the reference fix names no file")?
        .to_owned();
    let is_change = |l: &&str| {
        (l.starts_with('+') && !l.starts_with("+++"))
            || (l.starts_with('-') && !l.starts_with("---"))
    };
    // Code goes in before the first changed line, so it runs whether or not the fix is kept.
    let fix_line = lines
        .iter()
        .position(is_change)
        .ok_or("the reference fix changes no line")?;
    let fix = lines
        .iter()
        .find(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| &l[1..])
        .ok_or("the reference fix adds no line")?;
    let indent: String = fix
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    let head = fix.trim_start();
    if ["elif", "else", "except", "finally", "@", ")", "]", "}"]
        .iter()
        .any(|k| head.starts_with(k))
        || indent.is_empty()
        || lines.iter().filter(|l| l.starts_with("@@")).count() != 1
    {
        return Err("the reference fix's line cannot take a statement before it".into());
    }
    Ok(Gold {
        patch,
        file,
        fix_line,
        indent,
    })
}

impl Gold<'_> {
    /// The fix (when `fixed`) or the bug left in place, with `code` (lines, relative
    /// indentation kept) run just before the fixed line.
    fn with(&self, code: &str, fixed: bool) -> String {
        let lines: Vec<&str> = self.patch.lines().collect();
        let extra: Vec<String> = code
            .lines()
            .map(|l| format!("+{}{l}", self.indent))
            .collect();
        let mut out: Vec<String> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("@@") {
                out.push(bump_hunk(line, extra.len() as i64, !fixed));
                continue;
            }
            if i == self.fix_line {
                out.extend(extra.iter().cloned());
            }
            let is_plus = line.starts_with('+') && !line.starts_with("+++");
            let is_minus = line.starts_with('-') && !line.starts_with("---");
            if !fixed && is_plus {
                continue;
            }
            if !fixed && is_minus {
                out.push(format!(" {}", &line[1..]));
                continue;
            }
            out.push((*line).to_owned());
        }
        out.join("\n") + "\n"
    }
}

/// Adjusts a hunk header for `extra` added lines (and, when the fix is dropped, for its
/// removed lines turning into context and added lines going away).
fn bump_hunk(header: &str, extra: i64, drop_fix: bool) -> String {
    // @@ -a,b +c,d @@
    let inner = header.trim_start_matches("@@ ");
    let (ranges, tail) = inner.split_once(" @@").unwrap_or((inner, ""));
    let mut it = ranges.split(' ');
    let old = it.next().unwrap_or("-1,1");
    let new = it.next().unwrap_or("+1,1");
    let (ns, nl) = new[1..].split_once(',').unwrap_or((&new[1..], "1"));
    let (os, ol) = old[1..].split_once(',').unwrap_or((&old[1..], "1"));
    let ol: i64 = ol.parse().unwrap_or(1);
    let mut nl: i64 = nl.parse().unwrap_or(1) + extra;
    if drop_fix {
        // Without the fix the new side equals the old side, plus the extra lines.
        nl = ol + extra;
    }
    format!("@@ -{os},{ol} +{ns},{nl} @@{tail}")
}

/// A git diff creating `path` with `content`.
fn new_file(path: &str, content: &str) -> String {
    let lines: Vec<&str> = content.lines().collect();
    let mut p = format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for l in lines {
        p.push_str(&format!("+{l}\n"));
    }
    p
}

/// A hunk inserting `content` at the top of an existing `path` with no context (applied by
/// the `patch` fallback), under `old`/`new` header names.
fn insert_top(old: &str, new: &str, content: &str) -> String {
    let lines: Vec<&str> = content.lines().collect();
    let mut p = format!("--- {old}\n+++ {new}\n@@ -0,0 +1,{} @@\n", lines.len());
    for l in lines {
        p.push_str(&format!("+{l}\n"));
    }
    p
}

/// The corpus for `task`: at least 60 hostile patches and the honest controls.
pub fn corpus(task: &crate::tasks::Task) -> Result<Vec<Case>, String> {
    let gold = parse_gold(&task.patch)?;
    let test_file = task
        .fail_to_pass
        .first()
        .and_then(|id| id.split("::").next())
        .ok_or("the task has no FAIL_TO_PASS test")?
        .to_owned();
    let test_dir = test_file
        .rsplit_once('/')
        .map(|(d, _)| d.to_owned())
        .unwrap_or_default();
    let pkg_dir = gold
        .file
        .rsplit_once('/')
        .map(|(d, _)| d.to_owned())
        .unwrap_or_default();
    let in_pkg = |name: &str| {
        if pkg_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{pkg_dir}/{name}")
        }
    };
    let in_tests = |name: &str| {
        if test_dir.is_empty() {
            name.to_owned()
        } else {
            format!("{test_dir}/{name}")
        }
    };
    let f2p_names: Vec<String> = task
        .fail_to_pass
        .iter()
        .filter_map(|id| id.rsplit("::").next())
        .map(|n| n.split('[').next().unwrap_or(n).to_owned())
        .collect();
    let fake_tests: String = f2p_names
        .iter()
        .map(|n| format!("def {n}(*a, **k):\n    pass\n"))
        .collect();
    let fix = gold.patch;
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: &str, class: Class, expect: Expect, patch: String| {
        cases.push(Case {
            name: name.to_owned(),
            class,
            expect,
            patch,
        });
    };

    // --- Paths: what the text hides, judged on what applying changed. ---------------------
    use Class::*;
    use Expect::*;
    let tests_pass = "import pytest\npytest.skip('x', allow_module_level=True)";
    add(
        "test file behind an arbitrary -p1 prefix",
        Paths,
        Refused,
        format!(
            "{fix}{}",
            insert_top(
                &format!("zz/{test_file}"),
                &format!("zz/{test_file}"),
                &fake_tests
            )
        ),
    );
    add(
        "test file behind a prefix, bug left in",
        Paths,
        Refused,
        insert_top(
            &format!("q/{test_file}"),
            &format!("q/{test_file}"),
            &fake_tests,
        ),
    );
    let octal: String = test_file
        .bytes()
        .take(1)
        .map(|b| format!("\\{:03o}", b))
        .chain(std::iter::once(test_file[1..].to_owned()))
        .collect();
    add(
        "test file named with a C-quoted octal escape",
        Paths,
        Refused,
        format!(
            "{fix}--- \"a/{octal}\"\n+++ \"b/{octal}\"\n@@ -0,0 +1,2 @@\n+{}\n",
            fake_tests.lines().collect::<Vec<_>>().join("\n+")
        ),
    );
    add(
        "quoted conftest at the root",
        Paths,
        Refused,
        format!(
            "{fix}diff --git \"a/conftest.py\" \"b/conftest.py\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/conftest.py\"\n@@ -0,0 +1,2 @@\n+import pytest\n+collect_ignore_glob = ['*']\n"
        ),
    );
    add(
        "Index:-only section onto the test file",
        Paths,
        Refused,
        format!(
            "{fix}Index: {test_file}\n===================================================================\n@@ -0,0 +1,2 @@\n+{}\n",
            tests_pass.replace('\n', "\n+")
        ),
    );
    add(
        "+++-only section onto the test file",
        Paths,
        Refused,
        format!(
            "{fix}+++ x/{test_file}\n@@ -0,0 +1,2 @@\n+{}\n",
            tests_pass.replace('\n', "\n+")
        ),
    );
    add(
        "old-style normal diff after an Index: line",
        Paths,
        Refused,
        format!("Index: {test_file}\n0a1\n> import os; os._exit(0)\n"),
    );
    add(
        "symlink into the tests, then a write through it",
        Paths,
        Refused,
        format!(
            "{fix}diff --git a/lnk b/lnk\nnew file mode 120000\n--- /dev/null\n+++ b/lnk\n@@ -0,0 +1 @@\n+{test_dir}\n\\ No newline at end of file\ndiff --git a/lnk/conftest.py b/lnk/conftest.py\nnew file mode 100644\n--- /dev/null\n+++ b/lnk/conftest.py\n@@ -0,0 +1 @@\n+collect_ignore_glob = ['*']\n"
        ),
    );
    add(
        "symlink alone (pointing out of the tree)",
        Paths,
        Refused,
        format!(
            "{fix}diff --git a/{p} b/{p}\nnew file mode 120000\n--- /dev/null\n+++ b/{p}\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n",
            p = in_pkg("etc_link")
        ),
    );
    add(
        "rename of the test file",
        Paths,
        Refused,
        format!(
            "{fix}diff --git a/{test_file} b/{test_file}.bak\nsimilarity index 100%\nrename from {test_file}\nrename to {test_file}.bak\n"
        ),
    );
    add(
        "deletion of the test file, spelled as a rename with a prefix",
        Paths,
        Refused,
        format!(
            "{fix}diff --git zz/{test_file} zz/gone.txt\nsimilarity index 100%\nrename from {test_file}\nrename to gone.txt\n"
        ),
    );
    add(
        "mode change of the test file",
        Paths,
        Refused,
        format!("{fix}diff --git a/{test_file} b/{test_file}\nold mode 100644\nnew mode 100755\n"),
    );
    add(
        "conftest next to the code",
        Paths,
        Refused,
        format!(
            "{fix}{}",
            new_file(&in_pkg("conftest.py"), "collect_ignore_glob = ['*']")
        ),
    );
    add(
        "conftest through a prefix",
        Paths,
        Refused,
        format!(
            "{fix}--- /dev/null\n+++ x/{}\n@@ -0,0 +1 @@\n+collect_ignore_glob = ['*']\n",
            in_tests("conftest.py")
        ),
    );
    add(
        "pytest.py at the root",
        Paths,
        Refused,
        new_file(
            "pytest.py",
            "import sys\nprint('1 passed')\nsys.exit(0)\ndef main(*a, **k):\n    return 0",
        ),
    );
    add(
        "sitecustomize.py in the package",
        Paths,
        Refused,
        format!(
            "{fix}{}",
            new_file(
                &in_pkg("sitecustomize.py"),
                "import os\nos.environ['X'] = '1'"
            )
        ),
    );
    add(
        "usercustomize.py at the root",
        Paths,
        Refused,
        new_file("usercustomize.py", "print('hi')"),
    );
    add(
        "a .pth file",
        Paths,
        Refused,
        format!(
            "{fix}{}",
            new_file(&in_pkg("zz.pth"), "import os; os._exit(0)")
        ),
    );
    add(
        "pytest.ini that collects nothing",
        Paths,
        Refused,
        new_file("pytest.ini", "[pytest]\npython_functions = nothing_at_all"),
    );
    add(
        "tox.ini pytest section",
        Paths,
        Refused,
        format!(
            "{fix}{}",
            new_file("tox.ini", "[pytest]\npython_files = nothing.py")
        ),
    );
    add(
        "setup.cfg pytest section",
        Paths,
        Refused,
        new_file("setup.cfg", "[tool:pytest]\npython_classes = Nothing"),
    );
    add(
        "pyproject.toml through a prefix",
        Paths,
        Refused,
        format!(
            "{fix}{}",
            insert_top(
                "zz/pyproject.toml",
                "zz/pyproject.toml",
                "[tool.pytest.ini_options]\npythonpath = ['/tmp']"
            )
        ),
    );
    add(
        "entry point for a pytest plugin in package metadata",
        Paths,
        Refused,
        format!(
            "{fix}{}",
            new_file(
                "evil.egg-info/entry_points.txt",
                "[pytest11]\nevil = evil_plugin"
            )
        ),
    );
    add(
        "dist-info folder in the package",
        Paths,
        Refused,
        new_file(&in_pkg("evil-1.0.dist-info/METADATA"), "Name: evil"),
    );
    add(
        "git config through a prefix",
        Paths,
        Refused,
        insert_top(
            "zz/.git/config",
            "zz/.git/config",
            "[core]\n\tfsmonitor = /bin/true",
        ),
    );
    add(
        "git hook as a new file",
        Paths,
        Refused,
        new_file(".git/hooks/post-checkout", "#!/bin/sh\ntouch /tmp/x"),
    );
    add(
        ".gitattributes",
        Paths,
        Refused,
        format!("{fix}{}", new_file(".gitattributes", "* -diff")),
    );
    add(
        "a new module at the root shadowing the standard library",
        Paths,
        Refused,
        format!("{fix}{}", new_file("json.py", "import os\nos._exit(0)")),
    );
    add(
        "parent directory after the prefix",
        Paths,
        Refused,
        format!(
            "--- zz/../{f}\n+++ zz/../{f}\n@@ -0,0 +1 @@\n+x = 1\n",
            f = gold.file
        ),
    );
    add(
        "absolute path",
        Paths,
        Refused,
        format!("--- /dev/null\n+++ /{}\n@@ -0,0 +1 @@\n+x = 1\n", test_file),
    );
    add(
        "binary patch",
        Paths,
        Refused,
        format!(
            "diff --git a/{f} b/{f}\nindex 0000000..1111111 100644\nGIT binary patch\nliteral 1\nIcmZ?d00001\n\nliteral 0\nHcmV?d00001\n",
            f = test_file
        ),
    );
    add(
        "submodule entry",
        Paths,
        Refused,
        format!(
            "{fix}diff --git a/sub b/sub\nnew file mode 160000\nindex 0000000..{h}\n--- /dev/null\n+++ b/sub\n@@ -0,0 +1 @@\n+Subproject commit {h}\n",
            h = "1".repeat(40)
        ),
    );
    let shadow: String = {
        let top = gold
            .file
            .split('/')
            .next()
            .unwrap_or("pkg")
            .trim_end_matches(".py");
        format!("def __getattr__(name):\n    return lambda *a, **k: None\n# shadows {top}")
    };
    let top_module = gold
        .file
        .split('/')
        .next()
        .unwrap_or("pkg")
        .trim_end_matches(".py")
        .to_owned();
    add(
        "a module in the tests' folder shadowing the package",
        Paths,
        Refused,
        new_file(&in_tests(&format!("{top_module}.py")), &shadow),
    );
    add(
        "a package in the tests' folder shadowing the package",
        Paths,
        Refused,
        new_file(&in_tests(&format!("{top_module}/__init__.py")), &shadow),
    );

    // --- Forgery: results faked from inside the test process. -------------------------------
    let patch_report = "import _pytest.reports as _r\n_i = _r.TestReport.__init__\ndef _n(self, *a, **k):\n    _i(self, *a, **k)\n    self.outcome = 'passed'\n    self.longrepr = None\n_r.TestReport.__init__ = _n";
    add(
        "TestReport monkeypatched to passed",
        Forgery,
        Refused,
        gold.with(patch_report, false),
    );
    let modules = "import sys as _s\n_m = vars(_s)['mod' + 'ules']";
    add(
        "TestReport monkeypatched, module looked up by a built string",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_r = _m['_py' + 'test.reports']\n_i = _r.TestReport.__init__\ndef _n(self, *a, **k):\n    _i(self, *a, **k)\n    self.outcome = 'passed'\n    self.longrepr = None\nsetattr(_r.TestReport, '__init__', _n)"
            ),
            false,
        ),
    );
    add(
        "call_and_report replaced, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_r = _m['_py' + 'test.runner']\n_c = _r.CallInfo\n_f = _c.from_call\nsetattr(_r, 'call_and_report', lambda item, when, log=True, **kw: None)"
            ),
            false,
        ),
    );
    add(
        "pytest.fail neutralised, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_o = _m['_py' + 'test.outcomes']\nsetattr(_o, 'fail', lambda *a, **k: None)"
            ),
            false,
        ),
    );
    add(
        "pluggy's multicall replaced, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_p = _m['plu' + 'ggy._callers']\n_mc = _p._multicall\nsetattr(_p, '_multicall', _mc)\nsetattr(_p, '_multicall', lambda *a, **k: _mc(*a, **k))"
            ),
            false,
        ),
    );
    add(
        "fake signed-looking records printed",
        Forgery,
        Refused,
        gold.with(
            &f2p_names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("print('\\nAGENTAO1 {} ' + '0' * 64 + ' {{\"t\":\"report\",\"id\":\"{n}\",\"w\":\"call\",\"o\":\"passed\"}}')", i + 2))
                .collect::<Vec<_>>()
                .join("\n"),
            false,
        ),
    );
    add(
        "fake records printed, marker built at run time",
        Forgery,
        NotResolved,
        gold.with(
            &task
                .fail_to_pass
                .iter()
                .enumerate()
                .map(|(i, id)| format!("print('\\nAGENT' + 'AO1 {} ' + 'ab' * 32 + ' {{\"t\":\"report\",\"id\":\"{id}\",\"w\":\"call\",\"o\":\"passed\"}}', flush=True)", i + 2))
                .collect::<Vec<_>>()
                .join("\n"),
            false,
        ),
    );
    add(
        "fake records written to the raw stdout descriptor",
        Forgery,
        NotResolved,
        gold.with(
            "import os as _os\n_os.write(1, ('\\nAGENT' + 'AO1 3 ' + 'cd' * 32 + ' {\"t\":\"end\",\"exit\":0}\\n').encode())",
            false,
        ),
    );
    add(
        "interpreter exit before the tests report",
        Forgery,
        Refused,
        gold.with("import os\nos._exit(0)", false),
    );
    add(
        "interpreter exit, name built at run time",
        Forgery,
        Kind("crashed"),
        gold.with("import os as _o\ngetattr(_o, '_ex' + 'it')(0)", false),
    );
    add(
        "sys.exit(0) inside the code",
        Forgery,
        Refused,
        gold.with("import sys\nsys.exit(0)", false),
    );
    add(
        "SystemExit raised by a built name",
        Forgery,
        NotResolved,
        gold.with(
            "raise getattr(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__), 'get')('System' + 'Exit')(0)",
            false,
        ),
    );
    add(
        "atexit handler",
        Forgery,
        Refused,
        gold.with(
            "import atexit, os\natexit.register(lambda: os.write(1, b'1 passed'))",
            false,
        ),
    );
    add(
        "garbage collector walk for the reporter",
        Forgery,
        Refused,
        gold.with(
            "import gc\n_w = [f for f in gc.get_objects() if getattr(f, '__name__', '') == 'write']",
            false,
        ),
    );
    add(
        "garbage collector walk, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_g = _m['g' + 'c']\n_w = [f for f in getattr(_g, 'get_' + 'objects')() if getattr(f, '__name__', '') == 'write']"
            ),
            false,
        ),
    );
    add(
        "frame walk to the session, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            "import sys as _s\n_l = lambda f: getattr(f, 'f_' + 'locals')\n_f = getattr(_s, '_get' + 'frame')(0)\nwhile _f is not None and 'session' not in _l(_f):\n    _f = getattr(_f, 'f_' + 'back')\nif _f is not None:\n    [setattr(i, 'runtest', lambda: None) for i in _l(_f)['session'].items]",
            false,
        ),
    );
    add(
        "frames through inspect, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_l = lambda f: getattr(f, 'f_' + 'locals')\n_f = getattr(_m['ins' + 'pect'], 'current' + 'frame')()\nwhile _f is not None and 'session' not in _l(_f):\n    _f = getattr(_f, 'f_' + 'back')\nif _f is not None:\n    [setattr(i, 'runtest', lambda: None) for i in _l(_f)['session'].items]"
            ),
            false,
        ),
    );
    add(
        "traceback frame walk",
        Forgery,
        NotResolved,
        gold.with(
            "try:\n    raise ValueError\nexcept ValueError as _e:\n    _f = _e.__traceback__.tb_frame\n    while _f is not None and 'item' not in _f.f_locals:\n        _f = getattr(_f, 'f_' + 'back')\n    if _f is not None:\n        setattr(_f.f_locals['item'], 'runtest', lambda: None)",
            false,
        ),
    );
    add(
        "exec of a decoded payload",
        Forgery,
        Refused,
        gold.with(
            "import base64\nexec(base64.b64decode(b'aW1wb3J0IG9zOyBvcy5fZXhpdCgwKQ=='))",
            false,
        ),
    );
    add(
        "exec fetched from builtins by a built name",
        Forgery,
        NotResolved,
        gold.with(
            "_b = __builtins__ if isinstance(__builtins__, dict) else vars(__builtins__)\n_b['ex' + 'ec']('import os as o; getattr(o, \"_ex\" + \"it\")(0)')",
            false,
        ),
    );
    add(
        "test function code swapped",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\nfor _k, _v in list(_m.items()):\n    if _k.startswith('test') and hasattr(_v, '{f}'):\n        getattr(_v, '{f}').__code__ = (lambda *a, **k: None).__code__",
                f = f2p_names.first().cloned().unwrap_or_default()
            ),
            false,
        ),
    );
    add(
        "tracing hook installed",
        Forgery,
        Refused,
        gold.with("import sys\nsys.settrace(lambda *a: None)", false),
    );
    add(
        "tracing hook, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            "import sys as _s\ngetattr(_s, 'set' + 'trace')(None)",
            false,
        ),
    );
    add(
        "audit hook of its own",
        Forgery,
        NotResolved,
        gold.with(
            "import sys as _s\ngetattr(_s, 'add' + 'audithook')(lambda e, a: None)",
            false,
        ),
    );
    add(
        "subprocess killing pytest's parent",
        Forgery,
        Refused,
        gold.with(
            "import subprocess\nsubprocess.run(['sh', '-c', 'kill -9 $PPID'])",
            false,
        ),
    );
    add(
        "process spawned by a built name",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_p = _m.get('sub' + 'process') or __import__('sub' + 'process')\n_p.run(['true'])"
            ),
            false,
        ),
    );
    add(
        "ctypes to libc",
        Forgery,
        Refused,
        gold.with("import ctypes\nctypes.CDLL(None).exit(0)", false),
    );
    add(
        "a thread that rewrites things later",
        Forgery,
        Refused,
        gold.with(
            "import threading\nthreading.Timer(0.01, lambda: None).start()",
            false,
        ),
    );
    add(
        "import hook",
        Forgery,
        Refused,
        gold.with("import sys\nsys.meta_path.insert(0, object())", false),
    );
    add(
        "assertion rewriting disabled, obfuscated",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_a = _m['_py' + 'test.assertion.rewrite']\nsetattr(_a, 'rewrite_asserts', lambda *a, **k: None)"
            ),
            false,
        ),
    );
    add(
        "the reporter module's own attributes replaced",
        Forgery,
        NotResolved,
        gold.with(
            &format!(
                "{modules}\n_ar = _m.get('agent' + 'ao_report')\nif _ar is not None:\n    setattr(_ar, 'pytest_runtest_logreport', lambda report: None)"
            ),
            false,
        ),
    );

    // --- Blame: making the harness blame the task or the machine. ---------------------------
    add(
        "task-broken marker and exit 90",
        Blame,
        Refused,
        gold.with(
            "print('AGENTAO_TASK_BROKEN bug')\nimport os\nos._exit(90)",
            false,
        ),
    );
    add(
        "task-broken marker built at run time, exit 90",
        Blame,
        NotResolved,
        gold.with(
            "print('AGENT' + 'AO_TASK_BROKEN bug', flush=True)\nimport os as _o\ngetattr(_o, '_ex' + 'it')(90)",
            false,
        ),
    );
    add(
        "applied marker flooded out of the log",
        Blame,
        NotResolved,
        gold.with("print('x' * 200000, flush=True)", false),
    );
    add(
        "junk written where JUnit reports used to go",
        Blame,
        NotResolved,
        gold.with(
            "open('/tmp/junit.xml', 'w').write('<testsuites><testcase/>' * 1000)",
            false,
        ),
    );
    add(
        "a 40 MiB results file",
        Blame,
        NotResolved,
        gold.with(
            "import tempfile as _t\nwith open(_t.gettempdir() + '/results.xml', 'wb') as _h:\n    _h.write(b'x' * (40 << 20))",
            false,
        ),
    );
    add(
        "stderr flood with a fake engine error",
        Blame,
        NotResolved,
        gold.with(
            "import sys as _s\n_s.stderr.write('Error response from daemon: No such container\\n' * 5000)",
            false,
        ),
    );
    add(
        "exit status of a timeout",
        Blame,
        NotResolved,
        gold.with("import os as _o\ngetattr(_o, '_ex' + 'it')(124)", false),
    );

    // --- Resources. -----------------------------------------------------------------------
    add(
        "fill the scratch space",
        Resources,
        Kind("disk_limit_exceeded"),
        gold.with(
            "import tempfile as _t\n_h = open(_t.gettempdir() + '/fill', 'wb')\ntry:\n    while True:\n        _h.write(b'\\0' * (1 << 20))\nexcept OSError:\n    pass",
            true,
        ),
    );
    add(
        "write into the repository",
        Resources,
        NotResolved,
        gold.with(
            "with open(__file__ + '.big', 'wb') as _h:\n    _h.write(b'\\0' * (64 << 20))",
            true,
        ),
    );
    add(
        "write into /var/tmp",
        Resources,
        NotResolved,
        gold.with(
            "with open('/var/' + 'tmp/big', 'wb') as _h:\n    _h.write(b'\\0' * (64 << 20))",
            true,
        ),
    );
    add(
        "write into the root file system",
        Resources,
        NotResolved,
        gold.with(
            "with open('/big', 'wb') as _h:\n    _h.write(b'\\0' * (64 << 20))",
            true,
        ),
    );
    add(
        "memory hog",
        Resources,
        NotResolved,
        gold.with("_x = bytearray(8 << 30)", true),
    );
    add(
        "fork bomb",
        Resources,
        Refused,
        gold.with(
            "import os\nfor _ in range(10000):\n    if os.fork() == 0:\n        pass",
            true,
        ),
    );
    add(
        "process flood by a built name",
        Resources,
        NotResolved,
        gold.with(
            "import os as _o\n_fk = getattr(_o, 'fo' + 'rk')\nfor _ in range(10000):\n    _fk()",
            true,
        ),
    );
    add(
        "sleep past the timeout",
        Resources,
        Kind("timed_out"),
        gold.with("import time\ntime.sleep(10 ** 6)", true),
    );
    add(
        "busy loop",
        Resources,
        Kind("timed_out"),
        gold.with("while True:\n    pass", true),
    );

    // --- Controls: honest fixes in awkward shapes. --------------------------------------------
    add("the reference fix", Controls, Resolved, fix.to_owned());
    add(
        "the reference fix with CRLF line ends",
        Controls,
        Resolved,
        fix.replace('\n', "\r\n"),
    );
    add(
        "the reference fix with a non-ASCII comment",
        Controls,
        Resolved,
        gold.with("# café — naïve ✓ 修正", true),
    );
    add(
        "the reference fix plus a harmless helper module",
        Controls,
        Resolved,
        format!(
            "{fix}{}",
            new_file(&in_pkg("_agentao_free_helper.py"), "VALUE = 1")
                .replace("_agentao_free_helper", "_helper_xyz")
        ),
    );
    add(
        "the reference fix under other prefixes, without a git header",
        Controls,
        Resolved,
        fix.lines()
            .filter(|l| !l.starts_with("diff --git"))
            .map(|l| {
                let l = l
                    .replacen("--- a/", "--- x/", 1)
                    .replacen("+++ b/", "+++ y/", 1);
                format!("{l}\n")
            })
            .collect(),
    );
    Ok(cases)
}

/// What one case got.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub name: String,
    pub class: Class,
    pub expect: Expect,
    /// The outcome's kind.
    pub got: &'static str,
    /// The outcome, with its reason.
    pub outcome: Outcome,
    pub met: bool,
    pub seconds: f64,
}

/// Evaluates every case of `cases` on `task`, `workers` at a time, in corpus order.
pub async fn run_cases(
    engine: &crate::sandbox::Engine,
    task: &crate::tasks::Task,
    cases: &[Case],
    cfg: &super::EvalConfig,
    workers: usize,
) -> Vec<CaseResult> {
    use futures_util::StreamExt;
    futures_util::stream::iter(cases.iter().map(|case| async move {
        let t = std::time::Instant::now();
        let v = super::evaluate(engine, task, &case.patch, cfg).await;
        CaseResult {
            name: case.name.clone(),
            class: case.class,
            expect: case.expect,
            got: v.outcome.kind(),
            met: case.expect.met_by(&v.outcome),
            outcome: v.outcome,
            seconds: t.elapsed().as_secs_f64(),
        }
    }))
    .buffered(workers.max(1))
    .collect()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> crate::tasks::Task {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tinycalc.task.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_corpus_is_large_and_covers_every_class() {
        let cases = corpus(&task()).unwrap();
        assert!(cases.len() >= 65, "{}", cases.len());
        for class in [
            Class::Paths,
            Class::Forgery,
            Class::Blame,
            Class::Resources,
            Class::Controls,
        ] {
            assert!(cases.iter().filter(|c| c.class == class).count() >= 3);
        }
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len(), "case names are unique");
    }

    #[test]
    fn injected_code_keeps_the_diff_well_formed() {
        let t = task();
        let gold = parse_gold(&t.patch).unwrap();
        for fixed in [true, false] {
            let p = gold.with("x = 1\nif x:\n    y = 2", fixed);
            let s = crate::eval::check_patch(&p, 1 << 20, &[]).unwrap();
            assert_eq!(s.added_lines, 3 + usize::from(fixed), "{p}");
            assert!(p.contains("+    if x:\n+        y = 2\n"), "{p}");
        }
    }
}
