//! Upload to the HuggingFace Hub over its HTTP API, no Python needed: create the dataset repo
//! if needed, ask which files go through LFS (preupload), upload those with the LFS batch API
//! (sha256 oids, basic transfer, verify), then commit everything in one NDJSON commit.
//! Requests are retried on 429/5xx and connection errors; a 401/403 is a clear error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Errors pushing to the Hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "the Hub refused the token ({status}) for {url}: set HF_TOKEN to a token with write access"
    )]
    Unauthorized { status: u16, url: String },
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot reach {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{0}")]
    Protocol(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("repository id {0:?} is not of the form org/name")]
    BadRepo(String),
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub repo: String,
    pub files: usize,
    pub lfs_uploaded: usize,
    pub lfs_already_present: usize,
    pub commit_url: String,
}

/// A client of one Hub endpoint.
pub struct HubClient {
    http: reqwest::Client,
    endpoint: String,
    token: String,
    attempts: u32,
    backoff: Duration,
}

struct LocalFile {
    path: String,
    full: PathBuf,
    size: u64,
    sha256: String,
}

impl HubClient {
    pub fn new(endpoint: Option<&str>, token: &str) -> HubClient {
        HubClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(20))
                .timeout(Duration::from_secs(1800))
                .build()
                .unwrap_or_default(),
            endpoint: endpoint
                .unwrap_or(DEFAULT_ENDPOINT)
                .trim_end_matches('/')
                .to_owned(),
            token: token.to_owned(),
            attempts: 5,
            backoff: Duration::from_millis(500),
        }
    }

    /// Sets the first retry delay (doubling after each failure).
    pub fn with_backoff(mut self, backoff: Duration) -> HubClient {
        self.backoff = backoff;
        self
    }

    /// Pushes every file of the export folder `dir` (but its state file) to the dataset repo
    /// `repo` ("org/name") on `main`.
    pub async fn push(&self, dir: &Path, repo: &str) -> Result<PushReport, HubError> {
        let (org, name) = repo
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| HubError::BadRepo(repo.to_owned()))?;
        let files = collect(dir)?;
        // 1. The repo (409: it exists already).
        let url = format!("{}/api/repos/create", self.endpoint);
        let body = json!({"type": "dataset", "name": name, "organization": org, "private": false});
        self.send_json(&url, &body, &[409]).await?;

        // 2. Which files the Hub wants through LFS.
        let url = format!("{}/api/datasets/{repo}/preupload/main", self.endpoint);
        let mut listing = Vec::new();
        for f in &files {
            let sample = read_head(&f.full, 512)?;
            listing.push(json!({"path": f.path, "size": f.size,
                "sample": base64::engine::general_purpose::STANDARD.encode(sample)}));
        }
        let answer = self
            .send_json(&url, &json!({"files": listing}), &[])
            .await?;
        let lfs_paths: Vec<String> = answer
            .get("files")
            .and_then(Value::as_array)
            .ok_or_else(|| HubError::Protocol("preupload answer without files".into()))?
            .iter()
            .filter(|f| f.get("uploadMode").and_then(Value::as_str) == Some("lfs"))
            .filter_map(|f| f.get("path").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let (lfs, regular): (Vec<&LocalFile>, Vec<&LocalFile>) =
            files.iter().partition(|f| lfs_paths.contains(&f.path));

        // 3. LFS objects the Hub does not have yet.
        let mut uploaded = 0;
        let mut present = 0;
        if !lfs.is_empty() {
            let url = format!(
                "{}/datasets/{repo}.git/info/lfs/objects/batch",
                self.endpoint
            );
            let objects: Vec<Value> = lfs
                .iter()
                .map(|f| json!({"oid": f.sha256, "size": f.size}))
                .collect();
            let body = json!({"operation": "upload", "transfers": ["basic"],
                "hash_algo": "sha256", "objects": objects});
            let answer = self.send_lfs_batch(&url, &body).await?;
            for obj in answer
                .get("objects")
                .and_then(Value::as_array)
                .ok_or_else(|| HubError::Protocol("LFS batch answer without objects".into()))?
            {
                if let Some(err) = obj.get("error") {
                    return Err(HubError::Protocol(format!("LFS refused an object: {err}")));
                }
                let oid = obj.get("oid").and_then(Value::as_str).unwrap_or("");
                let file = lfs.iter().find(|f| f.sha256 == oid).ok_or_else(|| {
                    HubError::Protocol(format!("LFS answered an unknown oid {oid}"))
                })?;
                match obj.get("actions").and_then(|a| a.get("upload")) {
                    None => present += 1,
                    Some(upload) => {
                        self.upload(file, upload).await?;
                        if let Some(verify) = obj["actions"].get("verify") {
                            let href = verify.get("href").and_then(Value::as_str).unwrap_or("");
                            self.send_json(
                                href,
                                &json!({"oid": file.sha256, "size": file.size}),
                                &[],
                            )
                            .await?;
                        }
                        uploaded += 1;
                    }
                }
            }
        }

        // 4. One commit with everything.
        let url = format!("{}/api/datasets/{repo}/commit/main", self.endpoint);
        let mut ndjson = String::new();
        let header = json!({"key": "header", "value": {
            "summary": format!("agentao dataset export ({} files)", files.len()),
            "description": ""}});
        ndjson.push_str(&header.to_string());
        ndjson.push('\n');
        for f in &regular {
            let bytes = std::fs::read(&f.full).map_err(|e| io(&f.full, e))?;
            let line = json!({"key": "file", "value": {"path": f.path, "encoding": "base64",
                "content": base64::engine::general_purpose::STANDARD.encode(bytes)}});
            ndjson.push_str(&line.to_string());
            ndjson.push('\n');
        }
        for f in &lfs {
            let line = json!({"key": "lfsFile", "value": {"path": f.path, "algo": "sha256",
                "oid": f.sha256, "size": f.size}});
            ndjson.push_str(&line.to_string());
            ndjson.push('\n');
        }
        let answer = self
            .send(&url, "application/x-ndjson", ndjson.into_bytes(), &[])
            .await?;
        Ok(PushReport {
            repo: repo.to_owned(),
            files: files.len(),
            lfs_uploaded: uploaded,
            lfs_already_present: present,
            commit_url: answer
                .get("commitUrl")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        })
    }

    async fn upload(&self, file: &LocalFile, action: &Value) -> Result<(), HubError> {
        let href = action
            .get("href")
            .and_then(Value::as_str)
            .ok_or_else(|| HubError::Protocol("LFS upload action without href".into()))?;
        let mut delay = self.backoff;
        for attempt in 1..=self.attempts {
            let bytes = tokio::fs::read(&file.full)
                .await
                .map_err(|e| io(&file.full, e))?;
            let mut req = self.http.put(href).body(bytes);
            // The upload URL carries its own authorisation (usually a signed URL).
            if let Some(headers) = action.get("header").and_then(Value::as_object) {
                for (k, v) in headers {
                    if let Some(v) = v.as_str() {
                        req = req.header(k, v);
                    }
                }
            }
            match check(href, req.send().await).await {
                Ok(_) => return Ok(()),
                Err(e) if retryable(&e) && attempt < self.attempts => {
                    tracing::warn!(attempt, "LFS upload failed, retrying: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn send_json(
        &self,
        url: &str,
        body: &Value,
        ok_statuses: &[u16],
    ) -> Result<Value, HubError> {
        self.send(
            url,
            "application/json",
            body.to_string().into_bytes(),
            ok_statuses,
        )
        .await
    }

    async fn send_lfs_batch(&self, url: &str, body: &Value) -> Result<Value, HubError> {
        self.send(
            url,
            "application/vnd.git-lfs+json",
            body.to_string().into_bytes(),
            &[],
        )
        .await
    }

    /// POSTs with the token, retrying 429/5xx and connection errors with backoff.
    async fn send(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        ok_statuses: &[u16],
    ) -> Result<Value, HubError> {
        let mut delay = self.backoff;
        for attempt in 1..=self.attempts {
            let mut req = self
                .http
                .post(url)
                .bearer_auth(&self.token)
                .header("content-type", content_type)
                .body(body.clone());
            if content_type.contains("git-lfs") {
                req = req.header("accept", content_type);
            }
            let sent = req.send().await;
            if let Ok(r) = &sent
                && ok_statuses.contains(&r.status().as_u16())
            {
                return Ok(Value::Null);
            }
            match check(url, sent).await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && attempt < self.attempts => {
                    tracing::warn!(attempt, "Hub request failed, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }
}

fn retryable(e: &HubError) -> bool {
    match e {
        HubError::Http { status, .. } => *status == 429 || *status >= 500,
        HubError::Transport { .. } => true,
        _ => false,
    }
}

async fn check(
    url: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<Value, HubError> {
    let resp = sent.map_err(|e| HubError::Transport {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status == 401 || status == 403 {
        return Err(HubError::Unauthorized {
            status,
            url: url.to_owned(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(HubError::Http {
            url: url.to_owned(),
            status,
            body: text.chars().take(300).collect(),
        });
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn io(path: &Path, source: std::io::Error) -> HubError {
    HubError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_head(path: &Path, n: usize) -> Result<Vec<u8>, HubError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut buf = vec![0u8; n];
    let got = f.read(&mut buf).map_err(|e| io(path, e))?;
    buf.truncate(got);
    Ok(buf)
}

/// Every file under `dir` but the export state, with its size and sha256.
fn collect(dir: &Path) -> Result<Vec<LocalFile>, HubError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let entry = entry.map_err(|e| io(&d, e))?;
            let full = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if full.is_dir() {
                stack.push(full);
                continue;
            }
            if super::export::is_state_file(&name) || name.ends_with(".partial") {
                continue;
            }
            let rel = full
                .strip_prefix(dir)
                .map_err(|_| HubError::Protocol("file outside the folder".into()))?
                .to_string_lossy()
                .into_owned();
            let mut h = Sha256::new();
            let mut f = std::fs::File::open(&full).map_err(|e| io(&full, e))?;
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                use std::io::Read;
                let n = f.read(&mut buf).map_err(|e| io(&full, e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                size += n as u64;
            }
            out.push(LocalFile {
                path: rel,
                full,
                size,
                sha256: hex::encode(h.finalize()),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
