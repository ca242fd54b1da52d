"""Persistence of site figures: the SQLite usage store, per-day JSON history, the meter recorder.

No volttron, no gevent: usable from an agent, the dashboard or a script.
"""

from gridedge.storage.history import DailyHistory
from gridedge.storage.recorder import MeterRecorder
from gridedge.storage.usage_store import StorageError, UsageStore

__all__ = ["DailyHistory", "MeterRecorder", "StorageError", "UsageStore"]
