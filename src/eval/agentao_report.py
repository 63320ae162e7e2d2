"""agentao's pytest reporter, loaded as `-p agentao_report` by every test run agentao makes.

It replaces reading a JUnit file that the code under test could rewrite. Loaded before any
code of the repository is imported, it:

- reads a per-run secret (64 hex characters) from its stdin, then puts /dev/null there, so
  the secret is in no file, environment variable or command line;
- keeps a private duplicate of the original stdout and writes one record per line to it,
  `AGENTAO1 <seq> <hmac-sha256 hex> <json>`, signed with the secret over `<seq> <json>`:
  `start`, one `report` per test phase, `collect` errors, `item` (collect-only runs),
  `tamper` and finally `end`. The host accepts only records whose signature and sequence
  number check out, so text printed by the tested code cannot pass for results;
- installs an audit hook (which cannot be removed) that reports, as `tamper`, interpreter-level
  events raised by lines the submitted patch added (AGENTAO_ADDED_FILE names the patch's
  canonical diff): frame, garbage-collector and tracing introspection, exec/compile, class
  attribute writes on the test framework, processes, sockets, ctypes;
- checks before every report that pytest's reporting machinery is still the one it found.

Every helper it needs is bound at import time, so later monkeypatching of `json`, `os` or
`hmac` by the tested code does not reach it.
"""

import sys

_write = None


def _bind():
    """Binds everything the reporter needs, before the tested code can touch it."""
    import _hashlib
    import os

    global _write
    key = b""
    if os.environ.get("AGENTAO_KEY_STDIN"):
        while len(key) < 64:
            chunk = os.read(0, 64 - len(key))
            if not chunk:
                break
            key += chunk
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    fd = os.dup(1)
    # JSON by hand from builtins only: the json module's classes can be monkeypatched.
    table = {c: f"\\u{c:04x}" for c in range(32)}
    table.update({ord('"'): '\\"', ord("\\"): "\\\\"})
    translate = str.translate
    is_str, is_bool, is_int, is_float = (
        lambda v: type(v) is str,
        lambda v: type(v) is bool,
        lambda v: type(v) is int,
        lambda v: type(v) is float,
    )

    def text(v):
        out = translate(v, table)
        return '"' + "".join(c if c < "\x7f" else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                             else "\\u{:04x}\\u{:04x}".format(0xD800 + ((ord(c) - 0x10000) >> 10),
                                                           0xDC00 + ((ord(c) - 0x10000) & 0x3FF))
                             for c in out) + '"'

    def dumps(record):
        parts = []
        for k, v in record.items():
            if is_bool(v):
                v = "true" if v else "false"
            elif is_int(v):
                v = int.__repr__(v)
            elif is_float(v):
                v = float.__repr__(v) if v == v and v not in (float("inf"), float("-inf")) else "0"
            else:
                v = text(v if is_str(v) else str(v))
            parts.append(text(k) + ":" + v)
        return "{" + ",".join(parts) + "}"

    digest = _hashlib.hmac_digest
    oswrite = os.write
    encode = str.encode
    hexlify = bytes.hex

    seq = [0]

    def write(record):
        seq[0] += 1
        n = seq[0]
        body = dumps(record)
        mac = hexlify(digest(key, encode(f"{n} {body}", "utf-8"), "sha256"))
        data = encode(f"\nAGENTAO1 {n} {mac} {body}\n", "utf-8")
        while data:
            n = oswrite(fd, data)
            data = data[n:]

    _write = write


_bind()


def _cap(text, n=4000):
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


# --- the audit hook -------------------------------------------------------------------------

def _added_lines(path):
    """{absolute file path: set of new line numbers} from a unified diff (the canonical one)."""
    added = {}
    if not path:
        return added
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
    except OSError:
        return added
    current = None
    in_hunk = False
    new_line = 0
    for line in lines:
        if line.startswith("diff --git "):
            current, in_hunk = None, False
        elif not in_hunk and line.startswith("+++ "):
            name = line[4:].split("\t")[0]
            current = None if name == "/dev/null" else "/repo/" + name[2:]
            if current is not None:
                added.setdefault(current, set())
        elif line.startswith("@@ "):
            in_hunk = True
            try:
                new = line.split(" ")[2]
                new_line = int(new[1:].split(",")[0])
            except (IndexError, ValueError):
                current = None
        elif current is not None and line.startswith("+"):
            added[current].add(new_line)
            new_line += 1
        elif current is not None and line.startswith(" "):
            new_line += 1
    return added


def _install_audit_hook():
    import os

    added = _added_lines(os.environ.get("AGENTAO_ADDED_FILE", ""))
    if not added:
        return
    getframe = sys._getframe
    # Events the offending code raises itself (the innermost frame is the added line).
    direct = frozenset({
        "exec", "compile", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook",
        "object.__getattr__", "object.__setattr__", "object.__delattr__",
        "sys.monitoring.register_callback",
    })
    # Events raised inside library code the added line called (the first frame outside the
    # standard library is the added line).
    called = frozenset({
        "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "socket.connect",
        "socket.bind", "ctypes.dlopen", "ctypes.dlsym", "ctypes.addressof", "ctypes.cdata",
        "ctypes.call_function", "pty.spawn", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "sys._current_frames",
    })
    watched = direct | called
    stdlib = (os.path.dirname(os.__file__), "<frozen")
    framework = ("_pytest", "pytest", "pluggy", "agentao_report", "agentao_cov")
    busy = [False]
    write = _write

    def hook(event, args):
        if event not in watched or busy[0]:
            return
        busy[0] = True
        try:
            if event == "object.__setattr__" or event == "object.__delattr__":
                module = getattr(args[0], "__module__", "") or ""
                if not module.startswith(framework):
                    return
            frame = getframe(1)
            if event in direct:
                candidates = [frame]
            else:
                candidates = []
                while frame is not None and frame.f_code.co_filename.startswith(stdlib):
                    frame = frame.f_back
                candidates = [frame]
            for f in candidates:
                if f is None:
                    continue
                lines = added.get(f.f_code.co_filename)
                if lines and f.f_lineno in lines:
                    write({"t": "tamper", "why": f"{event} from {f.f_code.co_filename}:{f.f_lineno}"})
        finally:
            busy[0] = False

    sys.addaudithook(hook)


_install_audit_hook()


# --- integrity of the reporting machinery ----------------------------------------------------

def _snapshot():
    import _pytest.reports
    import _pytest.runner
    import pluggy

    watched = {
        "_pytest.runner.call_and_report": (_pytest.runner, "call_and_report"),
        "_pytest.runner.runtestprotocol": (_pytest.runner, "runtestprotocol"),
        "_pytest.runner.call_runtest_hook": (_pytest.runner, "call_runtest_hook"),
        "_pytest.runner.CallInfo": (_pytest.runner, "CallInfo"),
        "_pytest.reports.TestReport": (_pytest.reports, "TestReport"),
        "pluggy.HookimplMarker": (pluggy, "HookimplMarker"),
    }
    cls_attrs = [
        (_pytest.reports.TestReport, "from_item_and_call"),
        (_pytest.reports.TestReport, "__init__"),
        (_pytest.reports.BaseReport, "passed"),
        (_pytest.reports.BaseReport, "failed"),
        (_pytest.runner.CallInfo, "from_call"),
    ]
    ids = {name: id(getattr(mod, attr, None)) for name, (mod, attr) in watched.items()}
    ids.update({f"{c.__name__}.{a}": id(c.__dict__.get(a)) for c, a in cls_attrs})

    def check():
        now = {name: id(getattr(mod, attr, None)) for name, (mod, attr) in watched.items()}
        now.update({f"{c.__name__}.{a}": id(c.__dict__.get(a)) for c, a in cls_attrs})
        return [name for name in ids if now.get(name) != ids[name]]

    return check


_changed = _snapshot()
_reported_tamper = set()


def _check_integrity():
    for name in _changed():
        if name not in _reported_tamper:
            _reported_tamper.add(name)
            _write({"t": "tamper", "why": f"{name} was replaced during the run"})


# --- hooks ----------------------------------------------------------------------------------

_write({"t": "start"})


def pytest_collectreport(report):
    if report.failed:
        _write({"t": "collect", "id": report.nodeid, "m": _cap(report.longreprtext, 2000)})


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        for item in session.items:
            _write({"t": "item", "id": item.nodeid})


def pytest_runtest_logreport(report):
    _check_integrity()
    record = {
        "t": "report",
        "id": report.nodeid,
        "w": report.when,
        "o": report.outcome,
        "d": round(float(getattr(report, "duration", 0.0) or 0.0), 4),
    }
    if hasattr(report, "wasxfail"):
        record["x"] = 1
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        record["m"] = _cap(getattr(crash, "message", "") or "", 1000)
        record["l"] = _cap(report.longreprtext, 4000)
    _write(record)


def pytest_sessionfinish(session, exitstatus):
    _check_integrity()
    free = -1
    try:
        import os

        st = os.statvfs("/tmp")
        free = st.f_bavail * st.f_frsize
    except OSError:
        pass
    _write({"t": "end", "exit": int(exitstatus), "tmp_free": free})
