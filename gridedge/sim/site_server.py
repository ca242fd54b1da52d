"""The site model's control socket: how simulated actuators outside the simulator process (the
GPIO pins behind the platform driver's relay interface) reach the physics.

Protocol: newline-delimited JSON over TCP on loopback, one request per line, one reply per line.

- ``{"op": "set_pin", "pin": 17, "level": 1.0}`` -> ``{"ok": true}``
- ``{"op": "get_pins"}`` -> ``{"ok": true, "pins": {"17": 1.0, ...}}``
- ``{"op": "snapshot"}`` -> ``{"ok": true, "power_w": ..., "circuits": [...], ...}``
- ``{"op": "pin_events", "since": 0}`` -> ``{"ok": true, "events": [[seq, ts, pin, level], ...]}``
  (the last pin changes with the wall-clock time they reached the model; used by benchmarks)
- ``{"op": "fault", "device": "stpm34", "silent": true, "corrupt_every": 3}`` -> ``{"ok": true}``:
  inject a device fault (a board that stops answering, CRC noise); each device simulator
  registers which settings it takes. Used by the integration tests of failure handling.

A malformed line gets ``{"ok": false, "error": "..."}`` and the connection stays open.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gridedge.sim.site import SiteModel, SiteSnapshot

__all__ = ["SiteClient", "SiteServer", "snapshot_to_dict"]


def snapshot_to_dict(snap: SiteSnapshot) -> dict[str, Any]:
    """A JSON-able view of a snapshot."""
    return {
        "ts": snap.ts,
        "power_w": snap.power_w,
        "reactive_var": snap.reactive_var,
        "frequency_hz": snap.frequency_hz,
        "tariff": snap.tariff,
        "import_kwh": list(snap.import_kwh),
        "export_kwh": list(snap.export_kwh),
        "phases": [
            {"voltage_v": p.voltage_v, "current_a": p.current_a, "power_w": p.power_w,
             "reactive_var": p.reactive_var}
            for p in snap.phases
        ],
        "circuits": [
            {"id": c.id, "level": c.level, "power_w": c.power_w} for c in snap.circuits
        ],
    }


class _Handler(socketserver.StreamRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        for raw in self.rfile:
            try:
                reply = self.server.owner.handle_request(json.loads(raw))
            except (ValueError, TypeError, KeyError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            try:
                self.wfile.write(json.dumps(reply).encode() + b"\n")
            except OSError:
                return


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: SiteServer


class SiteServer:
    """Serves a :class:`SiteModel` on a loopback TCP port (0 = pick a free one)."""

    def __init__(self, *, model: SiteModel, host: str = "127.0.0.1", port: int = 0) -> None:
        self._model = model
        self._server = _TCPServer((host, port), _Handler)
        self._server.owner = self
        self._thread: threading.Thread | None = None
        self._events: deque[tuple[int, float, int, float]] = deque(maxlen=2000)
        self._faults: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._seq = 0
        self._ev_lock = threading.Lock()
        model.add_pin_listener(self._on_pin)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def add_fault_handler(self, device: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Let ``{"op": "fault", "device": device, ...}`` requests reach ``handler(settings)``."""
        self._faults[device] = handler

    def _on_pin(self, pin: int, level: float) -> None:
        with self._ev_lock:
            self._seq += 1
            self._events.append((self._seq, time.time(), pin, level))

    def handle_request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one decoded request."""
        op = req.get("op")
        if op == "set_pin":
            self._model.set_pin(int(req["pin"]), float(req["level"]))
            return {"ok": True}
        if op == "get_pins":
            return {"ok": True, "pins": {str(k): v for k, v in self._model.pin_levels().items()}}
        if op == "snapshot":
            return {"ok": True, **snapshot_to_dict(self._model.snapshot())}
        if op == "pin_events":
            since = int(req.get("since", 0))
            with self._ev_lock:
                events = [list(e) for e in self._events if e[0] > since]
            return {"ok": True, "events": events}
        if op == "fault":
            device = str(req.get("device"))
            handler = self._faults.get(device)
            if handler is None:
                return {"ok": False, "error": f"no fault injection for device {device!r}; "
                                             f"known: {sorted(self._faults)}"}
            handler({k: v for k, v in req.items() if k not in ("op", "device")})
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="site-server",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)


class SiteClient:
    """A blocking client of :class:`SiteServer` (one connection, reconnects on failure)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int, timeout_s: float = 2.0) -> None:
        self._addr = (host, port)
        self._timeout = timeout_s
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        self._sock = socket.create_connection(self._addr, timeout=self._timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rwb")

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return the reply; raises OSError if the site is unreachable."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._sock is None:
                        self._connect()
                    self._file.write(json.dumps(req).encode() + b"\n")
                    self._file.flush()
                    line = self._file.readline()
                    if not line:
                        raise ConnectionError("site server closed the connection")
                    return json.loads(line)
                except OSError:
                    self.close()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._file = None
