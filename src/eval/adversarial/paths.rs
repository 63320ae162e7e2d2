//! Paths: what the text hides, judged on what applying changed.

use super::Class::*;
use super::Expect::*;
use super::gold::{insert_top, new_file};
use super::{Cases, Ctx};

/// Adds this class's cases, in corpus order.
pub(super) fn add(cx: &Ctx<'_>, cases: &mut Cases) {
    let gold = &cx.gold;
    let test_file: &str = &cx.test_file;
    let test_dir: &str = &cx.test_dir;
    let fake_tests: &str = &cx.fake_tests;
    let fix: &str = cx.gold.patch;
    let top_module: &str = &cx.top_module;
    let in_pkg = |name: &str| cx.in_pkg(name);
    let in_tests = |name: &str| cx.in_tests(name);
    let mut add = |name: &str, class, expect, patch: String| cases.add(name, class, expect, patch);
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
                fake_tests
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
            fake_tests,
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
}
