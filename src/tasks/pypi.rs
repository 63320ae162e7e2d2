//! Package sources from PyPI: the ranked list of top packages shipped with agentao, a client for
//! an index's simple API (PEP 691 JSON, HTML as a fallback) that resolves a release to its sdist,
//! a checksum-verified download into a cache directory, and unpacking that refuses archives
//! escaping their folder.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The public index, used when neither `PIP_INDEX_URL` nor the settings name one.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple";
/// Largest sdist the forge downloads.
pub const MAX_SDIST_BYTES: u64 = 64 << 20;
/// Largest unpacked source tree.
const MAX_UNPACKED_BYTES: u64 = 512 << 20;
const MAX_ENTRIES: usize = 50_000;

const TOP_PACKAGES: &str = include_str!("top_packages.csv");

/// Why a package could not be fetched. Each is one line, for the forge's log of skipped
/// packages.
#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    #[error("package {0} is not on the index")]
    UnknownPackage(String),
    #[error("{name}: no usable sdist{}", version.as_deref().map(|v| format!(" for version {v}")).unwrap_or_default())]
    NoSdist {
        name: String,
        version: Option<String>,
    },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{file}: checksum mismatch (expected sha256 {expected}, got {actual})")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: corrupt archive: {reason}")]
    CorruptArchive { file: String, reason: String },
    #[error("{file}: unsafe archive entry {entry:?}")]
    UnsafeArchive { file: String, entry: String },
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PypiError {
    let context = context.into();
    move |source| PypiError::Io { context, source }
}

/// One entry of the shipped ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopPackage {
    pub rank: u32,
    pub name: String,
}

/// The shipped ranking of top PyPI packages, best first.
pub fn top_packages() -> Vec<TopPackage> {
    TOP_PACKAGES
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (rank, name) = l.split_once(',')?;
            Some(TopPackage {
                rank: rank.trim().parse().ok()?,
                name: name.trim().to_owned(),
            })
        })
        .collect()
}

/// PEP 503 normalised project name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.extend(c.to_lowercase());
            last_sep = false;
        }
    }
    out
}

/// A release's source distribution on the index.
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
        let partial = path.with_extension("partial");
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

fn sha256_file(path: &Path) -> Result<String, PypiError> {
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
    let mut best: Option<(Vec<u64>, Sdist)> = None;
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

/// Sort key of a final release (`1.2.3`, `1.2.post1`); `None` for pre-releases, dev releases
/// and anything else the forge does not pick by itself.
pub fn release_key(version: &str) -> Option<Vec<u64>> {
    let mut key = Vec::new();
    for part in version.split('.') {
        if let Some(post) = part.strip_prefix("post") {
            key.push(u64::MAX / 2);
            key.push(post.parse().ok()?);
        } else {
            key.push(part.parse().ok()?);
        }
    }
    Some(key)
}

/// Whether a `Requires-Python` specifier admits CPython 3.11 (the base image's Python). Only
/// lower bounds above 3.11 and upper bounds at or below it are recognised; anything else
/// passes, and the baseline run catches the rest.
pub fn supports_py311(spec: Option<&str>) -> bool {
    let Some(spec) = spec else { return true };
    for clause in spec.split(',').map(str::trim) {
        let (op, v) = ["<=", ">=", "==", "~=", "<", ">"]
            .iter()
            .find_map(|op| clause.strip_prefix(op).map(|v| (*op, v.trim())))
            .unwrap_or(("", ""));
        let mut parts = v
            .split('.')
            .map(|p| p.trim_end_matches(".*").parse::<u32>());
        let (Some(Ok(major)), minor) = (parts.next(), parts.next()) else {
            continue;
        };
        let minor = minor.and_then(Result::ok).unwrap_or(0);
        let other = (major, minor);
        let ok = match op {
            ">=" | "~=" => (3, 11) >= other,
            ">" => (3, 11) > other || (other == (3, 11) && v.split('.').count() > 2),
            "<" => (3, 11) < other,
            "<=" => (3, 11) <= other,
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Unpacks a `.tar.gz` sdist into `dest` (which must not exist), dropping the archive's
/// top-level folder. Refuses absolute paths, `..`, and links that leave the tree; other links
/// and special files are skipped. Returns `dest`.
pub fn unpack_sdist(archive: &Path, dest: &Path) -> Result<PathBuf, PypiError> {
    let file_name = archive
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !file_name.ends_with(".tar.gz") {
        return Err(PypiError::CorruptArchive {
            file: file_name,
            reason: "only .tar.gz sdists are supported".into(),
        });
    }
    let corrupt = |reason: String| PypiError::CorruptArchive {
        file: file_name.clone(),
        reason,
    };
    let unsafe_entry = |entry: &Path| PypiError::UnsafeArchive {
        file: file_name.clone(),
        entry: entry.display().to_string(),
    };
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(io(partial.display().to_string()))?;
    let f = std::fs::File::open(archive).map_err(io(archive.display().to_string()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut total = 0u64;
    let mut hardlinks = Vec::new();
    let result = (|| {
        for (n, entry) in tar
            .entries()
            .map_err(|e| corrupt(e.to_string()))?
            .enumerate()
        {
            if n >= MAX_ENTRIES {
                return Err(PypiError::TooLarge {
                    what: format!("{file_name} (entries)"),
                    limit: MAX_ENTRIES as u64,
                });
            }
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            let raw = entry
                .path()
                .map_err(|e| corrupt(e.to_string()))?
                .into_owned();
            let Some(rel) = inner_path(&raw).ok_or_else(|| unsafe_entry(&raw))? else {
                continue;
            };
            let target = partial.join(&rel);
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                std::fs::create_dir_all(&target).map_err(io(target.display().to_string()))?;
            } else if kind.is_file() {
                total += entry.size();
                if total > MAX_UNPACKED_BYTES {
                    return Err(PypiError::TooLarge {
                        what: format!("{file_name} (unpacked)"),
                        limit: MAX_UNPACKED_BYTES,
                    });
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent.display().to_string()))?;
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut out =
                    std::fs::File::create(&target).map_err(io(target.display().to_string()))?;
                std::io::copy(&mut entry, &mut out).map_err(|e| corrupt(e.to_string()))?;
                use std::os::unix::fs::PermissionsExt;
                let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(io(target.display().to_string()))?;
            } else if kind.is_symlink() || kind.is_hard_link() {
                let link = entry
                    .link_name()
                    .map_err(|e| corrupt(e.to_string()))?
                    .ok_or_else(|| corrupt(format!("link {} without target", raw.display())))?
                    .into_owned();
                if kind.is_hard_link() {
                    // Hard link targets are archive paths.
                    let Some(Some(src)) = inner_path(&link) else {
                        return Err(unsafe_entry(&raw));
                    };
                    hardlinks.push((partial.join(src), target));
                } else {
                    let resolved = rel.parent().unwrap_or(Path::new("")).join(&link);
                    if link.is_absolute() || !stays_inside(&resolved) {
                        return Err(unsafe_entry(&raw));
                    }
                    // Inside links are harmless but not needed: environments skip them.
                }
            }
            // Devices, fifos and the like are skipped.
        }
        for (src, dst) in &hardlinks {
            std::fs::copy(src, dst).map_err(io(dst.display().to_string()))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&partial, dest).map_err(io(dest.display().to_string()))?;
    Ok(dest.to_path_buf())
}

/// The part of an archive path below its top-level folder: `Err` (as `None`) when it is
/// absolute or climbs out, `Some(None)` for the top folder itself.
fn inner_path(raw: &Path) -> Option<Option<PathBuf>> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.len() <= 1 {
        return Some(None);
    }
    Some(Some(parts[1..].iter().collect()))
}

/// Whether a relative path stays inside its root after resolving `..`.
fn stays_inside(path: &Path) -> bool {
    let mut depth = 0i32;
    for c in path.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranking_has_two_hundred_names_in_order() {
        let top = top_packages();
        assert!(top.len() >= 200, "{}", top.len());
        assert!(top.windows(2).all(|w| w[0].rank < w[1].rank));
        let mut names: Vec<_> = top.iter().map(|p| normalize(&p.name)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), top.len(), "duplicate names");
    }

    #[test]
    fn names_normalise_like_pip() {
        assert_eq!(normalize("Typing_Extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("a__b"), "a-b");
    }

    #[test]
    fn final_releases_sort_and_pre_releases_are_left_out() {
        assert!(release_key("1.10.0") > release_key("1.9.2"));
        assert!(release_key("1.2.post1") > release_key("1.2"));
        assert_eq!(release_key("2.0rc1"), None);
        assert_eq!(release_key("2.0.dev3"), None);
    }

    #[test]
    fn python_requirements_are_read() {
        assert!(supports_py311(None));
        assert!(supports_py311(Some(">=3.8")));
        assert!(supports_py311(Some(">=3.9, <4")));
        assert!(!supports_py311(Some(">=3.12")));
        assert!(!supports_py311(Some(">=3.8,<3.11")));
        assert!(supports_py311(Some(">=2.7, !=3.0.*")));
    }

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

    #[test]
    fn archive_paths_are_confined() {
        assert_eq!(inner_path(Path::new("pkg-1.0")), Some(None));
        assert_eq!(
            inner_path(Path::new("pkg-1.0/src/a.py")),
            Some(Some(PathBuf::from("src/a.py")))
        );
        assert_eq!(inner_path(Path::new("/etc/passwd")), None);
        assert_eq!(inner_path(Path::new("pkg/../../x")), None);
        assert!(stays_inside(Path::new("a/b/../c")));
        assert!(!stays_inside(Path::new("a/../../c")));
    }
}
