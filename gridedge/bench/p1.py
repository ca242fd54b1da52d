"""``scripts/bench p1``: how many P1 telegrams a second our driver path parses, next to bare
dsmr-parser on the same telegrams in the same run, and how long a telegram takes from its last
byte on the serial line to the bus.

Throughput: the real telegrams in ``shared/data/p1`` (synthesised Fluvius telegrams if that folder
is missing) plus synthesised ones, over and over for ``seconds`` each way:

* our driver path, what the P1 interface does per telegram: bytes -> reassembler -> CRC check ->
  dsmr-parser parse -> normalize -> ``as_points()`` and the reader's diagnostics;
* bare dsmr-parser: ``TelegramParser(spec).parse(text)`` on the same texts (one parser per
  specification, built once; the CRC is checked where the specification asks for it).

Latency: a temporary real site (free ports) with the demo P1 simulator (one telegram a second,
paced to 115200 baud), counted after a few seconds of warm-up. A bus client subscribes to ``devices/site/main/p1/multi``, which the P1
interface publishes as soon as a telegram is read; each message carries ``ReceivedAt``, the wall
time the reader got the telegram's last byte, so latency = bus receive time - ``ReceivedAt``
(one machine, one clock). Polls republish the latest telegram with the same ``ReceivedAt``; only
its first arrival counts. The bus itself is measured in the same run as the baseline: our client
publishing the same message (values and metadata, ~3 kB) to its own subscription. Figures are
printed, never asserted.
"""

from __future__ import annotations

import copy
import json
import os
import pwd
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dsmr_parser.parsers import TelegramParser

from gridedge.bench.stats import summary_ms
from gridedge.protocols.dsmr import (
    SPECIFICATIONS,
    FluviusValues,
    P1Reader,
    build_fluvius_telegram,
    select_specification,
)
from gridedge.protocols.dsmr.framing import WIRE_ENCODING

__all__ = [
    "DATA_DIR",
    "TARGET_P99_MS",
    "TARGET_TELEGRAMS_PER_S",
    "Throughput",
    "bare_parser_throughput",
    "driver_path_throughput",
    "measure_latency",
    "run",
    "sample_telegrams",
]

#: real telegrams captured from meters, next to the checkout
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "p1"
TARGET_TELEGRAMS_PER_S = 1000.0
TARGET_P99_MS = 20.0
DEVICE = "site/main/p1"
MULTI_TOPIC = f"devices/{DEVICE}/multi"


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _synthesised(count: int) -> list[bytes]:
    start = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    return [
        build_fluvius_telegram(
            FluviusValues(
                meter_time=start + timedelta(seconds=i),
                energy_import_t1_kwh=1234.5 + i * 0.001,
                energy_export_t1_kwh=321.0,
                power_l1_w=1500.0 + 37 * i,
                power_l2_w=-800.0 + 11 * i,
                power_l3_w=250.0,
                avg_demand_kw=2.0 + i / 100,
                month_peak_kw=4.2,
                month_peak_time=start - timedelta(days=3),
                gas_m3=1000.0 + i / 10,
                gas_time=start,
            )
        )
        for i in range(count)
    ]


def sample_telegrams(*, data_dir: Path = DATA_DIR, synthesised: int = 8) -> tuple[list[bytes], int]:
    """The bench's telegrams and how many of them are real captures (the ``*.txt`` of ``data_dir``).

    Synthesised Fluvius telegrams are always added (``synthesised`` of them; at least 8 when there
    are no real ones), so a checkout without the shared data still benchmarks.
    """
    real = [path.read_bytes() for path in sorted(data_dir.glob("*.txt"))] if data_dir.is_dir() else []
    return real + _synthesised(synthesised if real else max(synthesised, 8)), len(real)


@dataclass(frozen=True)
class Throughput:
    """Telegrams processed by one path in ``seconds``."""

    name: str
    telegrams: int
    seconds: float

    def __post_init__(self) -> None:
        if self.telegrams < 0 or self.seconds <= 0:
            raise ValueError("telegrams must be >= 0 and seconds > 0")

    @property
    def per_s(self) -> float:
        """Telegrams per second."""
        return self.telegrams / self.seconds


def _timed(name: str, seconds: float, one_round: Callable[[], int], clock: Callable[[], float]) -> Throughput:
    one_round()  # warm up: imports, parser construction, regex compilation
    count = 0
    start = clock()
    while True:
        count += one_round()
        elapsed = clock() - start
        if elapsed >= seconds:
            return Throughput(name=name, telegrams=count, seconds=elapsed)


def driver_path_throughput(
    telegrams: Sequence[bytes], *, seconds: float, clock: Callable[[], float] = time.perf_counter
) -> Throughput:
    """Run ``telegrams`` through the P1 interface's per-telegram path for ``seconds``.

    Bytes -> :class:`P1Reader` ``feed`` (reassembly, CRC, dsmr-parser, normalize) -> ``as_points``
    and the reader's diagnostics, as a push publish builds them. Raises ``ValueError`` if a
    telegram is refused: a bench on telegrams that fail would measure the error path.
    """
    reader = P1Reader(port="bench")

    def one_round() -> int:
        done = 0
        for data in telegrams:
            for received in reader.feed(data):
                received.reading.as_points()
                reader.diagnostics()
                done += 1
        return done

    if one_round() != len(telegrams):
        raise ValueError(f"the driver path refused telegrams: {reader.stats()}")
    return _timed("our driver path", seconds, one_round, clock)


def bare_parser_throughput(
    telegrams: Sequence[bytes], *, seconds: float, clock: Callable[[], float] = time.perf_counter
) -> Throughput:
    """Parse the same telegrams with bare dsmr-parser for ``seconds``: the baseline.

    One ``TelegramParser`` per specification, built once on a copy of dsmr-parser's own
    specification (plain text only: the Sagemcom one otherwise expects the encrypted frame).
    """
    parsers: dict[str, TelegramParser] = {}
    work: list[tuple[TelegramParser, str]] = []
    for data in telegrams:
        text = data.decode(WIRE_ENCODING)
        name = select_specification(text)
        if name not in parsers:
            spec = copy.deepcopy(SPECIFICATIONS[name])
            spec["general_global_cipher"] = False
            parsers[name] = TelegramParser(spec)
        work.append((parsers[name], text))

    def one_round() -> int:
        for parser, text in work:
            parser.parse(text)
        return len(work)

    return _timed("bare dsmr-parser", seconds, one_round, clock)


def _bus_baseline(bus: Any, count: int, sample: list[Any]) -> list[float]:
    """Our client publishing ``sample`` (a P1 multi message: values and metadata) to its own
    subscription: the bus's pub -> sub latency for the same payload, without the driver."""
    import gevent

    topic = f"gridedge/bench/p1/echo/{os.getpid()}"
    got: list[float] = []
    bus.subscribe(topic, lambda _topic, message: got.append(time.time() - float(message[0]["BenchSentAt"])))
    values, meta = (sample[0], sample[1]) if len(sample) > 1 else (sample[0], {})
    for _ in range(count):
        before = len(got)
        bus.publish(topic, [{**values, "BenchSentAt": time.time()}, meta])
        deadline = time.monotonic() + 5
        while len(got) == before and time.monotonic() < deadline:
            gevent.sleep(0.001)
    return got


def _why_no_push(bus: Any, site: Any) -> str:
    """What the platform says about the P1 device, for an error that must name a cause."""
    try:
        polled = (
            f"a poll of ReceivedAt answers {bus.call('platform.driver', 'get_point', DEVICE, 'ReceivedAt')!r}"
        )
    except Exception as exc:  # noqa: BLE001 - any failure here is itself the diagnosis
        polled = f"a poll of ReceivedAt fails: {exc}"
    p1_lines = [
        line
        for line in site.platform.log_path.read_text(errors="replace").splitlines()
        if "p1" in line.lower() and (" WARNING" in line or " ERROR" in line)
    ]
    return f"{polled}\nplatform log, P1 warnings and errors:\n" + "\n".join(p1_lines[-15:] or ["(none)"])


def measure_latency(
    *,
    samples: int,
    baseline_samples: int = 50,
    log: Callable[[str], None] = _log,
    first_timeout_s: float = 120.0,
    warmup_s: float = 5.0,
) -> dict[str, list[float]]:
    """Bring up a temporary site, collect ``samples`` telegram-to-bus latencies and the bus
    baseline (seconds), tear the site down.

    Telegrams in the first ``warmup_s`` after the first push are not counted: the agents are
    still starting then (the VEN registers, the historian creates its tables)."""
    import gevent

    from gridedge.platform.client import BusClient, BusError
    from gridedge.platform.site_runtime import Ports, runtime_from_env

    site_dir = Path(tempfile.mkdtemp(prefix="ge-bench-p1-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(site_dir, pwd.getpwnam(os.environ.get("GRIDEDGE_USER", "gridedge")).pw_uid, -1)
    site = runtime_from_env(site_dir=site_dir)
    site.ports = Ports.free()
    site.vtn_url = None
    first_seen: dict[float, float] = {}
    latencies: list[float] = []
    sample: list[Any] = [{}]

    def on_multi(_topic: str, message: Any) -> None:
        now = time.time()
        values = message[0] if isinstance(message, list) and message else {}
        stamp = values.get("ReceivedAt") if isinstance(values, dict) else None
        if isinstance(stamp, int | float) and stamp not in first_seen:
            first_seen[stamp] = now
            latencies.append(now - stamp)
            sample[:] = message

    try:
        log(f"bringing up a temporary site in {site_dir}")
        site.up(log=log)
        with BusClient(home=site.home) as bus:
            bus.subscribe(MULTI_TOPIC, on_multi)
            try:
                bus.wait_for(
                    lambda: latencies,
                    timeout_s=first_timeout_s,
                    interval_s=0.05,
                    what=f"a first push on {MULTI_TOPIC} with ReceivedAt",
                )
            except BusError as exc:
                raise BusError(f"{exc}\n{_why_no_push(bus, site)}") from exc
            gevent.sleep(warmup_s)
            latencies.clear()
            log(f"collecting {samples} telegrams (the demo meter sends one a second)")
            deadline = time.monotonic() + 10 + 3 * samples
            reported = 0
            while len(latencies) < samples and time.monotonic() < deadline:
                gevent.sleep(0.05)
                if len(latencies) // 10 > reported:
                    reported = len(latencies) // 10
                    log(f"  {len(latencies)}/{samples} telegrams")
            got = latencies[:samples]
            log(f"bus baseline: {baseline_samples} publishes of the same message to our own subscription")
            base = _bus_baseline(bus, baseline_samples, sample)
        return {"telegram_to_bus": got, "bus_baseline": base}
    finally:
        log("tearing the temporary site down")
        site.down(log=log)
        shutil.rmtree(site_dir, ignore_errors=True)


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def run(*, seconds: float, latency_samples: int, as_json: bool) -> int:
    """Measure and print; ``latency_samples`` 0 skips the site. Returns 0 (figures are printed,
    not asserted)."""
    if seconds <= 0 or latency_samples < 0:
        raise ValueError("seconds must be > 0 and latency_samples >= 0")
    telegrams, real = sample_telegrams()
    _log(
        f"throughput: {len(telegrams)} telegrams ({real} real, {len(telegrams) - real} synthesised), "
        f"{seconds:g} s each way"
    )
    ours = driver_path_throughput(telegrams, seconds=seconds)
    bare = bare_parser_throughput(telegrams, seconds=seconds)
    ratio = ours.per_s / bare.per_s if bare.per_s > 0 else float("inf")
    print("\nP1 throughput: telegrams parsed per second (one core)")
    print(f"{'path':<30}{'telegrams':>12}{'seconds':>10}{'per s':>12}")
    for t in (bare, ours):
        print(f"{t.name:<30}{t.telegrams:>12}{t.seconds:>10.2f}{t.per_s:>12.0f}")
    print(f"ratio ours/bare dsmr-parser: {ratio:.2f}x")
    figures: dict[str, Any] = {
        "telegrams": {"total": len(telegrams), "real": real},
        "throughput": {
            "ours_per_s": ours.per_s,
            "bare_per_s": bare.per_s,
            "ratio": ratio,
            "ours_telegrams": ours.telegrams,
            "bare_telegrams": bare.telegrams,
        },
    }
    lat = base = None
    if latency_samples:
        measured = measure_latency(samples=latency_samples)
        if measured["telegram_to_bus"]:
            lat = summary_ms(measured["telegram_to_bus"])
        if measured["bus_baseline"]:
            base = summary_ms(measured["bus_baseline"])
        print("\nP1 latency: last byte read -> devices/site/main/p1/multi at a bus subscriber")
        print(f"{'path':<34}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'max ms':>10}")
        for name, s in (("bus pub -> sub, same message", base), ("telegram -> bus (push)", lat)):
            if s is None:
                print(f"{name:<34}{0:>5}  (no samples)")
                continue
            print(
                f"{name:<34}{int(s['n']):>5}{s['p50_ms']:>10.1f}{s['p99_ms']:>10.1f}"
                f"{s['mean_ms']:>10.1f}{s['max_ms']:>10.1f}"
            )
        if lat is not None and base is not None and base["p50_ms"] > 0:
            print(
                f"ratio push/bus baseline p50: {lat['p50_ms'] / base['p50_ms']:.2f}x, "
                f"p99: {lat['p99_ms'] / base['p99_ms']:.2f}x"
            )
        if lat is not None and len(measured["telegram_to_bus"]) < latency_samples:
            print(f"only {len(measured['telegram_to_bus'])} of {latency_samples} telegrams arrived in time")
        figures["latency"] = {"telegram_to_bus": lat, "bus_baseline": base}
    throughput_ok = ours.per_s >= TARGET_TELEGRAMS_PER_S
    line = (
        f"target >= {TARGET_TELEGRAMS_PER_S:.0f} telegrams/s: {_verdict(throughput_ok)} ({ours.per_s:.0f}/s)"
    )
    if latency_samples:
        latency_ok = lat is not None and lat["p99_ms"] < TARGET_P99_MS
        shown = f"{lat['p99_ms']:.1f} ms" if lat is not None else "no samples"
        line += f"; target p99 < {TARGET_P99_MS:.0f} ms: {_verdict(latency_ok)} ({shown})"
    else:
        line += "; latency not measured (--latency-samples 0)"
    print(line)
    figures["targets"] = {"telegrams_per_s": TARGET_TELEGRAMS_PER_S, "p99_ms": TARGET_P99_MS}
    if as_json:
        print(json.dumps(figures, indent=1))
    return 0
