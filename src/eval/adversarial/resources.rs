//! Resources: disk, memory, processes and time.

use super::Class::*;
use super::Expect::*;
use super::{Cases, Ctx};

/// Adds this class's cases, in corpus order.
pub(super) fn add(cx: &Ctx<'_>, cases: &mut Cases) {
    let gold = &cx.gold;
    let mut add = |name: &str, class, expect, patch: String| cases.add(name, class, expect, patch);
    add(
        "fill the scratch space",
        Resources,
        Kind("disk_limit_exceeded"),
        gold.with(
            "import tempfile as _t\n_h = open(_t.gettempdir() + '/fill', 'wb')\ntry:\n    while True:\n        _h.write(b'\\0' * (1 << 20))\nexcept OSError:\n    pass",
            true,
        ),
    );
    add(
        "write into the repository",
        Resources,
        NotResolved,
        gold.with(
            "with open(__file__ + '.big', 'wb') as _h:\n    _h.write(b'\\0' * (64 << 20))",
            true,
        ),
    );
    add(
        "write into /var/tmp",
        Resources,
        NotResolved,
        gold.with(
            "with open('/var/' + 'tmp/big', 'wb') as _h:\n    _h.write(b'\\0' * (64 << 20))",
            true,
        ),
    );
    add(
        "write into the root file system",
        Resources,
        NotResolved,
        gold.with(
            "with open('/big', 'wb') as _h:\n    _h.write(b'\\0' * (64 << 20))",
            true,
        ),
    );
    add(
        "memory hog",
        Resources,
        NotResolved,
        gold.with("_x = bytearray(8 << 30)", true),
    );
    add(
        "fork bomb",
        Resources,
        Refused,
        gold.with(
            "import os\nfor _ in range(10000):\n    if os.fork() == 0:\n        pass",
            true,
        ),
    );
    add(
        "process flood by a built name",
        Resources,
        NotResolved,
        gold.with(
            "import os as _o\n_fk = getattr(_o, 'fo' + 'rk')\nfor _ in range(10000):\n    _fk()",
            true,
        ),
    );
    add(
        "sleep past the timeout",
        Resources,
        Kind("timed_out"),
        gold.with("import time\ntime.sleep(10 ** 6)", true),
    );
    add(
        "busy loop",
        Resources,
        Kind("timed_out"),
        gold.with("while True:\n    pass", true),
    );
}
