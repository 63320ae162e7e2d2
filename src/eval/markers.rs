//! The apply phase's report: the marker lines `apply.sh` writes on its stdout, read into what
//! the host judges (the method, git's change list, the canonical diff, where tests import
//! from).

use base64::Engine as _;

use super::harness::ApplyMethod;
use super::policy;

/// What the apply phase reported.
pub(super) enum Applied {
    /// The task's own patches failed: the task is broken, not the patch.
    TaskBroken(String),
    Failed,
    TooLarge(usize),
    Changed {
        method: Option<ApplyMethod>,
        listing: Vec<u8>,
        canonical: String,
        /// Where the tests import from.
        roots: policy::ImportRoots,
    },
}

pub(super) fn read_markers(stdout: &str) -> Applied {
    let mut method = None;
    let mut listing = None;
    let mut canonical = None;
    let mut roots = policy::ImportRoots::default();
    let b64 = base64::engine::general_purpose::STANDARD;
    for line in stdout.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "AGENTAO_TASK_BROKEN" => return Applied::TaskBroken(rest.to_owned()),
            "AGENTAO_APPLY_FAILED" => return Applied::Failed,
            "AGENTAO_TOO_LARGE" => return Applied::TooLarge(rest.trim().parse().unwrap_or(0)),
            "AGENTAO_APPLIED" => {
                method = match rest.trim() {
                    "git_apply" => Some(ApplyMethod::GitApply),
                    "git_apply3way" => Some(ApplyMethod::GitApply3way),
                    "patch_fuzz" => Some(ApplyMethod::PatchFuzz),
                    _ => None,
                }
            }
            "AGENTAO_LISTING" => listing = b64.decode(rest.trim()).ok(),
            "AGENTAO_BASEDIR" => roots.basedirs.push(rest.to_owned()),
            "AGENTAO_EXISTS" => {
                roots.existing.insert(rest.to_owned());
            }
            "AGENTAO_DIFF" => {
                canonical = b64
                    .decode(rest.trim())
                    .ok()
                    .map(|d| String::from_utf8_lossy(&d).into_owned())
            }
            _ => {}
        }
    }
    match (listing, canonical) {
        (Some(listing), Some(canonical)) => Applied::Changed {
            method,
            listing,
            canonical,
            roots,
        },
        _ => Applied::TaskBroken("the apply phase reported no change list".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_read() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let out = format!(
            "AGENTAO_APPLIED patch_fuzz\nAGENTAO_LISTING {}\nAGENTAO_DIFF {}\n",
            b64.encode(b":100644 100644 a b M\0x.py\0"),
            b64.encode("diff")
        );
        let Applied::Changed {
            method,
            listing,
            canonical,
            ..
        } = read_markers(&out)
        else {
            panic!("not read");
        };
        assert_eq!(method, Some(ApplyMethod::PatchFuzz));
        assert_eq!(listing, b":100644 100644 a b M\0x.py\0");
        assert_eq!(canonical, "diff");
        assert!(matches!(
            read_markers("AGENTAO_TASK_BROKEN bug\n"),
            Applied::TaskBroken(_)
        ));
        assert!(matches!(read_markers("junk\n"), Applied::TaskBroken(_)));
    }
}
