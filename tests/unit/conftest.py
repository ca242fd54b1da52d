"""Unit tests: no sockets to a platform, no VOLTTRON. Importing ``volttron.client`` monkey-patches
the process for gevent, which changes how threads, ptys and sockets behave; tests that need
VOLTTRON live in ``tests/agents`` (mocked bus) and ``tests/integration`` and run in their own
pytest process (see scripts/test)."""

from __future__ import annotations

import sys

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run the unit tests in a process that VOLTTRON has patched."""
    if "volttron.client" in sys.modules and all("tests/unit" in str(i.path) for i in session.items):
        raise pytest.UsageError(
            "a unit test module imported volttron.client (gevent monkey-patching): "
            "move it to tests/agents or tests/integration")
