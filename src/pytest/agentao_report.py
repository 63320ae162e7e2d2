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
- when AGENTAO_ADDED_FILE names the patch's canonical diff (evaluations):
  - installs an audit hook (which cannot be removed) that reports, as `tamper`,
    interpreter-level events raised by lines the patch added: garbage-collector and tracing
    introspection, exec/compile, code object writes, processes, sockets, ctypes;
  - snapshots pytest's and pluggy's reporting modules and classes (and this module), and
    reports as `tamper` any of them found changed before a test's result is written.

The writer and every helper it uses are bound at import time and reach the hooks as default
arguments, never through module globals, so monkeypatching `json`, `os`, `hmac` or this
module by the tested code does not reach them.
"""

import sys


def _make_writer():
    """The record writer, bound before the tested code can touch anything."""
    import _hashlib
    import os

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
    isascii = str.isascii
    join = "".join
    digest = _hashlib.hmac_digest
    oswrite = os.write
    encode = str.encode
    hexlify = bytes.hex
    int_repr, float_repr = int.__repr__, float.__repr__
    inf = float("inf")

    def char(c):
        n = ord(c)
        if n < 0x7F:
            return c
        if n < 0x10000:
            return f"\\u{n:04x}"
        n -= 0x10000
        return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"

    def text(v):
        v = translate(v, table)
        if isascii(v):
            return '"' + v + '"'
        return '"' + join(char(c) for c in v) + '"'

    def dumps(record):
        parts = []
        for k, v in record.items():
            t = type(v)
            if t is bool:
                v = "true" if v else "false"
            elif t is int:
                v = int_repr(v)
            elif t is float:
                v = float_repr(v) if v == v and -inf < v < inf else "0"
            else:
                v = text(v if t is str else str(v))
            parts.append(text(k) + ":" + v)
        return "{" + ",".join(parts) + "}"

    seq = [0]

    def write(record):
        seq[0] += 1
        n = seq[0]
        body = dumps(record)
        mac = hexlify(digest(key, encode(f"{n} {body}", "utf-8"), "sha256"))
        data = encode(f"\nAGENTAO1 {n} {mac} {body}\n", "utf-8")
        while data:
            data = data[oswrite(fd, data):]

    return write


def _cap(text, n=4000):
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _added_lines(path):
    """{absolute file path: set of new line numbers} from a unified diff (the canonical one)."""
    added = {}
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
                new_line = int(line.split(" ")[2][1:].split(",")[0])
            except (IndexError, ValueError):
                current = None
        elif current is not None and line.startswith("+"):
            added[current].add(new_line)
            new_line += 1
        elif current is not None and line.startswith(" "):
            new_line += 1
    return added


def _install_audit_hook(added, write):
    import os

    getframe = sys._getframe
    # Events the offending line raises itself (the innermost frame is the added line).
    direct = frozenset({
        "exec", "compile", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook",
        "object.__getattr__", "object.__setattr__", "object.__delattr__",
        "sys.monitoring.register_callback", "sys._getframe", "sys._getframemodulename",
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
    inspect_py = os.path.join(stdlib[0], "inspect.py")
    import sysconfig

    paths = sysconfig.get_paths()
    framework = tuple({paths["purelib"].rstrip("/") + "/", paths["platlib"].rstrip("/") + "/"})
    busy = [False]

    def is_added(frame):
        lines = added.get(frame.f_code.co_filename)
        return bool(lines) and frame.f_lineno in lines

    def hook(event, args):
        if event not in watched or busy[0]:
            return
        busy[0] = True
        try:
            frame = getframe(1)
            culprit = None
            if event in called:
                # Library code doing it for someone: anyone on the stack who is an added line.
                f = frame
                while f is not None:
                    if is_added(f):
                        culprit = f
                        break
                    f = f.f_back
            else:
                # Raised by the calling line itself; the installed tools' own frames (pytest,
                # pluggy: a callable handed to them) and inspect's do not launder it.
                f = frame
                while f is not None and (
                    f.f_code.co_filename.startswith(framework)
                    or f.f_code.co_filename == inspect_py
                ):
                    f = f.f_back
                if f is not None and is_added(f):
                    culprit = f
            if culprit is not None:
                where = f"{culprit.f_code.co_filename}:{culprit.f_lineno}"
                write({"t": "tamper", "why": f"{event} from {where}"})
        finally:
            busy[0] = False

    sys.addaudithook(hook)


# Modules whose functions and classes decide what a test's report says.
_WATCHED_MODULES = (
    "_pytest.runner", "_pytest.reports", "_pytest.python", "_pytest.main", "_pytest.nodes",
    "_pytest.outcomes", "_pytest.skipping", "_pytest.unittest", "_pytest.fixtures",
    "_pytest.assertion.rewrite", "_pytest.assertion.util", "_pytest.capture",
    "pluggy._callers", "pluggy._hooks", "pluggy._manager", "pluggy._result", __name__,
)
# Entries that legitimately change during a run.
_VOLATILE = frozenset({"__warningregistry__", "_abc_impl"})


def _make_integrity_check(write, touched):
    """A check that reports any watched module or class entry replaced since load."""
    import importlib
    from itertools import repeat
    from operator import attrgetter, is_, methodcaller

    # Builtins the checks call, bound here: the tested code can rebind `builtins.map`.
    all_, len_, list_, map_, id_, callable_ = all, len, list, map, id, callable

    # Each watched namespace (a module, or a class defined in it) with its entries at arming
    # time: `(label, live namespace, {key: value})`. A check compares every live entry with
    # these by identity in C (`map` over `operator.is_`, one pass per namespace type: no `==`
    # of the tested code's objects is ever called), so it costs the same at the thousandth
    # test as at the first. An entry found different is reported if it is foreign code, and
    # is then the one compared against (pytest itself sets a few entries at every test, e.g.
    # `_pytest.assertion.util._reprcompare`).
    spaces = []
    # The same entries flattened per namespace type: `[type's get, namespaces, keys, values]`;
    # every namespace, its length (volatile entries included), and its space by id.
    flat = []
    every = []
    lengths = []
    space_of = {}
    missing = object()
    reported = set()

    def snapshot(ns):
        return {k: v for k, v in list_(ns.items()) if k not in _VOLATILE}

    def flatten():
        groups = {}
        for space in spaces:
            _, ns, before = space
            space_of[id_(ns)] = space
            group = groups.setdefault(type(ns), ([], [], []))
            for k, v in before.items():
                group[0].append(ns)
                group[1].append(k)
                group[2].append(v)
        flat[:] = [[t.get, tuple(n), tuple(k), v] for t, (n, k, v) in groups.items()]
        every[:] = [ns for _, ns, _ in spaces]
        lengths[:] = list_(map_(len_, every))

    def arm():
        for name in _WATCHED_MODULES:
            module = sys.modules.get(name)
            if module is None:
                try:
                    module = importlib.import_module(name)
                except ImportError:
                    continue
            namespace = vars(module)
            found = [(name, namespace)]
            for k, v in list(namespace.items()):
                if isinstance(v, type) and getattr(v, "__module__", None) == name:
                    found.append((f"{name}.{k}", vars(v)))
            for label, ns in found:
                spaces.append((label, ns, snapshot(ns)))
        flatten()

    import sysconfig
    import types

    import os

    paths = sysconfig.get_paths()
    harness = os.path.dirname(os.path.abspath(__file__))
    trusted = tuple(
        p.rstrip("/") + "/"
        for p in {paths["purelib"], paths["platlib"], paths["stdlib"], harness}
    )
    function_type, method_type = types.FunctionType, types.MethodType

    def code_file(f):
        return f.__code__.co_filename if type(f) is function_type else None

    def foreign(v):
        """Whether `v` is code that comes from outside the installed test tools: the tested
        repository, a string handed to exec, or a builtin swapped in. Plain data is not."""
        if isinstance(v, property):
            parts = [v.fget, v.fset, v.fdel]
        elif isinstance(v, (classmethod, staticmethod)):
            parts = [v.__func__]
        elif type(v) is method_type:
            parts = [v.__func__]
        elif isinstance(v, type):
            parts = [x for x in vars(v).values() if type(x) is function_type]
        elif type(v) is function_type:
            parts = [v]
        elif callable(v) or hasattr(type(v), "__get__"):
            return True
        else:
            return False
        for f in parts:
            if f is None:
                continue
            name = code_file(f)
            if name is None or not name.startswith(trusted):
                return True
        return False

    # The session's state: every hook implementation and every collected item.
    session_state = {}
    # Item attributes that are methods of the class; set on an instance, they replace how
    # the test runs or reports.
    item_methods = frozenset({
        "runtest", "setup", "teardown", "repr_failure", "reportinfo", "_prunetraceback",
        "ihook", "obj", "function", "_obj",
    })

    def hookimpls(pm):
        out = {}
        for name, caller in list(vars(pm.hook).items()):
            get = getattr(caller, "get_hookimpls", None)
            if get is None:
                continue
            for impl in get():
                out[(name, id(impl))] = impl
        return out

    get_impls = methodcaller("get_hookimpls")
    impl_function = attrgetter("function")

    def registered(pm):
        """Every hook implementation and its function, in order: what a check compares by
        identity (in C) before it looks at any implementation one by one."""
        callers = [c for c in list_(vars(pm.hook).values()) if hasattr(c, "get_hookimpls")]
        impls = [i for group in map_(get_impls, callers) for i in group]
        return impls, list_(map_(impl_function, impls))

    def same(now, then):
        return len_(now) == len_(then) and all_(map_(is_, now, then))

    def conftest(plugin):
        name = getattr(plugin, "__file__", "") or ""
        return type(plugin) is types.ModuleType and name.endswith("/conftest.py")

    def watch_session(pm, items):
        session_state["pm"] = pm
        session_state["impls"] = hookimpls(pm)
        session_state["registered"] = ([], [])
        by_id = {}
        for item in items:
            by_id.setdefault(item.nodeid, []).append((item, dict(vars(item))))
        session_state["items"] = by_id

    def check_item(item, before):
        now = vars(item)
        for k, v in list(now.items()):
            old = before.get(k, before)
            if old is v or (id(item), k) in reported:
                continue
            if (k in item_methods and k not in before and k != "_obj") or (
                old is not before and k in item_methods and foreign(v)
            ) or (callable(v) and foreign(v) and k not in ("_obj", "obj")):
                reported.add((id(item), k))
                write({"t": "tamper", "why": f"{item.nodeid}.{k} was set during the run"})

    def check_items(nodeid=None):
        """The collected items: all of them, or only those of `nodeid`, the test whose phase
        is being reported (a change made to it earlier shows no later than its setup report,
        before its call runs; a sweep of all items on every report made a run quadratic in
        its number of tests)."""
        items = session_state.get("items", {})
        if nodeid is None:
            watched = [e for entries in items.values() for e in entries]
        else:
            watched = items.get(nodeid, ())
        for item, before in watched:
            check_item(item, before)

    def check_hooks():
        """The hook implementations: looked at one by one only when one was added, removed
        or given another function since the last check."""
        pm = session_state.get("pm")
        if pm is None:
            return
        impls, functions = registered(pm)
        then_impls, then_functions = session_state["registered"]
        if same(impls, then_impls) and same(functions, then_functions):
            return
        for key, impl in hookimpls(pm).items():
            if key in reported:
                continue
            # Whenever it was registered, a hook implementation written by the patch is the
            # tested code reaching into the run.
            where = code_file(impl.function) or ""
            if where in touched or where.startswith("<"):
                reported.add(key)
                write({"t": "tamper", "why": f"a {key[0]} implementation from {where} is registered"})
                continue
            if key in session_state["impls"]:
                continue
            # New since the session started: conftests of the tree (which no patch may touch)
            # and the installed tools may register; nothing else may.
            if conftest(impl.plugin) or not foreign(impl.function):
                session_state["impls"][key] = impl
                continue
            reported.add(key)
            where = code_file(impl.function) or repr(impl.function)
            write({"t": "tamper", "why": f"a {key[0]} implementation from {where} was registered during the run"})
        session_state["registered"] = (impls, functions)

    def check(nodeid=None):
        check_hooks()
        check_items(nodeid)
        check_namespaces()

    def entry(label, ns, before, k):
        """Reports the entry `k` of a watched namespace if it was replaced by, or added as,
        foreign code, or if a callable was removed."""
        where = (label, k)
        if where in reported:
            return
        value, old = ns.get(k, missing), before.get(k, missing)
        if value is missing:
            if old is not missing and callable_(old):
                reported.add(where)
                write({"t": "tamper", "why": f"{label}.{k} was removed during the run"})
        elif old is not value and foreign(value):
            reported.add(where)
            what = "added" if old is missing else "replaced"
            write({"t": "tamper", "why": f"{label}.{k} was {what} during the run"})

    def check_namespaces():
        again = False
        if list_(map_(len_, every)) != lengths:
            # An entry added or removed: those namespaces are read again, whole.
            for i, (label, ns, before) in enumerate(spaces):
                if len_(ns) != lengths[i]:
                    for k in (set(ns.keys()) | before.keys()) - _VOLATILE:
                        entry(label, ns, before, k)
                    spaces[i] = (label, ns, snapshot(ns))
                    again = True
        for get, namespaces, keys, values in flat:
            if all_(map_(is_, map_(get, namespaces, keys, repeat(missing)), values)):
                continue
            same = list_(map_(is_, map_(get, namespaces, keys, repeat(missing)), values))
            at = -1
            for _ in range(same.count(False)):
                at = same.index(False, at + 1)
                ns, k = namespaces[at], keys[at]
                label, _, before = space_of[id_(ns)]
                entry(label, ns, before, k)
                value = ns.get(k, missing)
                if value is missing:
                    before.pop(k, None)
                    again = True
                else:
                    before[k] = value
                    values[at] = value
        if again:
            flatten()

    return check, arm, watch_session, check_items


def _hooks():
    """The plugin's hooks, as closures over the writer and the check: no module global or
    default argument the tested code could swap."""
    import os

    import _pytest.reports

    write = _make_writer()
    check, arm = (lambda nodeid=None: None), (lambda: None)
    watch_session, check_items = (lambda pm, items: None), (lambda nodeid: None)
    added_file = os.environ.get("AGENTAO_ADDED_FILE", "")
    if added_file:
        added = _added_lines(added_file)
        if added:
            _install_audit_hook(added, write)
        check, arm, watch_session, check_items = _make_integrity_check(write, frozenset(added))
    write({"t": "start"})
    statvfs = os.statvfs
    test_report = _pytest.reports.TestReport
    try:
        import _pytest.subtests

        subtest_report = _pytest.subtests.SubtestReport
    except (ImportError, AttributeError):
        subtest_report = None
    pm_box = []

    def pytest_configure(config):
        pm_box.append(config.pluginmanager)

    def pytest_collectreport(report):
        if report.failed:
            write({"t": "collect", "id": report.nodeid, "m": _cap(report.longreprtext, 2000)})

    def pytest_collection_finish(session):
        if session.config.option.collectonly:
            for item in session.items:
                write({"t": "item", "id": _cap(item.nodeid, 4000)})
        if pm_box:
            watch_session(pm_box[0], session.items)
            check()

    def pytest_runtest_logreport(report):
        kind = type(report)
        if kind is subtest_report and subtest_report is not None:
            # One of a test's subtests: a failure fails the test; passes add nothing.
            record = {"t": "subtest", "id": _cap(report.nodeid, 4000), "o": report.outcome}
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                record["m"] = _cap(getattr(crash, "message", "") or "", 1000)
                record["l"] = _cap(report.longreprtext, 4000)
            write(record)
            return
        if kind is not test_report:
            write({"t": "tamper", "why": "a report pytest did not make was handed to the reporter"})
            return
        # Every phase's report first checks the reported test's item (its setup report
        # comes before its call runs); the call's also checks the watched modules.
        if report.when == "call":
            check(report.nodeid)
        else:
            check_items(report.nodeid)
        record = {
            "t": "report",
            "id": _cap(report.nodeid, 4000),
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
        write(record)

    def pytest_sessionfinish(session, exitstatus):
        check()
        free = -1
        try:
            st = statvfs("/tmp")
            free = st.f_bavail * st.f_frsize
        except OSError:
            pass
        write({"t": "end", "exit": int(exitstatus), "tmp_free": free})

    return (
        pytest_configure,
        pytest_collectreport,
        pytest_collection_finish,
        pytest_runtest_logreport,
        pytest_sessionfinish,
        arm,
    )


(
    pytest_configure,
    pytest_collectreport,
    pytest_collection_finish,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    _arm,
) = _hooks()
_arm()
