//! Unpacking an sdist safely: absolute paths, `..` and links leaving the tree are refused, and
//! the unpacked size and entry count are capped.

use std::path::{Component, Path, PathBuf};

use super::{PypiError, io};

/// Largest unpacked source tree.
const MAX_UNPACKED_BYTES: u64 = 512 << 20;
const MAX_ENTRIES: usize = 50_000;

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
