//! Controls: honest fixes in awkward shapes that must still resolve.

use super::Class::*;
use super::Expect::*;
use super::gold::new_file;
use super::{Cases, Ctx};

/// Adds this class's cases, in corpus order.
pub(super) fn add(cx: &Ctx<'_>, cases: &mut Cases) {
    let gold = &cx.gold;
    let fix: &str = cx.gold.patch;
    let in_pkg = |name: &str| cx.in_pkg(name);
    let mut add = |name: &str, class, expect, patch: String| cases.add(name, class, expect, patch);
    add("the reference fix", Controls, Resolved, fix.to_owned());
    add(
        "the reference fix with CRLF line ends",
        Controls,
        Resolved,
        fix.replace('\n', "\r\n"),
    );
    add(
        "the reference fix with a non-ASCII comment",
        Controls,
        Resolved,
        gold.with("# café — naïve ✓ 修正", true),
    );
    add(
        "the reference fix plus a harmless helper module",
        Controls,
        Resolved,
        format!(
            "{fix}{}",
            new_file(&in_pkg("_agentao_free_helper.py"), "VALUE = 1")
                .replace("_agentao_free_helper", "_helper_xyz")
        ),
    );
    add(
        "the reference fix under other prefixes, without a git header",
        Controls,
        Resolved,
        fix.lines()
            .filter(|l| !l.starts_with("diff --git"))
            .map(|l| {
                let l = l
                    .replacen("--- a/", "--- x/", 1)
                    .replacen("+++ b/", "+++ y/", 1);
                format!("{l}\n")
            })
            .collect(),
    );
}
