//! Unpacking an sdist safely: absolute paths, `..` and links leaving the tree are refused, and
//! the unpacked size and entry count are capped.

use std::path::{Component, Path, PathBuf};

use super::{PypiError, io};

/// Largest unpacked source tree.
const MAX_UNPACKED_BYTES: u64 = 512 << 20;
const MAX_ENTRIES: usize = 50_000;

/// Unpacks a `.tar.gz` sdist into `dest`, dropping the archive's top-level folder. Refuses
/// absolute paths, `..`, and links that leave the tree; other links and special files are
/// skipped. Returns `dest`.
///
/// Safe across processes: each call unpacks into a scratch folder of its own and moves it into
/// place with one rename. `dest` already unpacked from the same archive (its sha256 is kept
/// beside it, in `<dest name>.sha256`) is reused as it is; one from another archive is replaced.
/// When two processes race, the first rename wins and the other's copy is dropped.
pub fn unpack_sdist(archive: &Path, dest: &Path) -> Result<PathBuf, PypiError> {
    let digest = super::index::sha256_file(archive)?;
    let marker = dest.with_file_name(format!(
        "{}.sha256",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let same_source = || std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == digest);
    if dest.is_dir() && same_source() {
        return Ok(dest.to_path_buf());
    }
    let partial = super::unique_partial(dest);
    unpack_into(archive, &partial)?;
    let _ = std::fs::remove_file(&marker);
    if std::fs::rename(&partial, dest).is_err() {
        // Taken meanwhile, or a stale tree from another archive: swap ours in.
        let old = super::unique_partial(dest);
        let moved = std::fs::rename(dest, &old).is_ok();
        let placed = std::fs::rename(&partial, dest);
        if moved {
            let _ = std::fs::remove_dir_all(&old);
        }
        if placed.is_err() {
            // Another process placed its copy of the same archive between the two renames.
            let _ = std::fs::remove_dir_all(&partial);
            if !dest.is_dir() {
                return placed
                    .map(|_| dest.to_path_buf())
                    .map_err(io(dest.display().to_string()));
            }
        }
    }
    std::fs::write(&marker, &digest).map_err(io(marker.display().to_string()))?;
    Ok(dest.to_path_buf())
}

/// Unpacks `archive` into `partial` (made here; removed again on failure).
fn unpack_into(archive: &Path, partial: &Path) -> Result<(), PypiError> {
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
    std::fs::create_dir_all(partial).map_err(io(partial.display().to_string()))?;
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
    if result.is_err() {
        let _ = std::fs::remove_dir_all(partial);
    }
    result
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

    /// Processes racing to unpack the same sdist each get a whole tree: nobody's scratch
    /// folder is shared, and the tree appears by a rename (the old shared `.partial` folder
    /// let one process delete or mix another's files).
    #[test]
    fn concurrent_unpacks_of_one_sdist_all_get_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("pkg-1.0.tar.gz");
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for i in 0..200 {
            let body = vec![b'x'; 2000];
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("pkg-1.0/m/f{i}.py"), body.as_slice())
                .unwrap();
        }
        std::fs::write(&archive, tar.into_inner().unwrap().finish().unwrap()).unwrap();
        let dest = dir.path().join("src").join("pkg-1.0");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (archive, dest) = (archive.clone(), dest.clone());
                std::thread::spawn(move || {
                    let out = unpack_sdist(&archive, &dest).unwrap();
                    std::fs::read_dir(out.join("m")).unwrap().count()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 200);
        }
        let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.iter().all(|n| !n.contains("partial")), "{left:?}");
        // Reused as it is for the same archive.
        std::fs::write(dest.join("m/f0.py"), "changed").unwrap();
        unpack_sdist(&archive, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("m/f0.py")).unwrap(),
            "changed"
        );
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
