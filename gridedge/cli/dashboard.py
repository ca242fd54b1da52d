"""``gridedge dashboard``: the terminal view to keep open next to the meter.

Shows the meter's date and time, the rates (active tariff highlighted), usage and cost (today,
past days, ISO week, month, year), month peaks and the billed capacity, the running quarter
against the month peak (red when a new peak is in the making) and the last telegram.

The view is a pure function, :func:`render` (``DashboardState`` -> rich renderable); the loop
(:func:`run_dashboard`) takes readings from a pluggable feed — an iterable of
``(values_dict, telegram_text_or_None)`` — books them in a :class:`MeterRecorder` and refreshes
every second. Feeds: ``--demo`` (a synthetic household, standalone) and ``--port PORT`` through a
reader callable (``port_reader(port) -> iterable``) that the P1 codec supplies.
"""

from __future__ import annotations

import argparse
import math
import queue
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gridedge.domain.capacity import MonthPeak, QuarterStatus
from gridedge.domain.tariffs import EXAMPLE_RATES, Rates, Tariff, belgian_tariff, load_rates, parse_rates
from gridedge.domain.usage import MeterReading, UsageSummary
from gridedge.errors import ConfigError, GridEdgeError
from gridedge.storage.recorder import MeterRecorder

__all__ = [
    "DashboardState",
    "DemoMeter",
    "FeedItem",
    "PortReader",
    "port_feed",
    "register",
    "render",
    "run",
    "run_dashboard",
    "state_from_recorder",
]

#: One item of a feed: normalized meter values and, when available, the raw telegram text.
FeedItem = tuple[Mapping[str, Any], str | None]
#: Opens a P1 port and yields meter values (dicts, or ``(dict, telegram_text)`` pairs).
PortReader = Callable[[str], Iterable[Mapping[str, Any] | tuple[Mapping[str, Any], str | None]]]


@dataclass(frozen=True)
class DashboardState:
    """Everything one frame shows; built by :func:`state_from_recorder`."""

    tz: tzinfo
    rates: Rates
    source: str = ""
    meter_time: datetime | None = None
    tariff: Tariff | None = None
    power_import_w: float | None = None
    power_export_w: float | None = None
    summary: UsageSummary | None = None
    quarter: QuarterStatus | None = None
    month_peaks: tuple[MonthPeak, ...] = ()
    capacity_kw: float | None = None
    last_telegram: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def state_from_recorder(
    recorder: MeterRecorder,
    *,
    now: datetime | None = None,
    source: str = "",
    last_telegram: str | None = None,
    notes: tuple[str, ...] = (),
) -> DashboardState:
    """Snapshot a recorder for :func:`render`; ``now`` (meter time) defaults to the last reading."""
    reading = recorder.last_reading
    now = now or recorder.now()
    return DashboardState(
        tz=recorder.tz,
        rates=recorder.rates,
        source=source,
        meter_time=now if reading is not None else None,
        tariff=reading.tariff if reading else None,
        power_import_w=reading.power_import_w if reading else None,
        power_export_w=reading.power_export_w if reading else None,
        summary=recorder.usage_summary(now) if reading is not None else None,
        quarter=recorder.quarter_status(now),
        month_peaks=tuple(recorder.month_peaks()),
        capacity_kw=recorder.capacity_kw(now) if recorder.month_peaks() else None,
        last_telegram=last_telegram,
        notes=notes,
    )


# -- rendering (pure) ------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _header(state: DashboardState) -> RenderableType:
    text = Text()
    text.append("GridEdge meter  ", style="bold")
    if state.meter_time is None:
        text.append("waiting for the first reading…", style="yellow")
    else:
        local = state.meter_time.astimezone(state.tz)
        text.append(local.strftime("%Y-%m-%d %H:%M:%S %Z"), style="bold cyan")
    if state.tariff is not None:
        text.append(f"   tariff {int(state.tariff)} ({state.tariff.label.lower()})", style="bold")
    if state.power_import_w is not None or state.power_export_w is not None:
        text.append(
            f"   import {_fmt((state.power_import_w or 0) / 1000, 3)} kW"
            f"  export {_fmt((state.power_export_w or 0) / 1000, 3)} kW"
        )
    if state.source:
        text.append(f"   source: {state.source}", style="dim")
    return text


def _rates_table(state: DashboardState) -> Table:
    rates = state.rates
    table = Table(title="Rates", title_justify="left", expand=False)
    table.add_column("")
    table.add_column("Day", justify="right")
    table.add_column("Night", justify="right")
    table.add_column("unit")

    def cells(day: float, night: float) -> list[Text]:
        out = []
        for tariff, price in ((Tariff.DAY, day), (Tariff.NIGHT, night)):
            active = state.tariff is tariff
            out.append(
                Text(f"{price:.4f}" + (" ◀" if active else ""), style="bold reverse green" if active else "")
            )
        return out

    imp, exp = rates.electricity.import_eur_per_kwh, rates.electricity.export_eur_per_kwh
    table.add_row("Electricity +", *cells(imp.day_eur, imp.night_eur), "EUR/kWh")
    table.add_row("Electricity −", *cells(exp.day_eur, exp.night_eur), "EUR/kWh")
    table.add_row(
        "Gas",
        f"{rates.gas.eur_per_m3:.4f}",
        "",
        f"EUR/m³ ({rates.gas.kwh_per_m3:g} kWh/m³: {rates.gas.eur_per_kwh:.4f} EUR/kWh)",
    )
    table.add_row("Water", f"{rates.water.eur_per_m3:.4f}", "", "EUR/m³")
    return table


def _usage_table(summary: UsageSummary | None) -> RenderableType:
    if summary is None:
        return Text("Usage: no reading yet", style="dim")
    table = Table(title="Usage and cost", title_justify="left")
    for name, justify in (
        ("period", "left"),
        ("import kWh (day/night)", "right"),
        ("export kWh", "right"),
        ("net kWh", "right"),
        ("electricity €", "right"),
        ("gas m³", "right"),
        ("gas €", "right"),
        ("water m³", "right"),
        ("water €", "right"),
        ("total €", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for period in summary.periods():
        u, c = period.usage, period.cost
        table.add_row(
            period.label,
            f"{u.import_kwh:.3f} ({u.import_kwh_t1:.2f}/{u.import_kwh_t2:.2f})",
            f"{u.export_kwh:.3f}",
            f"{u.net_kwh:.3f}",
            f"{c.electricity_eur:.2f}",
            f"{u.gas_m3:.3f}",
            f"{c.gas_eur:.2f}",
            f"{u.water_m3:.3f}",
            f"{c.water_eur:.2f}",
            Text(f"{c.total_eur:.2f}", style="bold"),
            end_section=period.label
            in ("today", summary.past_days[-1].label if summary.past_days else "today"),
        )
    return table


def _peaks_table(state: DashboardState) -> RenderableType:
    table = Table(title="Month peaks (quarter-hour)", title_justify="left")
    table.add_column("month")
    table.add_column("peak kW", justify="right")
    table.add_column("at")
    current = state.quarter.month if state.quarter else None
    for peak in sorted(state.month_peaks, key=lambda p: p.month, reverse=True)[:13]:
        at = peak.peak_at.astimezone(state.tz).strftime("%d %H:%M") if peak.peak_at else "(meter)"
        style = "bold" if peak.month == current else ""
        table.add_row(
            Text(peak.month + (" (now)" if peak.month == current else ""), style=style),
            _fmt(peak.peak_kw),
            at,
        )
    if not state.month_peaks:
        table.add_row("—", "—", "")
    caption = "capacity (12-month mean, ≥2.5 kW/month): "
    table.caption = caption + (f"{state.capacity_kw:.3f} kW" if state.capacity_kw is not None else "—")
    return table


def render_quarter(status: QuarterStatus | None, tz: tzinfo) -> Panel:
    """The running-quarter panel: progress, average, forecast vs month peak; red on a new peak."""
    if status is None:
        return Panel(Text("no quarter yet", style="dim"), title="Quarter")
    alarm = status.new_peak_likely
    style = "red" if alarm else "green"
    start = status.quarter_start.astimezone(tz).strftime("%H:%M")
    end = status.quarter_end.astimezone(tz).strftime("%H:%M %Z")
    lines = Table.grid(padding=(0, 2))
    lines.add_column()
    lines.add_column()
    bar = ProgressBar(total=900.0, completed=min(status.elapsed_s, 900.0), width=40, complete_style=style)
    lines.add_row(Text(f"{start}–{end}"), Group(bar))
    lines.add_row("elapsed", f"{int(status.elapsed_s // 60):02d}:{int(status.elapsed_s % 60):02d} of 15:00")
    lines.add_row("average so far", f"{status.avg_kw_so_far:.3f} kW")
    lines.add_row("power now", f"{status.power_now_kw:.3f} kW")
    lines.add_row(
        "forecast",
        Text(
            f"{status.forecast_kw:.3f} kW  vs month peak {status.month_peak_kw:.3f} kW", style=f"bold {style}"
        ),
    )
    lines.add_row("threshold", f"{status.threshold_kw:.3f} kW (peak, floor 2.5 kW)")
    if alarm:
        lines.add_row(
            Text("NEW PEAK", style="bold red"),
            Text(f"+{status.overshoot_kw:.3f} kW over the month peak", style="bold red"),
        )
    else:
        lines.add_row(
            "headroom", f"{status.gap_kw:.3f} kW  (allowed power {status.allowed_power_kw:.3f} kW till {end})"
        )
    title = "Quarter — NEW PEAK in the making" if alarm else "Quarter"
    return Panel(lines, title=title, border_style=style, title_align="left")


def _telegram_panel(text: str | None, max_lines: int = 12) -> Panel:
    if not text:
        return Panel(Text("—", style="dim"), title="Last telegram", title_align="left")
    lines = text.strip().splitlines()
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"… ({len(lines) - max_lines} more lines)"]
    return Panel(Text("\n".join(lines)), title="Last telegram", title_align="left", border_style="dim")


def render(state: DashboardState) -> RenderableType:
    """One dashboard frame. Pure: same state, same text."""
    top = Table.grid(padding=(0, 3))
    top.add_column()
    top.add_column()
    top.add_row(_rates_table(state), _peaks_table(state))
    parts: list[RenderableType] = [
        _header(state),
        top,
        _usage_table(state.summary),
        render_quarter(state.quarter, state.tz),
        _telegram_panel(state.last_telegram),
    ]
    parts.extend(Text(note, style="yellow") for note in state.notes)
    return Group(*parts)


# -- feeds -------------------------------------------------------------------------------------


class DemoMeter:
    """A synthetic household meter (base load, fridge, kettle/oven bursts, PV, gas, water).

    Deterministic for a given ``seed``. ``next_values(ts)`` returns the normalized meter values
    at ``ts``, integrating the power since the previous call into the cumulative counters.
    """

    def __init__(self, *, tz: tzinfo, seed: int = 1) -> None:
        self.tz = tz
        self._rng = random.Random(seed)
        self._last: datetime | None = None
        self.counters = {
            "import_kwh_t1": 4211.0,
            "import_kwh_t2": 3180.0,
            "export_kwh_t1": 812.0,
            "export_kwh_t2": 95.0,
            "gas_m3": 1523.0,
            "water_m3": 211.0,
        }
        self._burst_until: datetime | None = None
        self._burst_kw = 0.0
        self._gas_hour: datetime | None = None

    def _load_kw(self, ts: datetime) -> float:
        local = ts.astimezone(self.tz)
        hour = local.hour + local.minute / 60
        load = 0.25 + (0.12 if (local.minute // 20) % 2 == 0 else 0.0)  # base + fridge cycle
        if 17 <= hour < 22:
            load += 0.6  # evening
        if self._burst_until is None or ts >= self._burst_until:
            self._burst_kw = 0.0
            if self._rng.random() < 0.004:  # about one appliance burst per 4 minutes of readings
                self._burst_kw = self._rng.choice((2.0, 2.4, 3.2))
                self._burst_until = ts + timedelta(minutes=self._rng.choice((3, 6, 12)))
        return load + self._burst_kw

    def _pv_kw(self, ts: datetime) -> float:
        local = ts.astimezone(self.tz)
        hour = local.hour + local.minute / 60
        if not 7 <= hour < 19:
            return 0.0
        return 3.5 * math.sin(math.pi * (hour - 7) / 12) ** 2

    def next_values(self, ts: datetime) -> dict[str, Any]:
        """Advance to ``ts`` and return the meter values (a dict like the P1 driver's)."""
        ts = ts.astimezone(timezone.utc)
        net_kw = self._load_kw(ts) - self._pv_kw(ts)
        tariff = belgian_tariff(ts, self.tz)
        suffix = "t1" if tariff is Tariff.DAY else "t2"
        if self._last is not None and ts > self._last:
            hours = (ts - self._last).total_seconds() / 3600
            key = "import_kwh_" if net_kw >= 0 else "export_kwh_"
            self.counters[key + suffix] += abs(net_kw) * hours
            self.counters["water_m3"] += 0.004 if self._rng.random() < 0.01 else 0.0
        self._last = ts
        hour_start = ts.replace(minute=0, second=0, microsecond=0)
        if self._gas_hour != hour_start:  # gas meters report once per hour
            self._gas_hour = hour_start
            local_hour = hour_start.astimezone(self.tz).hour
            self.counters["gas_m3"] += 0.05 + (0.25 if local_hour in (6, 7, 18, 19, 20) else 0.0)
        return {
            "ts": ts.isoformat(),
            **{k: round(v, 3) for k, v in self.counters.items()},
            "gas_at": hour_start.isoformat(),
            "tariff": int(tariff),
            "power_import_w": round(max(net_kw, 0.0) * 1000),
            "power_export_w": round(max(-net_kw, 0.0) * 1000),
        }

    def telegram(self, values: Mapping[str, Any]) -> str:
        """A human-readable stand-in for the raw telegram (the demo has no bytes)."""
        return "\n".join(f"{k}: {v}" for k, v in values.items())

    def feed(
        self,
        *,
        start: datetime,
        step_s: float = 1.0,
        pace_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[FeedItem]:
        """Endless feed from ``start``: one reading per ``step_s`` meter s, per ``pace_s`` real s."""
        ts = start
        while True:
            values = self.next_values(ts)
            yield values, self.telegram(values)
            ts += timedelta(seconds=step_s)
            if pace_s > 0:
                sleep(pace_s)


def port_feed(port: str, reader: PortReader) -> Iterator[FeedItem]:
    """Adapt a P1 reader (``reader(port)`` yielding dicts or ``(dict, text)``) into a feed."""
    for item in reader(port):
        if isinstance(item, tuple):
            values, text = item
        else:
            values, text = item, None
        yield values, text


# -- loop ------------------------------------------------------------------------------------------


def _pump(feed: Iterable[FeedItem], out: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in feed:
            if stop.is_set():
                return
            out.put(("item", item))
    except Exception as exc:  # noqa: BLE001 - any reader failure is shown by the display loop, which exits
        out.put(("error", exc))
    out.put(("end", None))


def run_dashboard(
    feed: Iterable[FeedItem],
    recorder: MeterRecorder,
    *,
    console: Console | None = None,
    source: str = "",
    key_map: Mapping[str, str] | None = None,
    refresh_s: float = 1.0,
    max_frames: int | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Read ``feed`` in a thread, book readings, redraw every ``refresh_s``; return an exit code.

    Between readings the quarter panel advances with the real time elapsed since the last
    reading, so a meter that reports every 10 s still shows a moving quarter.
    """
    console = console or Console()
    items: queue.Queue = queue.Queue(maxsize=1000)
    stop = threading.Event()
    thread = threading.Thread(target=_pump, args=(feed, items, stop), daemon=True, name="dashboard-feed")
    thread.start()
    last_telegram: str | None = None
    last_at = monotonic()
    notes: tuple[str, ...] = ()
    frames = 0
    code = 0
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while max_frames is None or frames < max_frames:
                deadline = monotonic() + refresh_s
                ended = False
                while True:
                    try:
                        kind, payload = items.get(timeout=max(deadline - monotonic(), 0.0))
                    except queue.Empty:
                        break
                    if kind == "item":
                        values, text = payload
                        try:
                            recorder.feed(MeterReading.from_values(values, key_map=key_map))
                            last_telegram, last_at, notes = text, monotonic(), ()
                        except ValueError as exc:  # ReadingError included
                            notes = (f"reading skipped: {exc}",)
                        except GridEdgeError as exc:  # storage trouble: keep showing, say so
                            notes = (f"storage: {exc}",)
                    else:
                        ended = True
                        if kind == "error":
                            notes = (f"feed stopped: {payload}",)
                            code = 1
                        break
                    if monotonic() >= deadline:
                        break
                now = None
                if recorder.last_reading is not None:
                    now = recorder.last_reading.ts + timedelta(seconds=max(monotonic() - last_at, 0.0))
                state = state_from_recorder(
                    recorder, now=now, source=source, last_telegram=last_telegram, notes=notes
                )
                live.update(render(state), refresh=True)
                frames += 1
                if ended:
                    break
    finally:
        stop.set()
        recorder.close()
    return code


# -- command -------------------------------------------------------------------------------------


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "gridedge"


#: P1Reading point key -> MeterReading field, for the live P1 port feed
P1_KEY_MAP: dict[str, str] = {
    "ts": "meter_time",
    "import_kwh_t1": "energy_import_t1_kwh",
    "import_kwh_t2": "energy_import_t2_kwh",
    "export_kwh_t1": "energy_export_t1_kwh",
    "export_kwh_t2": "energy_export_t2_kwh",
    "month_peak_at": "month_peak_time",
    "gas_at": "gas_time",
    "water_at": "water_time",
}


def p1_port_reader(port: str, *, baudrate: int = 115200) -> Iterator[tuple[dict, str]]:
    """Read a P1 port with the project's reader; yield (normalized values, telegram text) for
    every good telegram (bad CRCs are counted and dropped by the reader, never shown)."""
    from gridedge.protocols.dsmr.reader import P1Reader, ReceivedTelegram

    telegrams: queue.Queue[ReceivedTelegram] = queue.Queue(maxsize=100)
    reader = P1Reader(port=port, baudrate=baudrate, on_telegram=telegrams.put)
    reader.start()
    try:
        while True:
            got = telegrams.get()
            points = got.reading.as_points()
            values = {field: points.get(key) for field, key in P1_KEY_MAP.items()}
            for name in ("tariff", "power_import_w", "power_export_w", "avg_demand_kw", "month_peak_kw",
                         "gas_m3", "water_m3"):
                values[name] = points.get(name)
            yield values, got.decoded.text if hasattr(got.decoded, "text") else ""
    finally:
        reader.stop()


def run(args: argparse.Namespace, *, port_reader: PortReader | None = None) -> int:
    """Run the dashboard from parsed arguments; ``port_reader`` reads a P1 port for ``--port``."""
    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown timezone {args.tz!r}") from exc
    rates = (
        load_rates(args.rates) if args.rates else parse_rates(EXAMPLE_RATES, source="built-in example rates")
    )
    if args.demo:
        if not args.speed > 0:
            raise ConfigError(f"--speed must be > 0, got {args.speed}")
        data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="gridedge-demo-"))
        recorder = MeterRecorder(data_dir=data_dir, rates=rates, tz=tz)
        meter = DemoMeter(tz=tz, seed=args.seed)
        start = datetime.now(timezone.utc).replace(microsecond=0)
        if args.backfill_days > 0:
            _backfill(meter, recorder, start - timedelta(days=args.backfill_days), start)
        feed: Iterable[FeedItem] = meter.feed(start=start, step_s=args.speed, pace_s=1.0)
        source = f"demo ×{args.speed:g} ({data_dir})"
    else:
        if port_reader is None:
            port_reader = p1_port_reader
        data_dir = Path(args.data_dir) if args.data_dir else _default_data_dir()
        recorder = MeterRecorder(data_dir=data_dir, rates=rates, tz=tz)
        feed = port_feed(args.port, port_reader)
        source = f"P1 {args.port}"
    return run_dashboard(feed, recorder, source=source, max_frames=args.frames)


def _backfill(meter: DemoMeter, recorder: MeterRecorder, start: datetime, end: datetime) -> None:
    """Fill past days with one demo reading a minute, so the demo has history to show."""
    ts = start
    while ts < end:
        recorder.feed(MeterReading.from_values(meter.next_values(ts)))
        ts += timedelta(seconds=60)
    recorder.flush()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dashboard`` sub-command."""
    parser = subparsers.add_parser(
        "dashboard",
        help="live terminal view of meter, usage, cost and the capacity quarter",
        description="Live view next to the meter: rates, usage and cost, month peaks, the running quarter.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", action="store_true", help="feed synthetic readings (runs standalone)")
    source.add_argument("--port", metavar="PORT", help="P1 serial port of the meter")
    parser.add_argument("--rates", metavar="FILE", help="rates.json (default: the example rates)")
    parser.add_argument("--data-dir", metavar="DIR", help="where usage.sqlite3 and history/ live")
    parser.add_argument(
        "--tz", default="Europe/Brussels", help="local timezone of the periods (default %(default)s)"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="demo: meter seconds per real second")
    parser.add_argument("--seed", type=int, default=1, help="demo: random seed")
    parser.add_argument(
        "--backfill-days", type=int, default=7, help="demo: days of history to simulate first"
    )
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frames (default: run)")
    parser.set_defaults(func=run)
