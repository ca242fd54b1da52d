"""Modbus meter simulators fed by the site model: a Carlo Gavazzi EM24-DIN and a SunSpec meter.

Each simulator is a pymodbus TCP server on loopback, running its own asyncio loop in a
background thread (``start()`` / ``stop()``; ``port=0`` binds a free port, reported by
:attr:`ModbusMeterSimulator.port`). Register values come from a callable returning a
:class:`~gridedge.sim.site.SiteSnapshot` and are refreshed at most once per ``refresh_s``
(default 1 s, injected clock): the refresh happens when a request arrives and the image is
older than that, which a client cannot tell apart from a meter updating every second.

Faithful to the devices on the wire:

- EM24: the register map of :mod:`gridedge.protocols.modbus_meters.cg_em24`, INT32 LSW first;
  functions 03 and 04 read the same table; unmapped registers answer exception 02 (illegal
  data address); the identification code is only served to a single-word read of 000Bh
  (otherwise 000Bh is the high word of "V L3-L1"); writes answer exception 02.
- SunSpec: "SunS" at 40000, common model 1, one meter model (201..204, default 203), end
  model; only function 03 (anything else: exception 01); registers outside the map answer
  exception 02; some points are deliberately "not implemented" (markers on the wire).

Both answer on the wire as a meter does: every request, in the order it arrived, also when
requests arrive back to back (pymodbus's own request handler answers one request per received
chunk and drops what is still buffered when it sends; a meter does not lose requests); a
request whose fields are out of range gets exception 03 (illegal data value), not a malformed
reply; a request for another unit id gets exception 0Bh (gateway target device failed to
respond), as from a meter behind a Modbus TCP gateway. :meth:`ModbusMeterSimulator.stall`
makes the meter busy for a while: requests received meanwhile are answered late.

What the site model does not know is simplified and said so: demand values equal the present
power (no 15-minute integration), per-phase energy and reactive energy read 0 on the EM24
and are "not implemented" on the SunSpec meter.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from typing_extensions import Self

from gridedge.errors import ConfigError
from gridedge.protocols.modbus_meters.cg_em24 import (
    EM24_APPLICATION_ADDRESS,
    EM24_ID_ADDRESS,
    EM24_MODEL_CODES,
    EM24_POINTS,
    EM24_SERIAL_ADDRESS,
    EM24_SYSTEM_ADDRESS,
    EM24_VERSION_ADDRESS,
)
from gridedge.protocols.modbus_meters.registers import MAX_READ_REGISTERS
from gridedge.protocols.sunspec.codec import not_implemented_words, unscale
from gridedge.protocols.sunspec.image import DEFAULT_BASE_ADDRESS, build_image, encode_model
from gridedge.protocols.sunspec.models import COMMON_MODEL_ID, METER_MODEL_IDS, model_def
from gridedge.sim.site import PhaseSample, SiteSnapshot

__all__ = [
    "DEFAULT_UNIMPLEMENTED",
    "Em24Simulator",
    "ModbusMeterSimulator",
    "SnapshotSource",
    "SunSpecMeterSimulator",
    "em24_image",
    "sunspec_meter_image",
    "sunspec_meter_values",
]

SnapshotSource = Callable[[], SiteSnapshot]

#: SunSpec points the simulated meter deliberately does not implement: the VA scale factor
#: (so VA, VAphA.. read "no value" although their registers hold numbers) and per-phase PF.
DEFAULT_UNIMPLEMENTED: frozenset[str] = frozenset({"VA_SF", "PFphA", "PFphB", "PFphC"})

_EM24_SERIAL = "GE24SIM000001"


def _line_to_line_v(va: float, vb: float) -> float:
    """Magnitude of the difference of two phase voltages 120° apart."""
    return math.sqrt(va * va + vb * vb + va * vb)


def _signed_pf(sample: PhaseSample) -> float:
    """|P|/S, negative for a leading (capacitive) load, as Carlo Gavazzi and SunSpec sign it."""
    pf = sample.power_factor
    return -pf if sample.reactive_var < 0 else pf


def _sum_pf(phases: Sequence[PhaseSample]) -> float:
    p = sum(s.power_w for s in phases)
    q = sum(s.reactive_var for s in phases)
    s_va = math.hypot(p, q)
    pf = abs(p) / s_va if s_va > 0 else 1.0
    return -pf if q < 0 else pf


def em24_image(snapshot: SiteSnapshot) -> dict[int, int]:
    """Address -> register word of an EM24-DIN measuring ``snapshot`` (000Bh holds V L3-L1's high word)."""
    phases = list(snapshot.phases) + [PhaseSample(0.0, 0.0, 0.0, 0.0)] * (3 - len(snapshot.phases))
    v = [p.voltage_v for p in phases]
    live = [p for p in snapshot.phases]
    vll = (
        [_line_to_line_v(v[0], v[1]), _line_to_line_v(v[1], v[2]), _line_to_line_v(v[2], v[0])]
        if len(live) == 3 else [0.0, 0.0, 0.0]
    )
    power_w = snapshot.power_w
    reactive_var = snapshot.reactive_var
    apparent_va = sum(p.apparent_va for p in live)
    values: dict[str, float] = {
        "voltage_ln_v": sum(p.voltage_v for p in live) / len(live),
        "voltage_ll_v": sum(vll) / 3,
        "power_w": power_w,
        "apparent_va": apparent_va,
        "reactive_var": reactive_var,
        "demand_w": power_w,
        "demand_va": apparent_va,
        "power_factor": _sum_pf(live),
        "phase_sequence": 0,
        "frequency_hz": snapshot.frequency_hz,
        "demand_max_w": power_w,
        "demand_max_va": apparent_va,
        "demand_max_a": max(p.current_a for p in live),
        "energy_import_kwh": sum(snapshot.import_kwh),
        "energy_import_partial_kwh": sum(snapshot.import_kwh),
        "energy_import_t1_kwh": snapshot.import_kwh[0],
        "energy_import_t2_kwh": snapshot.import_kwh[1],
        "energy_export_kwh": sum(snapshot.export_kwh),
    }
    for i, (n, p) in enumerate(zip(("l1", "l2", "l3"), phases)):
        values[f"voltage_{n}_v"] = p.voltage_v
        values[f"current_{n}_a"] = p.current_a
        values[f"power_{n}_w"] = p.power_w
        values[f"apparent_{n}_va"] = p.apparent_va
        values[f"reactive_{n}_var"] = p.reactive_var
        values[f"power_factor_{n}"] = _signed_pf(p) if i < len(live) else 0.0
    values["voltage_l1_l2_v"], values["voltage_l2_l3_v"], values["voltage_l3_l1_v"] = vll
    image: dict[int, int] = {}
    for name, point in EM24_POINTS.items():
        if name == "model_id":
            continue
        for i, word in enumerate(point.encode(values.get(name, 0.0))):
            image[point.address + i] = word
    image[EM24_VERSION_ADDRESS] = 0
    image[EM24_VERSION_ADDRESS + 1] = 0
    image[EM24_APPLICATION_ADDRESS] = 7  # application "H"
    image[EM24_SYSTEM_ADDRESS] = 0 if len(live) == 3 else 3  # "3Pn" or "1P"
    serial = _EM24_SERIAL.encode("ascii").ljust(14, b"\0")
    for i in range(7):
        image[EM24_SERIAL_ADDRESS + i] = int.from_bytes(serial[2 * i : 2 * i + 2], "big")
    return image


#: phases each SunSpec meter model measures, and whether it reports line-to-neutral voltages
_SUNSPEC_PHASES: Mapping[int, tuple[int, bool]] = {201: (1, True), 202: (2, True), 203: (3, True), 204: (3, False)}
_DEFAULT_SF: Mapping[str, int] = {
    "A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 0, "VA_SF": 0, "VAR_SF": 0, "PF_SF": -1, "TotWh_SF": 0,
}
_SF_GROUPS: Mapping[str, tuple[str, ...]] = {
    "A_SF": ("A", "AphA", "AphB", "AphC"),
    "V_SF": ("PhV", "PhVphA", "PhVphB", "PhVphC", "PPV", "PhVphAB", "PhVphBC", "PhVphCA",
             "PPVphAB", "PPVphBC", "PPVphCA"),
    "Hz_SF": ("Hz",),
    "W_SF": ("W", "WphA", "WphB", "WphC"),
    "VA_SF": ("VA", "VAphA", "VAphB", "VAphC"),
    "VAR_SF": ("VAR", "VARphA", "VARphB", "VARphC"),
    "PF_SF": ("PF", "PFphA", "PFphB", "PFphC"),
    "TotWh_SF": ("TotWhImp", "TotWhExp"),
}


def sunspec_meter_values(snapshot: SiteSnapshot, *, model_id: int = 203) -> dict[str, float]:
    """Engineering values of SunSpec meter model ``model_id`` measuring ``snapshot``.

    Site phase 1, 2, 3 are meter phases A, B, C; phases the model does not measure (or the
    site does not have) are left out, i.e. "not implemented". Totals are the site's.
    """
    if model_id not in METER_MODEL_IDS:
        raise ConfigError(f"SunSpec meter model must be one of {METER_MODEL_IDS}, got {model_id}")
    n_phases, has_ln = _SUNSPEC_PHASES[model_id]
    phases = list(snapshot.phases[:n_phases])
    letters = ("A", "B", "C")[: len(phases)]
    vals: dict[str, float] = {
        "A": sum(p.current_a for p in phases),
        "Hz": snapshot.frequency_hz,
        "W": snapshot.power_w,
        "VA": sum(p.apparent_va for p in snapshot.phases),
        "VAR": snapshot.reactive_var,
        "PF": _sum_pf(snapshot.phases) * 100.0,
        "TotWhImp": sum(snapshot.import_kwh) * 1000.0,
        "TotWhExp": sum(snapshot.export_kwh) * 1000.0,
    }
    for letter, p in zip(letters, phases):
        vals[f"Aph{letter}"] = p.current_a
        vals[f"Wph{letter}"] = p.power_w
        vals[f"VAph{letter}"] = p.apparent_va
        vals[f"VARph{letter}"] = p.reactive_var
        vals[f"PFph{letter}"] = _signed_pf(p) * 100.0
        if has_ln:
            vals[f"PhVph{letter}"] = p.voltage_v
    if has_ln:
        vals["PhV"] = sum(p.voltage_v for p in phases) / len(phases)
    if len(phases) >= 2:
        ll_prefix = "PPVph" if model_id == 201 else "PhVph"
        pairs = [("AB", 0, 1)] + ([("BC", 1, 2), ("CA", 2, 0)] if len(phases) == 3 else [])
        lls = []
        for name, i, j in pairs:
            # split-phase legs are 180° apart: their voltages add
            vll = (phases[i].voltage_v + phases[j].voltage_v if model_id == 202
                   else _line_to_line_v(phases[i].voltage_v, phases[j].voltage_v))
            vals[f"{ll_prefix}{name}"] = vll
            lls.append(vll)
        vals["PPV"] = sum(lls) / len(lls)
    return vals


def _fit_sf(values: Sequence[float], preferred: int, limit: int) -> int:
    """Smallest scale factor >= ``preferred`` whose raw values all fit within ±``limit``."""
    sf = preferred
    while sf < 10 and any(abs(unscale(v, sf)) > limit for v in values):
        sf += 1
    return sf


def sunspec_meter_image(
    snapshot: SiteSnapshot,
    *,
    model_id: int = 203,
    unit_id: int = 1,
    unimplemented: frozenset[str] = DEFAULT_UNIMPLEMENTED,
) -> list[int]:
    """Registers from the base address: "SunS", model 1, meter model ``model_id``, end model.

    Scale factors are fixed per group but raised when a value would not fit its int16, as
    meters with dynamic scale factors do. Points named in ``unimplemented`` carry the "not
    implemented" marker whatever their value.
    """
    values = sunspec_meter_values(snapshot, model_id=model_id)
    meter = model_def(model_id)
    values = {k: v for k, v in values.items() if k in meter.points}
    sfs: dict[str, int | None] = {}
    for sf_name, preferred in _DEFAULT_SF.items():
        members = [values[n] for n in _SF_GROUPS[sf_name] if n in values]
        limit = 0x7FFFFFFF if sf_name == "TotWh_SF" else 0x7FFF
        sfs[sf_name] = _fit_sf(members, preferred, limit)
    common = encode_model(
        COMMON_MODEL_ID,
        {"Mn": "GridEdge", "Md": f"SIM-{model_id}", "Vr": "1.0", "SN": f"GE-SUNSPEC-{unit_id:03d}",
         "DA": unit_id},
    )
    meter_words = encode_model(model_id, values, scale_factors=sfs)
    for name in unimplemented:
        point = meter.point(name)
        meter_words[point.offset : point.offset + point.size] = not_implemented_words(point)
    return build_image([common, meter_words])


#: Modbus TCP: MBAP header (transaction, protocol, length, unit) and the largest ADU
_MBAP_BYTES = 7
_MAX_ADU_BYTES = 260


class _InOrderRequestHandler(ServerRequestHandler):
    """One client connection, answered as a meter answers: every request, in arrival order.

    Keeps its own receive buffer (pymodbus clears the transport's on every send) and a queue
    of decoded requests, answered one after the other by a single task, so a request that
    arrives while another is being answered waits for its turn instead of being lost.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rx = b""
        #: (PDU, True = a request to answer / False = a ready exception response, address)
        self._queue: deque[tuple[ModbusPDU, bool, tuple | None]] = deque()
        self._answering: asyncio.Task[None] | None = None

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        self._rx += data
        while len(self._rx) >= _MBAP_BYTES:
            frame_bytes = 6 + int.from_bytes(self._rx[4:6], "big")
            if self._rx[2:4] != b"\0\0" or not _MBAP_BYTES < frame_bytes <= _MAX_ADU_BYTES:
                self._rx = b""  # not Modbus TCP: a meter ignores it
                break
            if len(self._rx) < frame_bytes:
                break
            frame, self._rx = self._rx[:frame_bytes], self._rx[frame_bytes:]
            try:
                _, pdu = self.framer.handleFrame(frame, 0, 0)
            except ModbusIOException:
                self._queue.append((self._refusal(frame), False, addr))
                continue
            if pdu is None:
                continue
            if pdu.dev_id not in self.server.context.device_ids():
                # a Modbus TCP device behind a gateway: the unit does not exist, exception 0Bh
                self._queue.append((self._refusal(frame, ExcCodes.GATEWAY_NO_RESPONSE), False, addr))
                continue
            self._queue.append((pdu, True, addr))
        if self._queue and self._answering is None:
            self._answering = self.loop.create_task(self._answer_queue())
        return len(data)

    def _refusal(self, frame: bytes, code: ExcCodes | None = None) -> ExceptionResponse:
        """The exception answering ``frame``: ``code``, or for a request that cannot be decoded
        03 (fields out of range) for a function the device knows and 01 otherwise."""
        function_code = frame[_MBAP_BYTES]
        if code is None:
            known = function_code in self.framer.decoder.list_function_codes()
            code = ExcCodes.ILLEGAL_VALUE if known else ExcCodes.ILLEGAL_FUNCTION
        response = ExceptionResponse(function_code, exception_code=code)
        response.transaction_id = int.from_bytes(frame[0:2], "big")
        response.dev_id = frame[6]
        return response

    async def _answer_queue(self) -> None:
        try:
            while self._queue:
                busy_s = self.server.busy_until() - time.monotonic()
                if busy_s > 0:
                    await asyncio.sleep(busy_s)
                    continue  # the connection may have gone meanwhile
                pdu, is_request, addr = self._queue.popleft()
                if is_request:
                    self.last_pdu, self.last_addr = pdu, addr
                    await self.handle_request()
                else:
                    self.server_send(pdu, addr)
        finally:
            self._answering = None

    def callback_disconnected(self, exc: Exception | None) -> None:
        self._queue.clear()
        super().callback_disconnected(exc)


class _MeterTcpServer(ModbusTcpServer):
    """pymodbus's TCP server with :class:`_InOrderRequestHandler` for each connection;
    ``busy_until()`` (``time.monotonic()``) holds every answer back until then."""

    def __init__(self, *args: Any, busy_until: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy_until = busy_until

    def callback_new_connection(self) -> _InOrderRequestHandler:
        return _InOrderRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusMeterSimulator:
    """A pymodbus TCP server in its own thread serving a register image refreshed from the site.

    Subclasses say which registers exist (:meth:`_build_image`) and may bend requests
    (:meth:`_answer`), as their device does.
    """

    #: function codes the device answers; others get exception 01
    FUNCTION_CODES: frozenset[int] = frozenset({3, 4})

    def __init__(
        self,
        *,
        snapshot_source: SnapshotSource,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_id: int = 1,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= port < 65536:
            raise ConfigError(f"port must be within 0..65535, got {port}")
        if not 1 <= unit_id <= 247:
            raise ConfigError(f"unit id must be within 1..247, got {unit_id}")
        if refresh_s < 0:
            raise ConfigError(f"refresh_s must be >= 0, got {refresh_s}")
        self._source = snapshot_source
        self._host = host
        self._requested_port = port
        self._unit_id = unit_id
        self._refresh_s = refresh_s
        self._clock = clock
        self._image: dict[int, int] = self._build_image(snapshot_source())
        self._refreshed_at = clock()
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stalled_until = 0.0  # time.monotonic(): wall time on the wire, not the site clock
        self.requests = 0  #: requests answered (for tests and the demo's status page)

    # --- device behaviour -------------------------------------------------------------------

    def _build_image(self, snapshot: SiteSnapshot) -> dict[int, int]:
        raise NotImplementedError

    def _sim_device(self) -> SimDevice:
        runs: list[list[int]] = []
        for addr in sorted(self._image):
            if runs and addr == runs[-1][-1] + 1:
                runs[-1].append(addr)
            else:
                runs.append([addr])
        blocks = [
            SimData(address=run[0], values=[self._image[a] for a in run], datatype=DataType.REGISTERS,
                    readonly=True)
            for run in runs
        ]
        return SimDevice(id=self._unit_id, simdata=blocks, action=self._action)

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        if function_code not in self.FUNCTION_CODES:
            return ExcCodes.ILLEGAL_FUNCTION
        if count > MAX_READ_REGISTERS:
            return ExcCodes.ILLEGAL_VALUE
        now = self._clock()
        if now - self._refreshed_at >= self._refresh_s:
            self._image = self._build_image(self._source())
            self._refreshed_at = now
        for addr, word in self._image.items():
            registers[addr - start_address] = word
        self._patch(start_address, address, count, registers)
        self.requests += 1
        return None

    def _patch(self, start_address: int, address: int, count: int, registers: list[int]) -> None:
        """Hook for request-dependent register contents (see :class:`Em24Simulator`)."""

    def stall(self, duration_s: float) -> None:
        """Answer nothing for ``duration_s`` from now, as a meter busy with something else:
        requests received meanwhile are answered when the stall ends (late, for their client)."""
        if duration_s < 0:
            raise ConfigError(f"stall duration must be >= 0 s, got {duration_s}")
        self._stalled_until = time.monotonic() + duration_s

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def unit_id(self) -> int:
        """The Modbus unit id the meter answers to."""
        return self._unit_id

    def start(self, timeout_s: float = 5.0) -> int:
        """Start serving in a background thread; returns the bound port."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"{type(self).__name__} did not start within {timeout_s} s")
        if self._error is not None:
            self._thread.join(timeout_s)
            self._thread = None
            raise RuntimeError(f"{type(self).__name__} failed to start: {self._error}") from self._error
        return self.port

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout_s)
        self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        server = _MeterTcpServer(self._sim_device(), address=(self._host, self._requested_port),
                                 busy_until=lambda: self._stalled_until)
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else self._requested_port
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await server.shutdown()


class Em24Simulator(ModbusMeterSimulator):
    """A Carlo Gavazzi EM24-DIN (identification code 72 = "EM24-DIN AV5" by default)."""

    def __init__(self, *, model_code: int = 72, **kwargs: Any) -> None:
        if model_code not in EM24_MODEL_CODES:
            raise ConfigError(f"unknown EM24 model code {model_code}; known: {sorted(EM24_MODEL_CODES)}")
        self._model_code = model_code
        super().__init__(**kwargs)

    def _build_image(self, snapshot: SiteSnapshot) -> dict[int, int]:
        return em24_image(snapshot)

    def _patch(self, start_address: int, address: int, count: int, registers: list[int]) -> None:
        # 000Bh is the identification code to a single-word read, V L3-L1's high word otherwise
        if address == EM24_ID_ADDRESS and count == 1:
            registers[EM24_ID_ADDRESS - start_address] = self._model_code


class SunSpecMeterSimulator(ModbusMeterSimulator):
    """A SunSpec meter: model 1 + one of 201..204 (203 by default) at base address 40000."""

    FUNCTION_CODES = frozenset({3})

    def __init__(
        self,
        *,
        model_id: int = 203,
        base_address: int = DEFAULT_BASE_ADDRESS,
        unimplemented: frozenset[str] = DEFAULT_UNIMPLEMENTED,
        **kwargs: Any,
    ) -> None:
        if model_id not in METER_MODEL_IDS:
            raise ConfigError(f"SunSpec meter model must be one of {METER_MODEL_IDS}, got {model_id}")
        for name in unimplemented:
            model_def(model_id).point(name)
        self._model_id = model_id
        self._base_address = base_address
        self._unimplemented = unimplemented
        super().__init__(**kwargs)

    @property
    def model_id(self) -> int:
        """The meter model served."""
        return self._model_id

    def _build_image(self, snapshot: SiteSnapshot) -> dict[int, int]:
        words = sunspec_meter_image(
            snapshot, model_id=self._model_id, unit_id=self._unit_id, unimplemented=self._unimplemented
        )
        return {self._base_address + i: w for i, w in enumerate(words)}
