"""pytest plugin loaded by the agentao task forge (`-p agentao_cov`).

Records coverage of the package's own code with one coverage context per test node id, so the
forge can ask which tests execute a given function. Test files are left out of the measurement.
"""
import os

import coverage
import pytest

_cov = None


def pytest_configure(config):
    global _cov
    # config_file=False: the project's own coverage settings (parallel data files, plugins,
    # source filters) must not change where and what this run records.
    _cov = coverage.Coverage(
        data_file=os.environ["AGENTAO_COV_FILE"],
        config_file=False,
        source=[os.environ.get("AGENTAO_COV_SOURCE", "/repo")],
        omit=["*/tests/*", "*/test/*", "*/testing/*", "*/test_*.py", "*/*_test.py",
              "*/conftest.py", "*/setup.py", "*/docs/*"],
    )
    _cov.start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if _cov is not None:
        _cov.switch_context(item.nodeid)


def pytest_unconfigure(config):
    if _cov is not None:
        _cov.stop()
        _cov.save()
