//! A task as a portable description (`tasks::spec`) for miners on other machines: where its
//! pristine source comes from, the environment recipe (the wheels the image holds, pinned by
//! file name and sha256, and the recipe's versions) that names the same image tag on both
//! sides, and the workspace.
//!
//! A forged task: the sdist by name, version and sha256, the buggy files as a workspace bundle
//! laid over it. The bundle is the public release plus the bug: whoever holds it can diff it
//! against the sdist and read the answer back. It is marked `public-answer`; the validator
//! decides where such tasks may go.
//!
//! A task from a git checkout (harvested from GitHub): the repository's URL and the task's base
//! commit, the tree as it is there (`Workspace::Pristine`: no bundle; the gold patch and the
//! test patch never travel), the image the task's own (`env::git_image_name`, the commit's
//! first 12 hex digits). The caller checks the tree out (`github::describe`); its exposure is
//! the task's (`none` for an open issue).

use std::path::Path;

use super::{Forge, ForgeError};
use crate::tasks::bundle;
use crate::tasks::spec::{
    EnvRecipe, Exposure, SPEC_VERSION, Source, TaskSpec, WheelPin, Workspace, sha256_hex,
};
use crate::tasks::{Task, TaskError};

/// A description and the bundle its hash names (empty for a pristine workspace).
#[derive(Debug, Clone)]
pub struct Described {
    pub spec: TaskSpec,
    pub bundle: Vec<u8>,
}

impl Forge<'_> {
    /// Describes a stored forged task (its environment is made ready on the way, as for a
    /// round). A task from a git checkout is described by [`Forge::describe_checkout`].
    pub async fn describe(&self, task: &Task, time_limit: f64) -> Result<Described, ForgeError> {
        if task.package.is_empty() || task.pypi_version.is_empty() {
            return Err(refused(task, "not forged from an sdist"));
        }
        let sdist = self
            .pypi
            .resolve_sdist(&task.package, Some(&task.pypi_version))
            .await?;
        let (source, _, image) = self.environment(&task.package, &sdist).await?;
        let key = format!("{}-{}", task.package, sdist.version);
        let wheels_dir = self.wheelhouse(&source, &task.package, &key).await?;
        let wheels = pins(&wheels_dir)?;
        let mut files = Vec::new();
        for diff in [&task.bug_patch, &task.test_patch] {
            for (path, bytes) in apply_patch(&source, diff, &files)
                .map_err(|e| ForgeError::Requirements(format!("{}: {e}", task.instance_id)))?
            {
                files.retain(|(p, _): &(String, Vec<u8>)| *p != path);
                files.push((path, bytes));
            }
        }
        let (workspace, bundle) = if files.is_empty() {
            (Workspace::Pristine, Vec::new())
        } else {
            let bytes =
                bundle::pack(&files).map_err(|e| ForgeError::Requirements(e.to_string()))?;
            (
                Workspace::Bundle {
                    sha256: sha256_hex(&bytes),
                    bytes: bytes.len() as u64,
                },
                bytes,
            )
        };
        let source = Source::Pypi {
            name: task.package.clone(),
            version: sdist.version.clone(),
            filename: sdist.filename.clone(),
            sha256: sdist.sha256.clone(),
        };
        let spec = sealed(task, source, recipe(wheels, image), workspace, time_limit);
        Ok(Described { spec, bundle })
    }

    /// Describes a task whose pristine source is `tree`, the checkout of its base commit from
    /// the repository at `url` (what the validator's git base URL names for `task.repo`): the
    /// environment is made ready from that tree as the harvest made it, and must come out as
    /// the task's own image (else the wheels pinned would not be the ones it is judged with).
    pub async fn describe_checkout(
        &self,
        task: &Task,
        url: &str,
        tree: &Path,
        time_limit: f64,
    ) -> Result<Described, ForgeError> {
        let commit = task.base_commit.to_ascii_lowercase();
        if !crate::tasks::spec::is_commit_id(&commit) {
            return Err(refused(task, "its base commit is not a full commit id"));
        }
        let name = super::env::git_image_name(&task.repo);
        let (_, image, wheels_dir) = self
            .environment_parts(&task.package, &name, &commit[..12], tree)
            .await?;
        if image != task.image {
            return Err(refused(
                task,
                &format!(
                    "its base commit's environment is {image}, not the task's image {} (harvest it again)",
                    task.image
                ),
            ));
        }
        let wheels = pins(&wheels_dir)?;
        let source = Source::Git {
            url: url.to_owned(),
            commit,
        };
        let spec = sealed(
            task,
            source,
            recipe(wheels, image),
            Workspace::Pristine,
            time_limit,
        );
        Ok(Described {
            spec,
            bundle: Vec::new(),
        })
    }
}

fn refused(task: &Task, reason: &str) -> ForgeError {
    ForgeError::Describe {
        task: task.instance_id.clone(),
        reason: reason.to_owned(),
    }
}

/// The wheels of a wheelhouse, by file name and sha256, in name order.
fn pins(dir: &Path) -> Result<Vec<WheelPin>, ForgeError> {
    let mut wheels = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".whl") {
            let bytes = std::fs::read(entry.path())
                .map_err(|e| ForgeError::Requirements(format!("{name}: {e}")))?;
            wheels.push(WheelPin {
                filename: name,
                sha256: sha256_hex(&bytes),
            });
        }
    }
    wheels.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(wheels)
}

/// This build's environment recipe with `wheels`, naming `image`.
fn recipe(wheels: Vec<WheelPin>, image: String) -> EnvRecipe {
    EnvRecipe {
        recipe: super::env::ENV_RECIPE_VERSION.to_owned(),
        base_image: crate::sandbox::base_image_tag().reference,
        python: "3.11".into(),
        install: "editable".into(),
        wheels,
        image,
    }
}

/// The sealed description of `task` from its parts; the exposure is the task's.
fn sealed(
    task: &Task,
    source: Source,
    environment: EnvRecipe,
    workspace: Workspace,
    time_limit: f64,
) -> TaskSpec {
    TaskSpec {
        spec_version: SPEC_VERSION,
        instance_id: task.instance_id.clone(),
        source,
        environment,
        workspace,
        exposure: Exposure::of(task),
        problem_statement: task.problem_statement.clone(),
        hints: task.hints_text.clone(),
        time_limit,
        hash: String::new(),
    }
    .sealed()
}

/// The files a unified diff changes, with their new contents, applied to the files under
/// `root` (or to `earlier`, files already changed). Hunks must match exactly (a small offset
/// is searched): this applies the validator's own patches, never a stranger's.
pub fn apply_patch(
    root: &Path,
    diff: &str,
    earlier: &[(String, Vec<u8>)],
) -> Result<Vec<(String, Vec<u8>)>, TaskError> {
    let fail = |reason: String| TaskError::Parse {
        path: "patch".into(),
        line: 0,
        reason,
    };
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let lines: Vec<&str> = diff.split_inclusive('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(old) = lines[i].strip_prefix("--- ") else {
            i += 1;
            continue;
        };
        let new = lines
            .get(i + 1)
            .and_then(|l| l.strip_prefix("+++ "))
            .ok_or_else(|| fail(format!("no +++ after {old:?}")))?;
        i += 2;
        let path = new.trim_end().trim_start_matches("b/").to_owned();
        if path == "/dev/null" {
            return Err(fail("file deletions are not described".into()));
        }
        let original: String = if old.trim_end() == "/dev/null" {
            String::new()
        } else if let Some((_, b)) = earlier.iter().find(|(p, _)| *p == path) {
            String::from_utf8_lossy(b).into_owned()
        } else {
            std::fs::read_to_string(root.join(&path)).map_err(|e| fail(format!("{path}: {e}")))?
        };
        let mut file: Vec<String> = original.split_inclusive('\n').map(str::to_owned).collect();
        let mut shift: isize = 0;
        while i < lines.len() && lines[i].starts_with("@@ ") {
            let start: isize = lines[i]
                .split(' ')
                .nth(1)
                .and_then(|r| r.trim_start_matches('-').split(',').next())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| fail(format!("bad hunk header {:?}", lines[i])))?;
            i += 1;
            let (mut before, mut after) = (Vec::new(), Vec::new());
            while i < lines.len() && !lines[i].starts_with("@@ ") && !lines[i].starts_with("diff ")
            {
                let l = lines[i];
                let no_newline = lines.get(i + 1).is_some_and(|n| n.starts_with('\\'));
                let text = |s: &str| {
                    let s = s.strip_suffix('\n').unwrap_or(s);
                    if no_newline {
                        s.to_owned()
                    } else {
                        format!("{s}\n")
                    }
                };
                match l.chars().next() {
                    Some(' ') => {
                        before.push(text(&l[1..]));
                        after.push(text(&l[1..]));
                    }
                    Some('-') if !l.starts_with("--- ") => before.push(text(&l[1..])),
                    Some('+') if !l.starts_with("+++ ") => after.push(text(&l[1..])),
                    Some('\\') => {}
                    _ => break,
                }
                i += 1;
            }
            let want = (start - 1).max(0) + shift;
            let at = (0..=file.len().saturating_sub(before.len()))
                .filter(|&p| file[p..p + before.len()] == before[..])
                .min_by_key(|&p| (p as isize - want).abs())
                .ok_or_else(|| fail(format!("{path}: a hunk does not apply")))?;
            file.splice(at..at + before.len(), after.iter().cloned());
            shift += after.len() as isize - before.len() as isize;
        }
        out.push((path, file.concat().into_bytes()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::mutate::unified_diff;

    #[test]
    fn a_forged_diff_applies_back_to_the_buggy_file() {
        let dir = tempfile::tempdir().unwrap();
        let clean = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n";
        let buggy = clean.replace("a + b", "a - b");
        std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/calc.py"), clean).unwrap();
        let diff = unified_diff("pkg/calc.py", clean, &buggy);
        let out = apply_patch(dir.path(), &diff, &[]).unwrap();
        assert_eq!(out, vec![("pkg/calc.py".to_owned(), buggy.into_bytes())]);
        let added = unified_diff("pkg/new.py", "", "x = 1");
        let added = added.replace("--- a/pkg/new.py", "--- /dev/null");
        let out = apply_patch(dir.path(), &added, &[]).unwrap();
        assert_eq!(out[0].1, b"x = 1");
        assert!(
            apply_patch(
                dir.path(),
                &unified_diff("pkg/calc.py", "zzz\n", "y\n"),
                &[]
            )
            .is_err()
        );
    }
}
