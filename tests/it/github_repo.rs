//! The repository behind the local GitHub of `github_server.rs`: its history built with git2
//! (a buggy `clamp`, the fixing pull request with code and test changes, a change without
//! tests), and the issues, pull requests, diffs and file lists the API serves for it, shaped
//! like the recorded exchanges of octokit/fixtures. Also the PyPI JSON answers that lead to it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::github_server::{
    Canned, OWNER, PER_PAGE, REPO, REPO_ID, fixture, json_route, recorded_headers,
};

/// The repository's history.
#[derive(Debug, Clone)]
pub struct History {
    pub clone_url: String,
    pub base: String,
    pub fix: String,
}

const GONE_BASE: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de";

/// The issues and pull requests of `fixture-org/tinylib`, shaped like the recorded issues.
pub(crate) fn serve_repository(routes: &mut BTreeMap<String, Canned>, h: &History, bare: &Path) {
    let template = fixture("paginate-issues")[0]["response"][0].clone();
    let base = format!("/repos/{OWNER}/{REPO}");
    let web = format!("https://github.com/{OWNER}/{REPO}");
    let mut repo = fixture("get-repository")[0]["response"].clone();
    repo["name"] = json!(REPO);
    repo["full_name"] = json!(format!("{OWNER}/{REPO}"));
    repo["id"] = json!(REPO_ID);
    repo["clone_url"] = json!(h.clone_url);
    repo["html_url"] = json!(web);
    repo["default_branch"] = json!("main");
    routes.insert(base.clone(), json_route(repo, None));

    let issue = |n: u64, title: &str, body: &str, comments: u64, pr: Option<Value>| {
        let mut v = template.clone();
        v["number"] = json!(n);
        v["id"] = json!(5000 + n);
        v["title"] = json!(title);
        v["body"] = json!(body);
        v["state"] = json!("closed");
        v["comments"] = json!(comments);
        v["created_at"] = json!(format!("2026-01-0{n}T10:00:00Z"));
        v["closed_at"] = json!(format!("2026-01-0{n}T12:00:00Z"));
        v["url"] = json!(format!("https://api.github.com{base}/issues/{n}"));
        let kind = if pr.is_some() { "pull" } else { "issues" };
        v["html_url"] = json!(format!("{web}/{kind}/{n}"));
        match pr {
            Some(p) => v["pull_request"] = p,
            None => {
                v.as_object_mut().unwrap().remove("pull_request");
            }
        }
        v
    };
    let merged = |n: u64| {
        Some(json!({
            "url": format!("https://api.github.com{base}/pulls/{n}"),
            "html_url": format!("{web}/pull/{n}"),
            "diff_url": format!("{web}/pull/{n}.diff"),
            "patch_url": format!("{web}/pull/{n}.patch"),
            "merged_at": format!("2026-01-0{n}T12:00:00Z"),
        }))
    };
    let items = [
        issue(
            1,
            "clamp() returns values above the upper bound",
            "`tinylib.clamp(15, 0, 10)` returns 15; I expected 10.\n\nVersion 1.0.",
            1,
            None,
        ),
        issue(
            2,
            "mean() is undocumented",
            "What does `mean([])` do?",
            0,
            None,
        ),
        issue(
            3,
            "Make clamp respect its upper bound",
            "Fixes #1.\n\nThe upper branch returned the value itself.",
            0,
            merged(3),
        ),
        issue(
            4,
            "Document mean()",
            "A docstring, no behaviour change.",
            0,
            merged(4),
        ),
        issue(5, "Document mean() (take two)", "Resolves #2", 0, merged(5)),
        issue(6, "Clamp fix, rebased", "fixes #1", 0, merged(6)),
        issue(7, "CI: bump actions", "Housekeeping.", 0, merged(7)),
        issue(8, "Old closed issue", "Nothing links here.", 0, None),
    ];
    let pages: Vec<&[Value]> = items.chunks(PER_PAGE).collect();
    let last = pages.len();
    let page_url = |p: usize| {
        format!(
            "https://api.github.com/repositories/{REPO_ID}/issues?state=closed&per_page={PER_PAGE}&page={p}"
        )
    };
    for (i, chunk) in pages.iter().enumerate() {
        let p = i + 1;
        let mut links = Vec::new();
        if p > 1 {
            links.push(format!("<{}>; rel=\"prev\"", page_url(p - 1)));
        }
        if p < last {
            links.push(format!("<{}>; rel=\"next\"", page_url(p + 1)));
            links.push(format!("<{}>; rel=\"last\"", page_url(last)));
        }
        if p > 1 {
            links.push(format!("<{}>; rel=\"first\"", page_url(1)));
        }
        let k = if p == 1 {
            format!("{base}/issues")
        } else {
            format!("/repositories/{REPO_ID}/issues?page={p}")
        };
        routes.insert(
            k,
            json_route(Value::Array(chunk.to_vec()), Some(links.join(", "))),
        );
    }
    // The open ones: an issue (a task with no fix yet) and a pull request (left out).
    let open = |mut v: Value| {
        v["state"] = json!("open");
        v["closed_at"] = Value::Null;
        v
    };
    let mut open_pr = open(issue(
        10,
        "WIP: mean of nothing",
        "Towards #9.",
        0,
        merged(10),
    ));
    open_pr["pull_request"]["merged_at"] = Value::Null;
    open_pr["created_at"] = json!("2026-01-10T10:00:00Z");
    routes.insert(
        format!("{base}/issues?state=open"),
        json_route(
            json!([
                open(issue(9, OPEN_ISSUE_TITLE, OPEN_ISSUE_BODY, 0, None)),
                open_pr
            ]),
            None,
        ),
    );
    routes.insert(
        format!("{base}/issues/1/comments"),
        json_route(
            json!([{
                "id": 9001, "node_id": "MDEyOklzc3VlQ29tbWVudDkwMDE=",
                "url": format!("https://api.github.com{base}/issues/comments/9001"),
                "html_url": format!("{web}/issues/1#issuecomment-9001"),
                "body": "Same here with negative ranges: clamp(5, -3, -1) gives 5.",
                "user": template["user"].clone(),
                "created_at": "2026-01-01T11:00:00Z", "updated_at": "2026-01-01T11:00:00Z",
                "author_association": "NONE"
            }]),
            None,
        ),
    );

    let repo2 = git2::Repository::open_bare(bare).unwrap();
    let fix_diff = diff_text(&repo2, &h.base, &h.fix);
    let notests = repo2.refname_to_id("refs/pull/4/head").unwrap().to_string();
    let notest_diff = diff_text(&repo2, &h.base, &notests);
    // A diff whose hunk says it has more lines than it has.
    let malformed = notest_diff.replacen("@@ -", "@@ -1,40 +1,40 @@ was: ", 1);
    let pulls: Vec<(u64, &str, &str, String, &str)> = vec![
        (
            3,
            h.base.as_str(),
            h.fix.as_str(),
            fix_diff.clone(),
            "Make clamp respect its upper bound",
        ),
        (
            4,
            h.base.as_str(),
            notests.as_str(),
            notest_diff.clone(),
            "Document mean()",
        ),
        (
            5,
            h.base.as_str(),
            notests.as_str(),
            malformed,
            "Document mean() (take two)",
        ),
        (6, GONE_BASE, h.fix.as_str(), fix_diff, "Clamp fix, rebased"),
        (
            7,
            h.base.as_str(),
            notests.as_str(),
            notest_diff,
            "CI: bump actions",
        ),
    ];
    for (n, base_sha, head_sha, diff, title) in pulls {
        let body = items[(n - 1) as usize]["body"].clone();
        let pull = json!({
            "url": format!("https://api.github.com{base}/pulls/{n}"),
            "id": 7000 + n, "node_id": "MDExOlB1bGxSZXF1ZXN0NzAwMA==",
            "html_url": format!("{web}/pull/{n}"),
            "diff_url": format!("{web}/pull/{n}.diff"),
            "number": n, "state": "closed", "locked": false, "title": title,
            "user": template["user"].clone(), "body": body,
            "created_at": format!("2026-01-0{n}T10:30:00Z"),
            "updated_at": format!("2026-01-0{n}T12:00:00Z"),
            "closed_at": format!("2026-01-0{n}T12:00:00Z"),
            "merged_at": format!("2026-01-0{n}T12:00:00Z"),
            "merge_commit_sha": head_sha,
            "head": {"label": format!("{OWNER}:fix-{n}"), "ref": format!("fix-{n}"), "sha": head_sha},
            "base": {"label": format!("{OWNER}:main"), "ref": "main", "sha": base_sha},
            "merged": true, "commits": 1, "additions": 3, "deletions": 1, "changed_files": 2
        });
        routes.insert(format!("{base}/pulls/{n}"), json_route(pull, None));
        let files: Vec<Value> = diff
            .split("diff --git a/")
            .skip(1)
            .map(|s| {
                let name = s.split(' ').next().unwrap();
                json!({"sha": head_sha, "filename": name, "status": "modified",
                       "blob_url": format!("{web}/blob/{head_sha}/{name}"),
                       "raw_url": format!("{web}/raw/{head_sha}/{name}")})
            })
            .collect();
        routes.insert(
            format!("{base}/pulls/{n}/files"),
            json_route(Value::Array(files), None),
        );
        routes.insert(
            format!("{base}/pulls/{n}#diff"),
            Canned {
                status: 200,
                content_type: "application/vnd.github.diff; charset=utf-8".into(),
                body: diff,
                headers: recorded_headers(None),
            },
        );
        let message = if n == 4 {
            "Document mean()\n\nCloses #2".to_owned()
        } else {
            title.to_owned()
        };
        routes.insert(
            format!("{base}/pulls/{n}/commits"),
            json_route(json!([{"sha": head_sha, "commit": {"message": message,
                "author": {"name": "Fixture", "email": "fixture@example.invalid", "date": "2026-01-01T10:00:00Z"}}}]), None),
        );
    }
}

pub(crate) fn pypi(routes: &mut BTreeMap<String, Canned>) {
    let mut add = |name: &str, urls: Value| {
        routes.insert(
            format!("/pypi/{name}/json"),
            json_route(json!({"info": {"name": name, "version": "1.0", "project_urls": urls, "home_page": null}}), None),
        );
    };
    add(
        "tinylib",
        json!({"Documentation": "https://tinylib.readthedocs.io", "Source": format!("https://github.com/{OWNER}/{REPO}")}),
    );
    add(
        "gonepkg",
        json!({"Source": "https://github.com/fixture-org/deleted"}),
    );
    add(
        "nogithub",
        json!({"Homepage": "https://gitlab.com/someone/nogithub"}),
    );
    add(
        "paginated",
        json!({"Repository": "https://github.com/octokit-fixture-org/paginate-issues.git"}),
    );
}

fn tree_of(repo: &git2::Repository, commit: &str) -> git2::Oid {
    repo.find_commit(git2::Oid::from_str(commit).unwrap())
        .unwrap()
        .tree_id()
}

/// `git diff` between two commits, as GitHub serves a pull request's diff.
fn diff_text(repo: &git2::Repository, from: &str, to: &str) -> String {
    let a = repo.find_tree(tree_of(repo, from)).unwrap();
    let b = repo.find_tree(tree_of(repo, to)).unwrap();
    let diff = repo.diff_tree_to_tree(Some(&a), Some(&b), None).unwrap();
    let mut out = String::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin());
        }
        out.push_str(std::str::from_utf8(line.content()).unwrap());
        true
    })
    .unwrap();
    out
}

/// The open issue #9 of the fixture repository.
pub const OPEN_ISSUE_TITLE: &str = "mean([]) raises ZeroDivisionError";
pub const OPEN_ISSUE_BODY: &str = "`tinylib.mean([])` fails with `ZeroDivisionError: division by zero`. An empty list should raise a `ValueError` that says the list is empty.";

const PYPROJECT: &str = "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"tinylib\"\nversion = \"1.0.0\"\n";
const LIB_BUGGY: &str = "\"\"\"A tiny library: the GitHub harvest's fixture.\"\"\"\n\n\ndef clamp(value, low, high):\n    \"\"\"Limits value to [low, high].\"\"\"\n    if value < low:\n        return low\n    if value > high:\n        return value\n    return value\n\n\ndef mean(values):\n    return sum(values) / len(values)\n";
const TEST_BASIC: &str = "from tinylib import clamp, mean\n\n\ndef test_clamp_low():\n    assert clamp(-5, 0, 10) == 0\n\n\ndef test_mean():\n    assert mean([1, 2, 3]) == 2\n";
const TEST_CLAMP: &str = "from tinylib import clamp\n\n\ndef test_clamp_high():\n    assert clamp(15, 0, 10) == 10\n    assert clamp(5, -3, -1) == -1\n\n\ndef test_clamp_inside():\n    assert clamp(5, 0, 10) == 5\n";

/// Builds the bare repository: `main` at the fix, the pull requests' heads under
/// `refs/pull/<n>/head`, as GitHub keeps them; `salt`, when not empty, is a file `SALT` in
/// every commit.
pub(crate) fn build_repository(bare: &Path, salt: &str) -> History {
    let repo = git2::Repository::init_bare(bare).unwrap();
    let sig = git2::Signature::new(
        "Fixture",
        "fixture@example.invalid",
        &git2::Time::new(1_767_261_600, 0),
    )
    .unwrap();
    let files = |extra: &[(&str, &str)]| {
        let mut m: BTreeMap<String, String> = BTreeMap::from([
            ("pyproject.toml".into(), PYPROJECT.into()),
            ("tinylib/__init__.py".into(), LIB_BUGGY.into()),
            ("tests/test_basic.py".into(), TEST_BASIC.into()),
        ]);
        for (p, c) in extra {
            m.insert((*p).into(), (*c).into());
        }
        if !salt.is_empty() {
            m.insert("SALT".into(), salt.into());
        }
        m
    };
    let commit =
        |files: &BTreeMap<String, String>, parent: Option<git2::Oid>, msg: &str, refname: &str| {
            let t = repo.find_tree(write_tree(&repo, files)).unwrap();
            let parents: Vec<git2::Commit> = parent
                .iter()
                .map(|p| repo.find_commit(*p).unwrap())
                .collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            repo.commit(Some(refname), &sig, &sig, msg, &t, &refs)
                .unwrap()
        };
    let base = commit(&files(&[]), None, "tinylib 1.0", "refs/heads/main");
    let fixed = LIB_BUGGY.replace(
        "    if value > high:\n        return value",
        "    if value > high:\n        return high",
    );
    let fix = commit(
        &files(&[
            ("tinylib/__init__.py", &fixed),
            ("tests/test_clamp.py", TEST_CLAMP),
        ]),
        Some(base),
        "Make clamp respect its upper bound\n\nFixes #1",
        "refs/pull/3/head",
    );
    let documented = LIB_BUGGY.replace("def mean(values):\n", "def mean(values):\n    \"\"\"The arithmetic mean; raises ZeroDivisionError on an empty list.\"\"\"\n");
    commit(
        &files(&[("tinylib/__init__.py", &documented)]),
        Some(base),
        "Document mean()\n\nCloses #2",
        "refs/pull/4/head",
    );
    repo.reference("refs/heads/main", fix, true, "merge #3")
        .unwrap();
    History {
        clone_url: format!("file://{}", bare.display()),
        base: base.to_string(),
        fix: fix.to_string(),
    }
}

fn write_tree(repo: &git2::Repository, files: &BTreeMap<String, String>) -> git2::Oid {
    let mut b = repo.treebuilder(None).unwrap();
    let mut dirs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (p, c) in files {
        match p.split_once('/') {
            Some((d, rest)) => {
                dirs.entry(d.to_owned())
                    .or_default()
                    .insert(rest.to_owned(), c.clone());
            }
            None => {
                let blob = repo.blob(c.as_bytes()).unwrap();
                b.insert(p, blob, 0o100644).unwrap();
            }
        }
    }
    for (d, sub) in dirs {
        let t = write_tree(repo, &sub);
        b.insert(&d, t, 0o040000).unwrap();
    }
    b.write().unwrap()
}
