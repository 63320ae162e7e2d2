//! Workspace bundles: the files a task's starting tree has in place of (or beside) the pristine
//! source, as a zstd-compressed tar, content-addressed by the SHA-256 of its bytes.
//!
//! Packing is deterministic (sorted names, mode 0644, time 0, owner 0), so the same files give
//! the same bundle and the same hash. Unpacking is for a stranger's bytes: the size is capped
//! before and after decompression, the hash is checked first, and only regular files with
//! plain relative paths are taken: absolute paths, `..`, links of any kind and special files
//! are refused, as the sdist unpacker refuses them.

use std::io::Read;
use std::path::{Component, Path};

use super::spec::sha256_hex;

/// Largest bundle carried inline in a synapse (compressed bytes).
pub const MAX_INLINE_BYTES: u64 = 1 << 20;
/// Largest unpacked content of a bundle.
pub const MAX_UNPACKED_BYTES: u64 = 16 << 20;
/// Most files in a bundle.
pub const MAX_FILES: usize = 2_000;

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BundleError {
    #[error("bundle of {bytes} bytes is over the cap of {cap} bytes")]
    TooLarge { bytes: u64, cap: u64 },
    #[error("bundle sha256 mismatch (expected {expected}, got {actual})")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("bundle entry {entry:?} refused: {why}")]
    Unsafe { entry: String, why: &'static str },
    #[error("corrupt bundle: {0}")]
    Corrupt(String),
}

/// Packs `(relative path, bytes)` files into a bundle.
pub fn pack(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, BundleError> {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in sorted {
        check_path(name)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes.as_slice())
            .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    }
    let raw = tar
        .into_inner()
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    zstd::encode_all(raw.as_slice(), 3).map_err(|e| BundleError::Corrupt(e.to_string()))
}

/// Unpacks a bundle whose sha256 must be `expected` and whose size must be at most `cap`,
/// into `(relative path, bytes)` files.
pub fn unpack(
    bundle: &[u8],
    expected: &str,
    cap: u64,
) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    if bundle.len() as u64 > cap {
        return Err(BundleError::TooLarge {
            bytes: bundle.len() as u64,
            cap,
        });
    }
    let actual = sha256_hex(bundle);
    if actual != expected {
        return Err(BundleError::ChecksumMismatch {
            expected: expected.to_owned(),
            actual,
        });
    }
    let decoder = zstd::stream::read::Decoder::new(bundle)
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    // One byte more than allowed tells an over-size stream from one exactly at the cap.
    let mut raw = Vec::new();
    decoder
        .take(MAX_UNPACKED_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    if raw.len() as u64 > MAX_UNPACKED_BYTES {
        return Err(BundleError::TooLarge {
            bytes: raw.len() as u64,
            cap: MAX_UNPACKED_BYTES,
        });
    }
    let mut archive = tar::Archive::new(raw.as_slice());
    let mut out = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| BundleError::Corrupt(e.to_string()))?
    {
        let mut entry = entry.map_err(|e| BundleError::Corrupt(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| BundleError::Corrupt(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(BundleError::Unsafe {
                entry: name,
                why: "links are not allowed",
            });
        }
        if kind.is_dir() {
            check_path(name.trim_end_matches('/'))?;
            continue;
        }
        if !kind.is_file() {
            return Err(BundleError::Unsafe {
                entry: name,
                why: "only regular files are allowed",
            });
        }
        check_path(&name)?;
        if out.len() >= MAX_FILES {
            return Err(BundleError::TooLarge {
                bytes: out.len() as u64,
                cap: MAX_FILES as u64,
            });
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| BundleError::Corrupt(e.to_string()))?;
        out.push((name, bytes));
    }
    Ok(out)
}

/// A plain relative path: normal components only, no `.git`.
fn check_path(name: &str) -> Result<(), BundleError> {
    let unsafe_path = |why| {
        Err(BundleError::Unsafe {
            entry: name.to_owned(),
            why,
        })
    };
    let path = Path::new(name);
    if name.is_empty() || path.is_absolute() {
        return unsafe_path("absolute or empty path");
    }
    for c in path.components() {
        match c {
            Component::Normal(part) if part == ".git" => return unsafe_path("inside .git"),
            Component::Normal(_) => {}
            _ => return unsafe_path("path leaves the tree"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_deterministic_and_round_trip() {
        let files = vec![
            ("pkg/b.py".to_owned(), b"b = 2\n".to_vec()),
            ("pkg/a.py".to_owned(), b"a = 1\n".to_vec()),
        ];
        let one = pack(&files).unwrap();
        let two = pack(&[files[1].clone(), files[0].clone()]).unwrap();
        assert_eq!(one, two, "same files, same bytes");
        let back = unpack(&one, &sha256_hex(&one), MAX_INLINE_BYTES).unwrap();
        assert_eq!(back[0], files[1]);
        assert_eq!(back[1], files[0]);
    }

    #[test]
    fn tampered_oversized_and_escaping_bundles_are_refused() {
        let good = pack(&[("a.py".to_owned(), b"x\n".to_vec())]).unwrap();
        let sha = sha256_hex(&good);
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            unpack(&bad, &sha, MAX_INLINE_BYTES),
            Err(BundleError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            unpack(&good, &sha, 4),
            Err(BundleError::TooLarge { .. })
        ));
        assert!(pack(&[("../x.py".to_owned(), Vec::new())]).is_err());
        // A hand-made tar with a symlink pointing out of the tree.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tar.append_link(&mut h, "pkg/evil.py", "/etc/passwd")
            .unwrap();
        let linked = zstd::encode_all(tar.into_inner().unwrap().as_slice(), 3).unwrap();
        let err = unpack(&linked, &sha256_hex(&linked), MAX_INLINE_BYTES).unwrap_err();
        assert!(matches!(err, BundleError::Unsafe { .. }), "{err}");
        // A zstd bomb: small compressed, over the unpacked cap.
        let big = vec![(
            "a.py".to_owned(),
            vec![b'a'; (MAX_UNPACKED_BYTES + 10) as usize],
        )];
        let bomb = pack(&big).unwrap();
        assert!(bomb.len() < 100_000);
        assert!(matches!(
            unpack(&bomb, &sha256_hex(&bomb), MAX_INLINE_BYTES),
            Err(BundleError::TooLarge { .. })
        ));
    }
}
