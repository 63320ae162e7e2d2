//! A local GitHub for the harvest's tests: a REST API server on loopback that replays the
//! recorded exchanges of `tests/fixtures/github` (octokit/fixtures, MIT) as they are, and
//! serves a small repository built here with git2 (two issues, a fixing pull request with code
//! and test changes, and pull requests that must be skipped; an open issue and an open pull
//! request in the listing of open ones) in the same shapes and headers:
//! `Link` pagination, `ETag`/`If-None-Match` (304 spends no quota), `x-ratelimit-*`, and one
//! 403 "rate limit exceeded" with a reset a few seconds ahead. It also answers PyPI's JSON
//! API for the packages that lead to these repositories. The repository itself is cloned over
//! `file://`, from `<git_base_url>/fixture-org/tinylib`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{Value, json};

use crate::github_repo::{History, build_repository, pypi, serve_repository};
use sha2::{Digest, Sha256};

pub(crate) const OWNER: &str = "fixture-org";
pub(crate) const REPO: &str = "tinylib";
/// `id` of the repository in the `Link` URLs of its listing (as GitHub writes them).
pub(crate) const REPO_ID: u64 = 4242;
/// Items per page of the repository's issue listing.
pub(crate) const PER_PAGE: usize = 2;

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

pub(crate) struct Canned {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: String,
    pub(crate) headers: Vec<(String, String)>,
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
    /// `file://` folder holding the repository as `fixture-org/tinylib` (its `clone_url`).
    pub git_base_url: String,
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
        GithubFixture::start_salted("").await
    }

    /// The fixture with `salt` as the content of a file `SALT` in every commit (none when
    /// empty): the same repository with trees, and so environment images, of its own.
    pub async fn start_salted(salt: &str) -> GithubFixture {
        let dir = tempfile::tempdir().unwrap();
        // Where GitHub keeps it, under a base URL a miner may clone from (`git_base_url`).
        let bare = dir.path().join("git").join(OWNER).join(REPO);
        std::fs::create_dir_all(&bare).unwrap();
        let history = build_repository(&bare, salt);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut routes = BTreeMap::new();
        replay_recordings(&mut routes);
        serve_repository(&mut routes, &history, &bare);
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
            git_base_url: format!("file://{}", dir.path().join("git").display()),
            url,
            fork,
            hits,
            history,
            _dir: dir,
            task,
        }
    }
}

pub(crate) fn fixture(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/github/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The route key of a request: its path, `?state=open` for a listing of open issues, `?page=N`
/// past the first page, `#diff` for diffs.
fn key(path: &str, query: Option<&str>, accept: &str) -> String {
    let page = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("page="))
        .filter(|p| *p != "1");
    let mut k = path.to_owned();
    if query.unwrap_or("").split('&').any(|kv| kv == "state=open") {
        k.push_str("?state=open");
    }
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
pub(crate) fn recorded_headers(link: Option<String>) -> Vec<(String, String)> {
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

pub(crate) fn json_route(body: Value, link: Option<String>) -> Canned {
    Canned {
        status: 200,
        content_type: "application/json; charset=utf-8".into(),
        body: body.to_string(),
        headers: recorded_headers(link),
    }
}
