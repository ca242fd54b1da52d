"""Client of the demo VTN's JSON control surface, on the standard library only (``urllib``).

Used by ``gridedge vtn event|modify|cancel|state`` and by the integration tests. The base URL
defaults to ``$GRIDEDGE_VTN_CONTROL_URL`` or ``http://127.0.0.1:8081``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gridedge.errors import ProtocolError, ProtocolTimeout

__all__ = ["CONTROL_URL_ENV", "DEFAULT_CONTROL_URL", "VtnControlClient", "VtnControlError", "default_control_url"]

#: environment variable naming the control surface's base URL
CONTROL_URL_ENV = "GRIDEDGE_VTN_CONTROL_URL"
DEFAULT_CONTROL_URL = "http://127.0.0.1:8081"


def default_control_url(environ: Mapping[str, str] | None = None) -> str:
    """``$GRIDEDGE_VTN_CONTROL_URL`` when set; else the control URL of the running demo site
    (``$GRIDEDGE_SITE_DIR/run/ports.json``, written by ``gridedge up``, which may have moved its
    ports with ``GRIDEDGE_PORT_BASE``); else ``http://127.0.0.1:8081``."""
    env = os.environ if environ is None else environ
    if env.get(CONTROL_URL_ENV):
        return env[CONTROL_URL_ENV]
    site_dir = env.get("GRIDEDGE_SITE_DIR")
    if site_dir:
        try:
            ports = json.loads((Path(site_dir) / "run" / "ports.json").read_text())
        except (OSError, ValueError):
            ports = {}
        if isinstance(ports, dict) and ports.get("vtn_control_url"):
            return str(ports["vtn_control_url"])
    return DEFAULT_CONTROL_URL


class VtnControlError(ProtocolError):
    """The control surface refused a request (``status`` is the HTTP status, 0 if unreachable)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status == 0 or status >= 500


class VtnControlClient:
    """Create, modify and cancel events and read the state of a demo VTN."""

    def __init__(self, *, base_url: str | None = None, timeout_s: float = 10.0) -> None:
        self.base_url = (base_url or default_control_url()).rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"{self.base_url}{path}", data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read().decode("utf-8") or "null")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                text = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                pass
            raise VtnControlError(f"{method} {path}: HTTP {exc.code}: {text}", status=exc.code) from exc
        except TimeoutError as exc:
            raise ProtocolTimeout(f"{method} {self.base_url}{path}: no answer in {self.timeout_s} s") from exc
        except urllib.error.URLError as exc:
            raise VtnControlError(f"cannot reach the VTN control surface at {self.base_url}: {exc.reason}",
                                  status=0) from exc

    def create_event(self, **request: Any) -> dict[str, Any]:
        """``POST /events``; returns ``{"event_id", "modification_number", "ven_ids"}``."""
        return self._call("POST", "/events", request)

    def modify_event(self, event_id: str, **request: Any) -> dict[str, Any]:
        """``POST /events/{id}``; returns the new modification number."""
        return self._call("POST", f"/events/{urllib.parse.quote(event_id, safe='')}", request)

    def cancel_event(self, event_id: str) -> dict[str, Any]:
        """``POST /events/{id}/cancel``."""
        return self._call("POST", f"/events/{urllib.parse.quote(event_id, safe='')}/cancel")

    def state(self) -> dict[str, Any]:
        """``GET /state``: VENs, events with opt answers, reports."""
        return self._call("GET", "/state")
