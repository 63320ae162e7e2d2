//! The GitHub REST client: octocrab for the connection (`GITHUB_API_URL` as its base URI, the
//! token as a bearer), and on top of it what a harvest needs to be a good citizen:
//! conditional requests from an on-disk ETag cache (a 304 costs no quota), `Link` pagination,
//! and rate limits honoured by waiting (`x-ratelimit-remaining`/`-reset`, and `retry-after`
//! on secondary limits) rather than failing.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{ACCEPT, HeaderMap, HeaderValue, IF_NONE_MATCH};
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::GithubError;

/// The public API, used when `GITHUB_API_URL` names no other.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// JSON, as GitHub documents it.
pub const JSON: &str = "application/vnd.github+json";
/// A pull request as a unified diff.
pub const DIFF: &str = "application/vnd.github.diff";

/// How to reach GitHub.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub api_url: String,
    pub token: Option<String>,
    /// Where the ETag cache lives (`<cache>/github/http`).
    pub cache_dir: PathBuf,
    /// Longest single wait for a rate limit to reset; a longer one is an error.
    pub max_wait: Duration,
}

impl GithubConfig {
    pub fn new(api_url: Option<&str>, token: Option<&str>, cache_dir: &std::path::Path) -> Self {
        GithubConfig {
            api_url: api_url
                .filter(|u| !u.trim().is_empty())
                .unwrap_or(DEFAULT_API_URL)
                .trim_end_matches('/')
                .to_owned(),
            token: token.filter(|t| !t.trim().is_empty()).map(str::to_owned),
            cache_dir: cache_dir.join("github").join("http"),
            max_wait: Duration::from_secs(3600),
        }
    }
}

/// What the client spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Requests sent (304s and retries included).
    pub requests: u64,
    /// Answered 304 Not Modified from the cache: no quota spent.
    pub not_modified: u64,
    /// Requests that counted against the rate limit (everything but 304s).
    pub quota: u64,
    /// Times the client waited for a rate limit.
    pub rate_waits: u64,
}

/// One answer: the body (from the wire or the cache) and the `Link: rel="next"` target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fetched {
    pub body: String,
    pub next: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
}

impl Fetched {
    pub fn json<T: DeserializeOwned>(&self, url: &str) -> Result<T, GithubError> {
        serde_json::from_str(&self.body).map_err(|e| GithubError::Decode {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// The client.
pub struct GithubClient {
    octo: Octocrab,
    cfg: GithubConfig,
    requests: AtomicU64,
    not_modified: AtomicU64,
    rate_waits: AtomicU64,
    /// Set when the last answer said the quota is used up: no request before this time.
    blocked_until: Mutex<Option<u64>>,
}

/// How long a 404 is believed without asking again.
pub const GONE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Most attempts at one URL (rate-limit waits included).
const ATTEMPTS: usize = 6;

impl GithubClient {
    pub fn new(cfg: GithubConfig) -> Result<GithubClient, GithubError> {
        let mut builder = Octocrab::builder()
            .base_uri(cfg.api_url.as_str())
            .map_err(|e| GithubError::Config(format!("GITHUB_API_URL {}: {e}", cfg.api_url)))?
            .add_header(
                http::header::USER_AGENT,
                concat!("agentao/", env!("CARGO_PKG_VERSION")).to_owned(),
            )
            .set_connect_timeout(Some(Duration::from_secs(20)))
            .set_read_timeout(Some(Duration::from_secs(120)));
        if let Some(token) = &cfg.token {
            builder = builder.personal_token(token.clone());
        }
        let octo = builder
            .build()
            .map_err(|e| GithubError::Config(e.to_string()))?;
        Ok(GithubClient {
            octo,
            cfg,
            requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            rate_waits: AtomicU64::new(0),
            blocked_until: Mutex::new(None),
        })
    }

    pub fn api_url(&self) -> &str {
        &self.cfg.api_url
    }

    /// The token, for a git push over HTTPS to a fork.
    pub fn token(&self) -> Option<&str> {
        self.cfg.token.as_deref()
    }

    /// What was spent so far.
    pub fn usage(&self) -> Usage {
        let requests = self.requests.load(Ordering::Relaxed);
        let not_modified = self.not_modified.load(Ordering::Relaxed);
        Usage {
            requests,
            not_modified,
            quota: requests - not_modified,
            rate_waits: self.rate_waits.load(Ordering::Relaxed),
        }
    }

    /// GETs `path` (a path below the API, or a full URL whose path is used) as `accept`,
    /// conditionally when the cache has an ETag for it.
    pub async fn get(&self, path: &str, accept: &str) -> Result<Fetched, GithubError> {
        let path = relative(path);
        let key = cache_key(&path, accept);
        if self.known_gone(&key) {
            debug!(%path, "gone (404) within the last day; not asked again");
            return Err(GithubError::NotFound { url: path });
        }
        let cached = self.cache_read(&key);
        for _ in 0..ATTEMPTS {
            self.wait_if_blocked().await?;
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, header(accept));
            headers.insert("X-GitHub-Api-Version", header("2022-11-28"));
            if let Some(etag) = cached.as_ref().and_then(|c| c.etag.as_deref()) {
                headers.insert(IF_NONE_MATCH, header(etag));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .octo
                ._get_with_headers(path.as_str(), Some(headers))
                .await
                .map_err(http_error(&path))?;
            let status = resp.status();
            let h = resp.headers().clone();
            if status == http::StatusCode::NOT_MODIFIED {
                self.not_modified.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = cached {
                    debug!(%path, "304 not modified");
                    return Ok(c);
                }
                return Err(GithubError::Http {
                    url: path,
                    reason: "304 without a cached copy".into(),
                });
            }
            self.note_quota(&h);
            let body = self
                .octo
                .body_to_string(resp)
                .await
                .map_err(http_error(&path))?;
            if status.is_success() {
                let fetched = Fetched {
                    body,
                    next: h
                        .get("link")
                        .and_then(|v| v.to_str().ok())
                        .and_then(next_link),
                    etag: h
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                };
                if fetched.etag.is_some() {
                    self.cache_write(&key, &fetched);
                }
                return Ok(fetched);
            }
            let message = error_message(&body);
            match status.as_u16() {
                403 | 429 => {
                    let wait =
                        rate_limit_wait(&h, now_secs()).ok_or_else(|| GithubError::Forbidden {
                            url: path.clone(),
                            message: message.clone(),
                        })?;
                    if wait > self.cfg.max_wait {
                        return Err(GithubError::RateLimited {
                            url: path,
                            wait_secs: wait.as_secs(),
                        });
                    }
                    info!(%path, wait_s = wait.as_secs_f64(), "rate limited; waiting");
                    self.rate_waits.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
                404 | 410 => {
                    self.remember_gone(&key);
                    return Err(GithubError::NotFound { url: path });
                }
                s => {
                    return Err(GithubError::Status {
                        url: path,
                        status: s,
                        message,
                    });
                }
            }
        }
        Err(GithubError::RateLimited {
            url: path,
            wait_secs: 0,
        })
    }

    /// POSTs `body` as JSON to `path` (never cached, never retried: a write may have happened)
    /// and returns the answer's JSON.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, GithubError> {
        let path = relative(path);
        self.wait_if_blocked().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .octo
            ._post(path.as_str(), Some(body))
            .await
            .map_err(http_error(&path))?;
        let status = resp.status();
        self.note_quota(resp.headers());
        let text = self
            .octo
            .body_to_string(resp)
            .await
            .map_err(http_error(&path))?;
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if status.is_success() {
            return Ok(value);
        }
        let message = error_message(&text);
        Err(match status.as_u16() {
            404 => GithubError::NotFound { url: path },
            s => GithubError::Status {
                url: path,
                status: s,
                message,
            },
        })
    }

    /// Every item of a paginated JSON list, following `Link: rel="next"` up to `max_pages`.
    pub async fn paginate<T: DeserializeOwned>(
        &self,
        path: &str,
        max_pages: usize,
    ) -> Result<Vec<T>, GithubError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(url) = next.take() {
            let page = self.get(&url, JSON).await?;
            out.extend(page.json::<Vec<T>>(&url)?);
            pages += 1;
            if pages >= max_pages {
                break;
            }
            next = page.next;
        }
        Ok(out)
    }

    /// Remembers a used-up quota so the next request waits for the reset.
    fn note_quota(&self, h: &HeaderMap) {
        let remaining = h
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if remaining == Some(0)
            && let Some(reset) = reset_secs(h)
        {
            *self.blocked_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(reset);
        }
    }

    async fn wait_if_blocked(&self) -> Result<(), GithubError> {
        let until = self
            .blocked_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(until) = until {
            let now = now_secs();
            if until > now {
                let wait = Duration::from_secs(until - now + 1);
                if wait > self.cfg.max_wait {
                    return Err(GithubError::RateLimited {
                        url: String::new(),
                        wait_secs: wait.as_secs(),
                    });
                }
                info!(
                    wait_s = wait.as_secs(),
                    "rate limit used up; waiting for the reset"
                );
                self.rate_waits.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }

    /// A 404 has no ETag to revalidate with: it is remembered for [`GONE_TTL`] instead, so a
    /// deleted repository costs one request a day, not one per harvest.
    fn remember_gone(&self, key: &str) {
        let dir = &self.cfg.cache_dir;
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{key}.gone")), now_secs().to_string());
        }
    }

    fn known_gone(&self, key: &str) -> bool {
        std::fs::read_to_string(self.cfg.cache_dir.join(format!("{key}.gone")))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .is_some_and(|at| now_secs().saturating_sub(at) < GONE_TTL.as_secs())
    }

    fn cache_read(&self, key: &str) -> Option<Fetched> {
        let text = std::fs::read_to_string(self.cfg.cache_dir.join(key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written whole through a temporary file, so a crash leaves the old entry or none.
    fn cache_write(&self, key: &str, fetched: &Fetched) {
        let dir = &self.cfg.cache_dir;
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let tmp = dir.join(format!("{key}.{}.tmp", std::process::id()));
        if let Ok(text) = serde_json::to_vec(fetched)
            && std::fs::write(&tmp, text).is_ok()
        {
            let _ = std::fs::rename(&tmp, dir.join(key));
        }
    }
}

/// A request to `url` that got no answer (or an unreadable one).
fn http_error(url: &str) -> impl FnOnce(octocrab::Error) -> GithubError + '_ {
    move |e| GithubError::Http {
        url: url.to_owned(),
        reason: e.to_string(),
    }
}

/// What an error answer says: its JSON `message`, else the start of its text.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The path and query of a URL (a path stays as it is): octocrab puts its base URI in front,
/// and sends the token only to it.
pub fn relative(url: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        },
        None if url.starts_with('/') => url.to_owned(),
        None => format!("/{url}"),
    }
}

fn cache_key(path: &str, accept: &str) -> String {
    hex::encode(Sha256::digest(format!("{accept}\n{path}").as_bytes()))
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// `x-ratelimit-reset` in seconds since the epoch (GitHub sends seconds; recorded fixtures
/// sometimes carry milliseconds, read as such).
fn reset_secs(h: &HeaderMap) -> Option<u64> {
    let v: u64 = h
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(if v > 100_000_000_000 { v / 1000 } else { v })
}

/// How long a 403/429 says to wait: `retry-after` (secondary limits), else until
/// `x-ratelimit-reset` when the quota is used up. `None`: not a rate limit.
pub fn rate_limit_wait(h: &HeaderMap, now: u64) -> Option<Duration> {
    if let Some(secs) = h
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs.max(1)));
    }
    let remaining = h
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())?
        .trim()
        .parse::<u64>()
        .ok()?;
    if remaining > 0 {
        return None;
    }
    let reset = reset_secs(h)?;
    Some(Duration::from_secs(reset.saturating_sub(now) + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_limits_read_like_github_sends_them() {
        let link = "<https://api.github.com/repositories/1000/issues?per_page=3&page=1>; rel=\"prev\", <https://api.github.com/repositories/1000/issues?per_page=3&page=3>; rel=\"next\", <https://api.github.com/repositories/1000/issues?per_page=3&page=5>; rel=\"last\"";
        let next = next_link(link).unwrap();
        assert_eq!(
            next,
            "https://api.github.com/repositories/1000/issues?per_page=3&page=3"
        );
        assert_eq!(
            relative(&next),
            "/repositories/1000/issues?per_page=3&page=3"
        );
        assert_eq!(next_link("<https://x/a?page=1>; rel=\"first\""), None);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", header("0"));
        h.insert("x-ratelimit-reset", header("1000"));
        assert_eq!(rate_limit_wait(&h, 990), Some(Duration::from_secs(11)));
        h.insert("x-ratelimit-remaining", header("12"));
        assert_eq!(rate_limit_wait(&h, 990), None);
        h.insert("retry-after", header("3"));
        assert_eq!(rate_limit_wait(&h, 990), Some(Duration::from_secs(3)));
    }
}
