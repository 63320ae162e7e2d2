//! The image registry a cluster's nodes pull from (`--registry host:port`): agentao's base and
//! environment images are pushed there once per content hash, under a tag that is that hash,
//! so every node runs the very image the validator built and a second push of the same content
//! never happens (this process remembers what it pushed; another process asks the registry).
//!
//! Speaks the registry's HTTP API (v2) for the existence check and the engine's push for the
//! upload; the registry must be one the engine may push to (loopback registries are, without
//! TLS).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bollard::query_parameters::PushImageOptions;
use futures_util::StreamExt;
use tracing::info;

use super::error::status_of;
use super::image::split_reference;
use super::{Engine, SandboxError};

/// Manifest media types the existence check accepts (what a push of a local image makes).
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.index.v1+json";

/// A registry the cluster pulls from.
#[derive(Debug)]
pub struct Registry {
    addr: String,
    http: reqwest::Client,
    /// Image id → the reference it was published under, by this process; held across a
    /// check and its push, so sandboxes starting at once push an image once between them.
    published: tokio::sync::Mutex<HashMap<String, String>>,
    pushes: AtomicUsize,
}

impl Registry {
    /// A registry at `addr` (`host:port`, as image references name it; an `http://` prefix is
    /// dropped).
    pub fn new(addr: &str) -> Result<Registry, SandboxError> {
        let addr = addr
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let bad = |why: &str| SandboxError::Registry {
            addr: addr.clone(),
            reason: why.to_owned(),
        };
        if addr.is_empty() || addr.contains('/') || addr.contains(char::is_whitespace) {
            return Err(bad("give the registry as host:port"));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Registry {
            addr,
            http,
            published: tokio::sync::Mutex::new(HashMap::new()),
            pushes: AtomicUsize::new(0),
        })
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Pushes this handle made (an image already in the registry is not pushed again).
    pub fn pushes(&self) -> usize {
        self.pushes.load(Ordering::SeqCst)
    }

    /// The reference under which the cluster's nodes find the local image `image`:
    /// `<registry>/<repository>:<content hash>`, pushed first unless the registry already
    /// holds that hash.
    pub async fn publish(&self, engine: &Engine, image: &str) -> Result<String, SandboxError> {
        let inspect =
            engine
                .docker
                .inspect_image(image)
                .await
                .map_err(|e| match status_of(&e) {
                    Some(404) => SandboxError::ImageMissing(image.to_owned()),
                    _ => e.into(),
                })?;
        let id = inspect.id.unwrap_or_default();
        let hash = id.trim_start_matches("sha256:");
        if hash.len() < 16 {
            return Err(SandboxError::ImageMissing(image.to_owned()));
        }
        let mut published = self.published.lock().await;
        if let Some(done) = published.get(&id) {
            return Ok(done.clone());
        }
        let (repo, _) = split_reference(image);
        let repo = repo.trim_start_matches(&format!("{}/", self.addr));
        let tag = &hash[..16];
        let target_repo = format!("{}/{repo}", self.addr);
        let target = format!("{target_repo}:{tag}");
        if !self.has_manifest(repo, tag).await? {
            super::image::tag(engine, image, &target).await?;
            self.push(engine, &target_repo, tag).await?;
            self.pushes.fetch_add(1, Ordering::SeqCst);
            info!(image, reference = %target, "image pushed to the registry");
        } else if !engine.image_exists(&target).await? {
            // The nodes pull it; this engine (a node too) gets the name without a pull.
            super::image::tag(engine, image, &target).await?;
        }
        published.insert(id, target.clone());
        Ok(target)
    }

    /// Whether the registry holds `repo:tag` (HEAD on its manifest).
    pub async fn has_manifest(&self, repo: &str, tag: &str) -> Result<bool, SandboxError> {
        let url = format!("http://{}/v2/{repo}/manifests/{tag}", self.addr);
        let response = self
            .http
            .head(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES)
            .send()
            .await
            .map_err(|e| SandboxError::Registry {
                addr: self.addr.clone(),
                reason: e.to_string(),
            })?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            code => Err(SandboxError::Registry {
                addr: self.addr.clone(),
                reason: format!("HEAD {url} answered {code}"),
            }),
        }
    }

    async fn push(&self, engine: &Engine, repo: &str, tag: &str) -> Result<(), SandboxError> {
        let mut stream = engine.docker.push_image(
            repo,
            Some(PushImageOptions {
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
        );
        while let Some(step) = stream.next().await {
            let step = step.map_err(|e| SandboxError::Registry {
                addr: self.addr.clone(),
                reason: e.to_string(),
            })?;
            if let Some(error) = step.error_detail.and_then(|d| d.message) {
                return Err(SandboxError::Registry {
                    addr: self.addr.clone(),
                    reason: error,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Registry;

    #[test]
    fn registry_addresses_are_host_and_port() {
        assert_eq!(
            Registry::new("http://127.0.0.1:5000/").unwrap().addr(),
            "127.0.0.1:5000"
        );
        assert!(Registry::new("").is_err());
        assert!(Registry::new("127.0.0.1:5000/agentao").is_err());
    }
}
