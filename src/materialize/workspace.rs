//! The workspace: a bundle's files laid over the pristine source, as the patch the agent's
//! sandbox applies to the image's clean `/repo` (the bug goes in at run time, as for a local
//! task). Only text files; a bundle path that is a folder in the source is refused.

use std::path::Path;

use super::MaterializeError;
use crate::forge::mutate::unified_diff;

/// The patch turning the pristine `source` into the tree with `overlay` laid over it.
pub(super) fn bug_patch(
    source: &Path,
    overlay: &[(String, Vec<u8>)],
) -> Result<String, MaterializeError> {
    let mut patch = String::new();
    for (path, bytes) in overlay {
        let new = std::str::from_utf8(bytes)
            .map_err(|_| MaterializeError::Refused(format!("bundle file {path} is not text")))?;
        let on_disk = source.join(path);
        let meta = std::fs::symlink_metadata(&on_disk).ok();
        if meta.as_ref().is_some_and(|m| !m.is_file()) {
            return Err(MaterializeError::Refused(format!(
                "bundle file {path} is not a file in the source"
            )));
        }
        let diff = if meta.is_some() {
            let old = std::fs::read_to_string(&on_disk).map_err(|_| {
                MaterializeError::Refused(format!("source file {path} is not text"))
            })?;
            unified_diff(path, &old, new)
        } else {
            let body = unified_diff(path, "", new);
            body.replacen(
                &format!("--- a/{path}\n"),
                "new file mode 100644\n--- /dev/null\n",
                1,
            )
        };
        patch.push_str(&diff);
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_become_patches_that_git_applies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/a.py"), "x = 1\ny = 2\n").unwrap();
        let patch = bug_patch(
            dir.path(),
            &[
                ("pkg/a.py".into(), b"x = 1\ny = 3\n".to_vec()),
                ("pkg/new.py".into(), b"z = 0\n".to_vec()),
            ],
        )
        .unwrap();
        std::fs::write(dir.path().join("p.diff"), &patch).unwrap();
        let out = std::process::Command::new("git")
            .args(["apply", "p.diff"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{patch}\n{out:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pkg/a.py")).unwrap(),
            "x = 1\ny = 3\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pkg/new.py")).unwrap(),
            "z = 0\n"
        );
        assert!(bug_patch(dir.path(), &[("pkg".into(), b"x".to_vec())]).is_err());
        assert!(bug_patch(dir.path(), &[("b.bin".into(), vec![0xff, 0xfe])]).is_err());
    }
}
