//! A local GitHub for the harvest's tests: a REST API server on loopback that replays the
//! recorded exchanges of `tests/fixtures/github` (octokit/fixtures, MIT) as they are, and
//! serves a small repository built here with git2 (two issues, a fixing pull request with code
//! and test changes, and pull requests that must be skipped) in the same shapes and headers:
//! `Link` pagination, `ETag`/`If-None-Match` (304 spends no quota), `x-ratelimit-*`, and one
//! 403 "rate limit exceeded" with a reset a few seconds ahead. It also answers PyPI's JSON
//! API for the packages that lead to these repositories. The repository itself is cloned over
//! `file://`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OWNER: &str = "fixture-org";
const REPO: &str = "tinylib";
/// `id` of the repository in the `Link` URLs of its listing (as GitHub writes them).
const REPO_ID: u64 = 4242;
/// Items per page of the repository's issue listing.
const PER_PAGE: usize = 2;

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub status: u16,
    /// The `authorization` header sent.
    pub auth: String,
}

impl Hit {
    /// A request to GitHub's API (not the package index's JSON or simple API).
    pub fn is_github(&self) -> bool {
        !self.path.starts_with("/pypi/") && !self.path.starts_with("/simple/")
    }
}

/// The repository's history.
#[derive(Debug, Clone)]
pub struct History {
    pub clone_url: String,
    pub base: String,
    pub fix: String,
}

struct Canned {
    status: u16,
    content_type: String,
    body: String,
    headers: Vec<(String, String)>,
}

struct Shared {
    routes: BTreeMap<String, Canned>,
    /// Route keys answered once with a 403 rate-limit reply before their real answer.
    limit_once: Mutex<HashSet<String>>,
    remaining: AtomicU64,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Pull requests opened through the API, readable back at `/pulls/<n>`.
    opened: Mutex<BTreeMap<String, Canned>>,
    /// The fork `POST /forks` answers with (a bare repository pushed to over `file://`).
    fork_url: String,
}

pub struct GithubFixture {
    pub url: String,
    /// The fork's bare repository.
    pub fork: std::path::PathBuf,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    pub history: History,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GithubFixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GithubFixture {
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub async fn start() -> GithubFixture {
        let dir = tempfile::tempdir().unwrap();
        let history = build_repository(&dir.path().join("tinylib.git"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut routes = BTreeMap::new();
        replay_recordings(&mut routes);
        serve_repository(&mut routes, &history, &dir.path().join("tinylib.git"));
        pypi(&mut routes);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let fork = dir.path().join("fork.git");
        git2::Repository::init_bare(&fork).unwrap();
        let shared = Arc::new(Shared {
            opened: Mutex::new(BTreeMap::new()),
            fork_url: format!("file://{}", fork.display()),
            routes,
            limit_once: Mutex::new(HashSet::from([format!(
                "/repositories/{REPO_ID}/issues?page=2"
            )])),
            remaining: AtomicU64::new(5000),
            hits: hits.clone(),
        });
        let app = axum::Router::new().fallback(answer).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GithubFixture {
            url,
            fork,
            hits,
            history,
            _dir: dir,
            task,
        }
    }
}

fn fixture(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/github/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The route key of a request: its path, `?page=N` past the first page, `#diff` for diffs.
fn key(path: &str, query: Option<&str>, accept: &str) -> String {
    let page = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("page="))
        .filter(|p| *p != "1");
    let mut k = path.to_owned();
    if let Some(p) = page {
        k.push_str(&format!("?page={p}"));
    }
    if accept.contains("diff") {
        k.push_str("#diff");
    }
    k
}

async fn answer(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let uri = req.uri().clone();
    let accept = header(req.headers(), "accept");
    let k = key(uri.path(), uri.query(), &accept);
    let full = uri
        .path_and_query()
        .map_or(uri.path().to_owned(), |p| p.to_string());
    let auth = header(req.headers(), "authorization");
    let headers = req.headers().clone();
    let post = req.method() == axum::http::Method::POST;
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let (status, resp) = if post {
        created(&s, uri.path(), &body)
    } else {
        match s.opened.lock().unwrap().get(&k) {
            Some(c) => (200, build(200, &c.content_type, c.body.clone(), &c.headers)),
            None => respond(&s, &k, &headers),
        }
    };
    s.hits.lock().unwrap().push(Hit {
        path: full,
        status,
        auth,
    });
    resp
}

/// `POST /repos/{owner}/{repo}/forks` and `/pulls`, as GitHub answers them.
fn created(s: &Shared, path: &str, body: &[u8]) -> (u16, Response) {
    let repo = format!("/repos/{OWNER}/{REPO}");
    let ct = "application/json; charset=utf-8";
    if path == format!("{repo}/forks") {
        let fork = json!({"id": 4343, "name": REPO, "full_name": format!("miner-fork/{REPO}"),
            "owner": {"login": "miner-fork", "id": 4343, "type": "User"},
            "fork": true, "clone_url": s.fork_url, "default_branch": "main"});
        return (
            202,
            build(202, ct, fork.to_string(), &recorded_headers(None)),
        );
    }
    if path == format!("{repo}/pulls") {
        let Ok(req) = serde_json::from_slice::<Value>(body) else {
            return (
                400,
                build(
                    400,
                    ct,
                    json!({"message": "Problems parsing JSON"}).to_string(),
                    &[],
                ),
            );
        };
        let mut opened = s.opened.lock().unwrap();
        let n = 100 + opened.len() as u64;
        let pr = json!({"number": n, "state": "open", "title": req["title"], "body": req["body"],
            "html_url": format!("https://github.com/{OWNER}/{REPO}/pull/{n}"),
            "head": {"label": req["head"], "ref": req["head"].as_str().unwrap_or("").split(':').nth(1)},
            "base": {"ref": req["base"]}, "maintainer_can_modify": req["maintainer_can_modify"]});
        opened.insert(format!("{repo}/pulls/{n}"), json_route(pr.clone(), None));
        return (201, build(201, ct, pr.to_string(), &recorded_headers(None)));
    }
    (
        404,
        build(404, ct, json!({"message": "Not Found"}).to_string(), &[]),
    )
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn respond(s: &Shared, k: &str, req: &HeaderMap) -> (u16, Response) {
    let Some(c) = s.routes.get(k) else {
        let body = json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"});
        return (
            404,
            build(
                404,
                "application/json; charset=utf-8",
                body.to_string(),
                &[],
            ),
        );
    };
    if s.limit_once.lock().unwrap().remove(k) {
        let reset = (now() + 2).to_string();
        let body = json!({
            "message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)",
            "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"
        });
        let h = [
            ("x-ratelimit-limit".to_owned(), "5000".to_owned()),
            ("x-ratelimit-remaining".to_owned(), "0".to_owned()),
            ("x-ratelimit-used".to_owned(), "5000".to_owned()),
            ("x-ratelimit-reset".to_owned(), reset),
            ("x-ratelimit-resource".to_owned(), "core".to_owned()),
        ];
        return (
            403,
            build(403, "application/json; charset=utf-8", body.to_string(), &h),
        );
    }
    let etag = c
        .headers
        .iter()
        .find(|(n, _)| n == "etag")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("W/\"{}\"", hex::encode(Sha256::digest(c.body.as_bytes()))));
    let mut h: Vec<(String, String)> = c
        .headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "etag" | "x-ratelimit-remaining" | "x-ratelimit-reset"
            )
        })
        .cloned()
        .collect();
    h.push(("etag".into(), etag.clone()));
    h.push(("x-ratelimit-reset".into(), (now() + 3600).to_string()));
    if header(req, "if-none-match") == etag {
        // A conditional request answered from the client's cache costs no quota.
        let left = s.remaining.load(Ordering::SeqCst).to_string();
        h.push(("x-ratelimit-remaining".into(), left));
        return (304, build(304, &c.content_type, String::new(), &h));
    }
    let left = s.remaining.fetch_sub(1, Ordering::SeqCst) - 1;
    h.push(("x-ratelimit-remaining".into(), left.to_string()));
    (
        c.status,
        build(c.status, &c.content_type, c.body.clone(), &h),
    )
}

fn build(status: u16, content_type: &str, body: String, headers: &[(String, String)]) -> Response {
    let mut r = Response::builder().status(status);
    if status != 304 {
        r = r.header("content-type", content_type);
    }
    for (n, v) in headers {
        if matches!(
            n.as_str(),
            "content-length" | "connection" | "content-type" | "transfer-encoding"
        ) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(v) {
            r = r.header(n.as_str(), v);
        }
    }
    r.body(Body::from(body)).unwrap()
}

/// The recorded pages of `paginate-issues` and the recorded repository, as they are.
fn replay_recordings(routes: &mut BTreeMap<String, Canned>) {
    for (i, exchange) in fixture("paginate-issues")
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let path = exchange["path"].as_str().unwrap();
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let k = key(p, Some(q), "");
        let k = if i == 0 {
            "/repos/octokit-fixture-org/paginate-issues/issues".to_owned()
        } else {
            k
        };
        routes.insert(k, recorded(exchange));
    }
    let repo = &fixture("get-repository")[0];
    routes.insert(
        "/repos/octokit-fixture-org/paginate-issues".into(),
        recorded(repo),
    );
}

fn recorded(exchange: &Value) -> Canned {
    let headers: Vec<(String, String)> = exchange["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect();
    Canned {
        status: exchange["status"].as_u64().unwrap() as u16,
        content_type: "application/json; charset=utf-8".into(),
        body: exchange["response"].to_string(),
        headers,
    }
}

/// The headers of the recorded exchanges, for the answers made here.
fn recorded_headers(link: Option<String>) -> Vec<(String, String)> {
    let first = &fixture("paginate-issues")[0];
    let mut h: Vec<(String, String)> = [
        "cache-control",
        "x-github-media-type",
        "x-ratelimit-limit",
        "x-ratelimit-resource",
        "x-content-type-options",
        "access-control-expose-headers",
    ]
    .iter()
    .filter_map(|n| {
        first["headers"][*n]
            .as_str()
            .map(|v| ((*n).to_owned(), v.to_owned()))
    })
    .collect();
    if let Some(l) = link {
        h.push(("link".into(), l));
    }
    h
}

fn json_route(body: Value, link: Option<String>) -> Canned {
    Canned {
        status: 200,
        content_type: "application/json; charset=utf-8".into(),
        body: body.to_string(),
        headers: recorded_headers(link),
    }
}

const GONE_BASE: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de";

/// The issues and pull requests of `fixture-org/tinylib`, shaped like the recorded issues.
fn serve_repository(routes: &mut BTreeMap<String, Canned>, h: &History, bare: &Path) {
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

fn pypi(routes: &mut BTreeMap<String, Canned>) {
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

const PYPROJECT: &str = "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"tinylib\"\nversion = \"1.0.0\"\n";
const LIB_BUGGY: &str = "\"\"\"A tiny library: the GitHub harvest's fixture.\"\"\"\n\n\ndef clamp(value, low, high):\n    \"\"\"Limits value to [low, high].\"\"\"\n    if value < low:\n        return low\n    if value > high:\n        return value\n    return value\n\n\ndef mean(values):\n    return sum(values) / len(values)\n";
const TEST_BASIC: &str = "from tinylib import clamp, mean\n\n\ndef test_clamp_low():\n    assert clamp(-5, 0, 10) == 0\n\n\ndef test_mean():\n    assert mean([1, 2, 3]) == 2\n";
const TEST_CLAMP: &str = "from tinylib import clamp\n\n\ndef test_clamp_high():\n    assert clamp(15, 0, 10) == 10\n    assert clamp(5, -3, -1) == -1\n\n\ndef test_clamp_inside():\n    assert clamp(5, 0, 10) == 5\n";

/// Builds the bare repository: `main` at the fix, the pull requests' heads under
/// `refs/pull/<n>/head`, as GitHub keeps them.
fn build_repository(bare: &Path) -> History {
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
