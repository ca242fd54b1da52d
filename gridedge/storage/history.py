"""One JSON file per local day (``history/YYYY-MM-DD.json``), kept for a year.

The files are for people and other tools (plot a day, import into a spreadsheet); the SQLite
store remains the source of truth. Each file is written to a temporary name and renamed into
place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from gridedge.storage.usage_store import StorageError

__all__ = ["DailyHistory"]

_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.json$")


class DailyHistory:
    """Writes, reads and prunes the per-day JSON files under ``directory``."""

    def __init__(self, *, directory: str | Path, keep_days: int = 366) -> None:
        if keep_days < 1:
            raise ValueError(f"keep_days must be >= 1, got {keep_days}")
        self.directory = Path(directory)
        self.keep_days = keep_days

    def path_for(self, day: date) -> Path:
        """File holding ``day``."""
        return self.directory / f"{day.isoformat()}.json"

    def write(self, day: date, payload: Mapping[str, Any]) -> Path:
        """Replace ``day``'s file with ``payload`` atomically."""
        path = self.path_for(day)
        try:
            text = json.dumps(payload, indent=1, sort_keys=True, allow_nan=False)
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{day.isoformat()}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, TypeError, ValueError) as exc:
            raise StorageError(f"{path}: cannot write history: {exc}") from exc
        return path

    def read(self, day: date) -> dict[str, Any] | None:
        """``day``'s record, or None if there is none."""
        path = self.path_for(day)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise StorageError(f"{path}: cannot read history: {exc}") from exc

    def days(self) -> list[date]:
        """Days that have a file, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            m = _NAME.match(entry.name)
            if m:
                try:
                    found.append(date.fromisoformat(m.group(1)))
                except ValueError:
                    continue
        return sorted(found)

    def prune(self, today: date) -> list[date]:
        """Delete files older than ``keep_days`` before ``today``; return the days removed."""
        limit = today - timedelta(days=self.keep_days)
        removed = []
        for day in self.days():
            if day < limit:
                try:
                    self.path_for(day).unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise StorageError(f"{self.path_for(day)}: cannot prune: {exc}") from exc
                removed.append(day)
        return removed
