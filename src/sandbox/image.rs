//! Image operations: import a root filesystem, build from a context, tag, list.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use bollard::query_parameters::{BuildImageOptions, CreateImageOptions, TagImageOptions};
use bollard::{body_full, body_try_stream};
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;

use super::{Engine, LABEL_RECIPE, SandboxError};

/// An image agentao knows about.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    pub reference: String,
    pub size_bytes: i64,
    pub recipe: Option<String>,
}

/// Splits `repo:tag` (a registry port is not expected here).
pub(crate) fn split_reference(reference: &str) -> (&str, &str) {
    reference.rsplit_once(':').unwrap_or((reference, "latest"))
}

/// Imports a directory as a single-layer image (what `tar -C dir -c . | docker import -` does),
/// streaming the archive from the system `tar` so device nodes, hard links and modes survive.
pub async fn import_rootfs(
    engine: &Engine,
    dir: &Path,
    reference: &str,
    recipe: &str,
) -> Result<(), SandboxError> {
    let mut child = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SandboxError::io("spawn tar", e))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (repo, tag) = split_reference(reference);
    let options = CreateImageOptions {
        from_src: Some("-".to_owned()),
        repo: Some(repo.to_owned()),
        tag: Some(tag.to_owned()),
        changes: vec![
            r#"CMD ["/bin/bash"]"#.to_owned(),
            format!("LABEL {LABEL_RECIPE}={recipe}"),
        ],
        ..Default::default()
    };
    let mut progress = engine.docker.create_image(
        Some(options),
        Some(body_try_stream(ReaderStream::new(stdout))),
        None,
    );
    while let Some(item) = progress.next().await {
        item.map_err(|e| SandboxError::Build(format!("import of {reference}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| SandboxError::io("tar", e))?;
    if !out.status.success() {
        return Err(SandboxError::Tool {
            tool: "tar".into(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    if !engine.image_exists(reference).await? {
        return Err(SandboxError::Build(format!(
            "import reported success but {reference} is missing"
        )));
    }
    Ok(())
}

/// Builds `reference` from a tarred build context (a `Dockerfile` at its root). Each line the
/// builder prints goes to `on_line`. Intermediate containers are always removed.
pub async fn build_image_from_context(
    engine: &Engine,
    context_tar: Vec<u8>,
    reference: &str,
    build_args: HashMap<String, String>,
    recipe: &str,
    mut on_line: impl FnMut(&str),
) -> Result<(), SandboxError> {
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_owned(),
        t: Some(reference.to_owned()),
        rm: true,
        forcerm: true,
        buildargs: Some(build_args),
        labels: Some(HashMap::from([(
            LABEL_RECIPE.to_owned(),
            recipe.to_owned(),
        )])),
        networkmode: Some("none".to_owned()),
        ..Default::default()
    };
    let mut stream = engine
        .docker
        .build_image(options, None, Some(body_full(context_tar.into())));
    let mut tail = super::BoundedBuf::new(4096);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(line) = info.stream.as_deref() {
                    tail.push(line.as_bytes());
                    for l in line.lines().filter(|l| !l.trim().is_empty()) {
                        on_line(l);
                    }
                }
            }
            Err(e) => {
                return Err(SandboxError::Build(format!(
                    "{reference}: {e}\n{}",
                    tail.to_string_lossy()
                )));
            }
        }
    }
    if !engine.image_exists(reference).await? {
        return Err(SandboxError::Build(format!(
            "{reference} was not produced:\n{}",
            tail.to_string_lossy()
        )));
    }
    Ok(())
}

/// Adds the tag `target` to the image `source`.
pub async fn tag(engine: &Engine, source: &str, target: &str) -> Result<(), SandboxError> {
    let (repo, tag) = split_reference(target);
    engine
        .docker
        .tag_image(
            source,
            Some(TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
            }),
        )
        .await?;
    Ok(())
}

/// Images with the agentao recipe label.
pub async fn list_agentao_images(engine: &Engine) -> Result<Vec<ImageSummary>, SandboxError> {
    let images = engine
        .docker
        .list_images(Some(bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![LABEL_RECIPE.to_owned()],
            )])),
            ..Default::default()
        }))
        .await?;
    Ok(images
        .into_iter()
        .flat_map(|i| {
            let recipe = i.labels.get(LABEL_RECIPE).cloned();
            let size = i.size;
            let tags = if i.repo_tags.is_empty() {
                vec![i.id.clone()]
            } else {
                i.repo_tags.clone()
            };
            tags.into_iter().map(move |t| ImageSummary {
                reference: t,
                size_bytes: size,
                recipe: recipe.clone(),
            })
        })
        .collect())
}

/// A tar archive (in memory) of `files`: (relative path, contents, mode), owned by root, with
/// every parent directory as its own entry (mode 0755) before its first file. Paths must be
/// relative and plain (no `..`, no empty components).
pub fn tar_files<P: AsRef<str>, B: AsRef<[u8]>>(
    files: &[(P, B, u32)],
    mtime: u64,
) -> Result<Vec<u8>, SandboxError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs_done = std::collections::HashSet::new();
    let mut append = |header: &mut tar::Header, path: &str, data: &[u8]| {
        header.set_size(data.len() as u64);
        header.set_mtime(mtime);
        header.set_cksum();
        builder
            .append_data(header, path, data)
            .map_err(|e| SandboxError::io("tar", e))
    };
    for (path, contents, mode) in files {
        let path = path.as_ref();
        // `dir/` is a folder of its own mode.
        let (path, is_dir) = match path.strip_suffix('/') {
            Some(dir) => (dir, true),
            None => (path, false),
        };
        if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(SandboxError::BadPath(path.to_owned()));
        }
        let parts: Vec<&str> = path.split('/').collect();
        for depth in 1..parts.len() {
            let dir = parts[..depth].join("/");
            if dirs_done.insert(dir.clone()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                append(&mut header, &format!("{dir}/"), &[])?;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        if is_dir {
            if dirs_done.insert(path.to_owned()) {
                header.set_entry_type(tar::EntryType::Directory);
                append(&mut header, &format!("{path}/"), &[])?;
            }
            continue;
        }
        append(&mut header, path, contents.as_ref())?;
    }
    builder.into_inner().map_err(|e| SandboxError::io("tar", e))
}
