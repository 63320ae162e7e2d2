//! A client for a package index's simple API (PEP 691 JSON, HTML as a fallback) that resolves
//! a release to its sdist, and a checksum-verified download into a cache directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::version::{release_key, supports_py311};
use super::{PypiError, io, normalize};

/// The public index, used when neither `PIP_INDEX_URL` nor the settings name one.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple";
/// Largest sdist the forge downloads.
pub const MAX_SDIST_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdist {
    pub name: String,
    pub version: String,
    pub filename: String,
    pub url: String,
    pub sha256: String,
    pub size: Option<u64>,
}

#[derive(Deserialize)]
struct SimpleProject {
    files: Vec<SimpleFile>,
}

#[derive(Deserialize)]
struct SimpleFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
    #[serde(default, rename = "requires-python")]
    requires_python: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    yanked: serde_json::Value,
}

/// A client of one package index.
#[derive(Debug, Clone)]
pub struct PypiClient {
    http: reqwest::Client,
    index_url: String,
    cache_dir: PathBuf,
}

impl PypiClient {
    /// A client of `index_url` (default: the public index) caching downloads under
    /// `cache_dir/sdists`.
    pub fn new(index_url: Option<&str>, cache_dir: &Path) -> Result<PypiClient, PypiError> {
        let index_url = index_url
            .unwrap_or(DEFAULT_INDEX_URL)
            .trim_end_matches('/')
            .to_owned();
        let http = reqwest::Client::builder()
            .user_agent(concat!("agentao/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| PypiError::Http {
                url: index_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(PypiClient {
            http,
            index_url,
            cache_dir: cache_dir.join("sdists"),
        })
    }

    /// The index this client reads.
    pub fn index_url(&self) -> &str {
        &self.index_url
    }

    /// The sdist of `name` at `version`, or of its newest final release that supports
    /// CPython 3.11.
    pub async fn resolve_sdist(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Sdist, PypiError> {
        let url = format!("{}/{}/", self.index_url, normalize(name));
        let resp = self
            .http
            .get(&url)
            .header(
                "Accept",
                "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
            )
            .send()
            .await
            .map_err(|e| http_err(&url, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(PypiError::UnknownPackage(name.to_owned()));
        }
        if !resp.status().is_success() {
            return Err(PypiError::Http {
                url,
                reason: format!("HTTP {}", resp.status()),
            });
        }
        let json = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = resp.text().await.map_err(|e| http_err(&url, e))?;
        let files = if json {
            serde_json::from_str::<SimpleProject>(&body)
                .map_err(|e| PypiError::Http {
                    url: url.clone(),
                    reason: format!("bad simple-API JSON: {e}"),
                })?
                .files
        } else {
            parse_simple_html(&body, &url)
        };
        pick_sdist(name, version, files, &url)
    }

    /// Downloads `sdist` into the cache (or reuses the cached copy) and verifies its sha256
    /// either way. Returns the archive's path.
    pub async fn download(&self, sdist: &Sdist) -> Result<PathBuf, PypiError> {
        if sdist.size.is_some_and(|s| s > MAX_SDIST_BYTES) {
            return Err(PypiError::TooLarge {
                what: sdist.filename.clone(),
                limit: MAX_SDIST_BYTES,
            });
        }
        if sdist.filename.contains('/') || sdist.filename.starts_with('.') {
            return Err(PypiError::UnsafeArchive {
                file: sdist.filename.clone(),
                entry: sdist.filename.clone(),
            });
        }
        tokio::fs::create_dir_all(&self.cache_dir)
            .await
            .map_err(io(self.cache_dir.display().to_string()))?;
        let path = self.cache_dir.join(&sdist.filename);
        if path.is_file() {
            let actual = sha256_file(&path)?;
            if actual == sdist.sha256 {
                return Ok(path);
            }
            // A stale or damaged cache entry: fetch again.
            let _ = std::fs::remove_file(&path);
        }
        let resp = self
            .http
            .get(&sdist.url)
            .send()
            .await
            .map_err(|e| http_err(&sdist.url, e))?;
        if !resp.status().is_success() {
            return Err(PypiError::Http {
                url: sdist.url.clone(),
                reason: format!("HTTP {}", resp.status()),
            });
        }
        let partial = super::unique_partial(&path);
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(io(partial.display().to_string()))?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| http_err(&sdist.url, e))?;
            total += chunk.len() as u64;
            if total > MAX_SDIST_BYTES {
                drop(file);
                let _ = std::fs::remove_file(&partial);
                return Err(PypiError::TooLarge {
                    what: sdist.filename.clone(),
                    limit: MAX_SDIST_BYTES,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(io(partial.display().to_string()))?;
        }
        file.flush()
            .await
            .map_err(io(partial.display().to_string()))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if !sdist.sha256.is_empty() && actual != sdist.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(PypiError::ChecksumMismatch {
                file: sdist.filename.clone(),
                expected: sdist.sha256.clone(),
                actual,
            });
        }
        std::fs::rename(&partial, &path).map_err(io(path.display().to_string()))?;
        Ok(path)
    }
}

fn http_err(url: &str, e: reqwest::Error) -> PypiError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    PypiError::Http {
        url: url.to_owned(),
        reason,
    }
}

pub fn sha256_file(path: &Path) -> Result<String, PypiError> {
    let mut f = std::fs::File::open(path).map_err(io(path.display().to_string()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path.display().to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Anchors of a PEP 503 HTML page: `<a href="URL#sha256=HEX" data-requires-python="...">FILE</a>`.
fn parse_simple_html(body: &str, page_url: &str) -> Vec<SimpleFile> {
    let mut files = Vec::new();
    for chunk in body.split("<a ").skip(1) {
        let Some(end) = chunk.find("</a>") else {
            continue;
        };
        let anchor = &chunk[..end];
        let Some((attrs, text)) = anchor.split_once('>') else {
            continue;
        };
        let Some(href) = attr(attrs, "href") else {
            continue;
        };
        let (href, fragment) = href.split_once('#').unwrap_or((href.as_str(), ""));
        let mut hashes = std::collections::HashMap::new();
        if let Some(h) = fragment.strip_prefix("sha256=") {
            hashes.insert("sha256".to_owned(), h.to_owned());
        }
        files.push(SimpleFile {
            filename: text.trim().to_owned(),
            url: absolute_url(page_url, href),
            hashes,
            requires_python: attr(attrs, "data-requires-python")
                .map(|v| v.replace("&gt;", ">").replace("&lt;", "<")),
            size: None,
            yanked: if attrs.contains("data-yanked") {
                serde_json::Value::Bool(true)
            } else {
                serde_json::Value::Bool(false)
            },
        });
    }
    files
}

fn attr(attrs: &str, name: &str) -> Option<String> {
    let start = attrs.find(&format!("{name}=\""))? + name.len() + 2;
    let len = attrs[start..].find('"')?;
    Some(attrs[start..start + len].replace("&amp;", "&"))
}

fn absolute_url(page: &str, href: &str) -> String {
    if href.starts_with("http://") || href.starts_with("https://") {
        return href.to_owned();
    }
    if let Some(rest) = href.strip_prefix('/') {
        // Scheme and host of the page.
        let host_end = page
            .find("://")
            .and_then(|i| page[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(page.len());
        return format!("{}/{rest}", &page[..host_end]);
    }
    let base = &page[..page.rfind('/').map_or(page.len(), |i| i + 1)];
    format!("{base}{href}")
}

fn pick_sdist(
    name: &str,
    version: Option<&str>,
    files: Vec<SimpleFile>,
    url: &str,
) -> Result<Sdist, PypiError> {
    if files.is_empty() {
        return Err(PypiError::UnknownPackage(name.to_owned()));
    }
    let mut best: Option<(pep440_rs::Version, Sdist)> = None;
    for f in files {
        let Some(stem) = f.filename.strip_suffix(".tar.gz") else {
            continue;
        };
        let Some((_, v)) = stem.rsplit_once('-') else {
            continue;
        };
        let yanked = !matches!(
            f.yanked,
            serde_json::Value::Bool(false) | serde_json::Value::Null
        );
        let sdist = Sdist {
            name: name.to_owned(),
            version: v.to_owned(),
            filename: f.filename.clone(),
            url: absolute_url(url, &f.url),
            sha256: f.hashes.get("sha256").cloned().unwrap_or_default(),
            size: f.size,
        };
        match version {
            Some(want) if want == v => return Ok(sdist),
            Some(_) => continue,
            None => {}
        }
        if yanked || !supports_py311(f.requires_python.as_deref()) {
            continue;
        }
        let Some(key) = release_key(v) else { continue };
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, sdist));
        }
    }
    best.map(|(_, s)| s).ok_or_else(|| PypiError::NoSdist {
        name: name.to_owned(),
        version: version.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_index_pages_parse() {
        let html = r#"<html><body><a href="../../packages/x/demo-1.0.tar.gz#sha256=ab12" data-requires-python="&gt;=3.8">demo-1.0.tar.gz</a>
            <a href="https://files.example/demo-2.0.tar.gz#sha256=cd34">demo-2.0.tar.gz</a></body></html>"#;
        let files = parse_simple_html(html, "http://idx.local/simple/demo/");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].requires_python.as_deref(), Some(">=3.8"));
        let s = pick_sdist("demo", None, files, "http://idx.local/simple/demo/").unwrap();
        assert_eq!(s.version, "2.0");
        assert_eq!(s.sha256, "cd34");
    }
}
