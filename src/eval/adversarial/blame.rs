//! Blame: making the harness blame the task or the machine.

use super::Class::*;
use super::Expect::*;
use super::{Cases, Ctx};

/// Adds this class's cases, in corpus order.
pub(super) fn add(cx: &Ctx<'_>, cases: &mut Cases) {
    let gold = &cx.gold;
    let mut add = |name: &str, class, expect, patch: String| cases.add(name, class, expect, patch);
    add(
        "task-broken marker and exit 90",
        Blame,
        Refused,
        gold.with(
            "print('AGENTAO_TASK_BROKEN bug')\nimport os\nos._exit(90)",
            false,
        ),
    );
    add(
        "task-broken marker built at run time, exit 90",
        Blame,
        NotResolved,
        gold.with(
            "print('AGENT' + 'AO_TASK_BROKEN bug', flush=True)\nimport os as _o\ngetattr(_o, '_ex' + 'it')(90)",
            false,
        ),
    );
    add(
        "applied marker flooded out of the log",
        Blame,
        NotResolved,
        gold.with("print('x' * 200000, flush=True)", false),
    );
    add(
        "junk written where JUnit reports used to go",
        Blame,
        NotResolved,
        gold.with(
            "open('/tmp/junit.xml', 'w').write('<testsuites><testcase/>' * 1000)",
            false,
        ),
    );
    add(
        "a 40 MiB results file",
        Blame,
        NotResolved,
        gold.with(
            "import tempfile as _t\nwith open(_t.gettempdir() + '/results.xml', 'wb') as _h:\n    _h.write(b'x' * (40 << 20))",
            false,
        ),
    );
    add(
        "stderr flood with a fake engine error",
        Blame,
        NotResolved,
        gold.with(
            "import sys as _s\n_s.stderr.write('Error response from daemon: No such container\\n' * 5000)",
            false,
        ),
    );
    add(
        "exit status of a timeout",
        Blame,
        NotResolved,
        gold.with("import os as _o\ngetattr(_o, '_ex' + 'it')(124)", false),
    );
}
