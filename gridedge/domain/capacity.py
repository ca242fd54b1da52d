"""The Belgian capacity tariff: quarter-hour demand, the month peak and the billed capacity.

Since 2023 Flemish (and later Walloon/Brussels) grid fees charge the *capacity*: the average of
the last 12 monthly peaks, where a monthly peak is the highest quarter-hour average import
power of the calendar month and each month counts for at least 2.5 kW.

Definitions used here (all pure; the caller passes timestamps, nothing reads a clock):

* Quarters are fixed windows starting at :00, :15, :30, :45 *local* time and always last 15 real
  minutes. They are computed on absolute time, so the 02:00-03:00 hour that happens twice on the
  autumn DST change has 8 quarters and the skipped spring hour has none.
* A quarter's average power is its import energy x 4 (kWh in 15 min -> kW). Energy comes from the
  meter's cumulative import counter (exact) or, without one, from integrating power samples
  (each sample holds until the next, the way a meter reports "current power").
* Energy at a quarter boundary is interpolated linearly between the readings on either side, so
  readings need not fall on the boundary; across a gap (restart) the energy of the gap is spread
  evenly, which never over-states a peak.
* A month's peak belongs to the local calendar month in which the quarter starts.
* The import counter is made monotonic: when it goes backwards (meter replaced or reset) the new
  value becomes the reference and no energy is counted for that step.
* A timestamp that goes backwards (wall clock set back), or a silence longer than ``max_gap``
  (6 h), restarts the running quarter from that reading; completed quarters and the month peak
  are kept.
* The meter's own month peak (Fluvius 1-0:1.6.0) is merged in only with its timestamp, which
  says which month it belongs to; the meter stamps the *end* of the peak quarter, so a stamp of
  00:00 on the 1st counts for the month before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Literal

__all__ = [
    "FLOOR_KW",
    "MONTHS_BILLED",
    "QUARTER",
    "CapacityTracker",
    "MonthPeak",
    "QuarterAverage",
    "QuarterStatus",
    "capacity_kw",
    "month_key",
    "quarter_start",
    "rolling_capacity_kw",
]

#: Length of a demand window.
QUARTER = timedelta(minutes=15)
_QUARTER_H = 0.25
#: Each month's peak counts for at least this much in the capacity figure.
FLOOR_KW = 2.5
#: Number of monthly peaks averaged into the billed capacity.
MONTHS_BILLED = 12
#: Tolerance of "exceeds the peak" comparisons, so float noise does not flap the alarm.
_EPS_KW = 1e-6


def _require_aware(ts: datetime, name: str = "timestamp") -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {ts.isoformat()}")


def quarter_start(ts: datetime, tz: tzinfo) -> datetime:
    """Start (UTC) of the local quarter-hour window holding ``ts``.

    Flooring is done on the local wall clock (so offsets like +05:45 also get local :00/:15
    windows) but with the offset in force at ``ts``, so a repeated or skipped DST hour still
    yields 15-minute windows in real time.
    """
    _require_aware(ts)
    utc = ts.astimezone(timezone.utc)
    offset = utc.astimezone(tz).utcoffset() or timedelta(0)
    local_s = utc.timestamp() + offset.total_seconds()
    start_local_s = math.floor(local_s / 900.0) * 900.0
    return datetime.fromtimestamp(start_local_s - offset.total_seconds(), tz=timezone.utc)


def month_key(ts: datetime, tz: tzinfo) -> str:
    """``YYYY-MM`` of the local calendar month holding ``ts``."""
    _require_aware(ts)
    return ts.astimezone(tz).strftime("%Y-%m")


def _check_peak(value: float, index: int) -> float:
    try:
        kw = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"monthly peak #{index + 1} is not a number: {value!r}") from exc
    if not math.isfinite(kw) or kw < 0:
        raise ValueError(f"monthly peak #{index + 1} must be a finite, non-negative kW value: {value!r}")
    return kw


def capacity_kw(peaks_kw: Sequence[float]) -> float:
    """Billed capacity (kW): the mean of up to 12 monthly peaks, each floored at 2.5 kW.

    Fewer than 12 months (a new connection) -> the mean of the months given. More than 12 is
    refused (ValueError) rather than silently truncated: pick the months with
    :func:`rolling_capacity_kw`. Empty, negative, NaN or infinite values -> ValueError.

    >>> capacity_kw([1.0, 4.0])  # (2.5 + 4.0) / 2
    3.25
    """
    if isinstance(peaks_kw, (str, bytes)):
        raise ValueError("peaks must be a sequence of numbers")  # noqa: TRY004 - one error type for bad input
    values = [_check_peak(v, i) for i, v in enumerate(peaks_kw)]
    if not values:
        raise ValueError("at least one monthly peak is needed")
    if len(values) > MONTHS_BILLED:
        raise ValueError(f"at most {MONTHS_BILLED} monthly peaks are billed, got {len(values)}")
    return sum(max(v, FLOOR_KW) for v in values) / len(values)


def rolling_capacity_kw(month_peaks: Mapping[str, float], *, through_month: str) -> float | None:
    """Capacity over the 12 months ending with ``through_month`` (``YYYY-MM``), or None.

    Months missing from ``month_peaks`` are skipped (averaged over the months known).
    """
    year, month = (int(p) for p in through_month.split("-"))
    wanted = []
    for _ in range(MONTHS_BILLED):
        wanted.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    known = [month_peaks[m] for m in reversed(wanted) if m in month_peaks]
    return capacity_kw(known) if known else None


@dataclass(frozen=True)
class QuarterAverage:
    """A completed quarter-hour: its window (UTC) and average import power."""

    start: datetime
    end: datetime
    avg_kw: float
    #: False when the tracker started inside this quarter (the average then under-states).
    complete: bool = True

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")
        if not math.isfinite(self.avg_kw):
            raise ValueError(f"avg_kw must be finite, got {self.avg_kw!r}")


@dataclass(frozen=True)
class MonthPeak:
    """The highest quarter average of a local calendar month."""

    month: str  #: ``YYYY-MM``
    peak_kw: float
    peak_at: datetime | None  #: start of the peak quarter (UTC); None if only the meter's figure is known

    def __post_init__(self) -> None:
        if len(self.month) != 7 or self.month[4] != "-":
            raise ValueError(f"month must be YYYY-MM, got {self.month!r}")
        if not math.isfinite(self.peak_kw) or self.peak_kw < 0:
            raise ValueError(f"peak_kw must be finite and >= 0, got {self.peak_kw!r}")


@dataclass(frozen=True)
class QuarterStatus:
    """Where the running quarter stands against the month peak.

    ``threshold_kw`` is what the quarter must stay under for the bill not to rise:
    ``max(month_peak_kw, 2.5)`` (a peak below the 2.5 kW floor costs nothing).
    ``forecast_kw`` assumes the current power continues for the rest of the quarter:
    (energy so far + p_now x remaining) / 15 min, which reacts at once when a load starts or
    stops; ``forecast_linear_kw`` is the plain extrapolation of the average so far.
    ``gap_kw`` is the quarter average still usable (0 when over), ``allowed_power_kw`` the same
    expressed as the constant import power allowed until the quarter ends, ``overshoot_kw`` how
    far the forecast exceeds the threshold (0 when under).
    """

    quarter_start: datetime
    quarter_end: datetime
    elapsed_s: float
    avg_kw_so_far: float
    forecast_kw: float
    forecast_linear_kw: float
    #: quarter average already certain even if import stopped now (energy so far x 4)
    min_final_kw: float
    power_now_kw: float
    month: str
    month_peak_kw: float
    month_peak_at: datetime | None
    threshold_kw: float
    gap_kw: float
    allowed_power_kw: float
    overshoot_kw: float
    new_peak_likely: bool
    new_peak_certain: bool
    source: Literal["energy", "power"] = "energy"

    @property
    def remaining_s(self) -> float:
        """Seconds left in the quarter."""
        return max((self.quarter_end - self.quarter_start).total_seconds() - self.elapsed_s, 0.0)

    @property
    def progress(self) -> float:
        """Fraction of the quarter elapsed, 0..1."""
        return min(self.elapsed_s / QUARTER.total_seconds(), 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (timestamps as ISO 8601 strings)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["remaining_s"] = self.remaining_s
        return data


@dataclass
class _RunningQuarter:
    start: datetime
    end: datetime
    energy_at_start_kwh: float
    observed_from: datetime
    complete: bool


@dataclass
class CapacityTracker:
    """Feeds on timestamped meter readings; yields completed quarters and the live status.

    ``source="energy"``: pass ``import_kwh`` (cumulative, all tariffs) and, when known,
    ``power_w`` (current import power, used for the forecast). ``source="power"``: pass only
    ``power_w``; energy is integrated from the samples.
    The month peak is the max of the completed quarters of the month and of any peak the meter
    itself reports (``meter_month_peak_kw``, e.g. Fluvius OBIS 1-0:1.6.0).
    """

    tz: tzinfo
    source: Literal["energy", "power"] = "energy"
    #: Known peaks of past and current months (``YYYY-MM`` -> MonthPeak), e.g. from a store.
    month_peaks: dict[str, MonthPeak] = field(default_factory=dict)
    #: A longer silence between readings is not interpolated: the running quarter restarts.
    max_gap: timedelta = timedelta(hours=6)

    _last_ts: datetime | None = field(default=None, init=False, repr=False)
    _last_raw_kwh: float | None = field(default=None, init=False, repr=False)
    _offset_kwh: float = field(default=0.0, init=False, repr=False)
    _energy_kwh: float = field(default=0.0, init=False, repr=False)  # monotonic virtual counter
    _power_kw: float | None = field(default=None, init=False, repr=False)
    _quarter: _RunningQuarter | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.source not in ("energy", "power"):
            raise ValueError(f"source must be 'energy' or 'power', got {self.source!r}")

    # -- feeding ---------------------------------------------------------------------------

    def feed(
        self,
        ts: datetime,
        *,
        import_kwh: float | None = None,
        power_w: float | None = None,
        meter_month_peak_kw: float | None = None,
        meter_month_peak_at: datetime | None = None,
    ) -> list[QuarterAverage]:
        """Take one reading; return the quarters it completed (oldest first, usually none)."""
        _require_aware(ts)
        ts = ts.astimezone(timezone.utc)
        if power_w is not None and (not math.isfinite(power_w) or power_w < 0):
            raise ValueError(f"power_w must be a finite import power >= 0, got {power_w!r}")
        meter_peak = None
        if meter_month_peak_kw is not None and meter_month_peak_at is not None:
            # without its time the meter's figure could belong to the month just ended: skip it
            _require_aware(meter_month_peak_at, "meter_month_peak_at")
            at = meter_month_peak_at.astimezone(timezone.utc)
            # meters stamp the end of the peak quarter: 00:00 on the 1st still belongs to the month before
            month = month_key(at - timedelta(microseconds=1), self.tz)
            meter_peak = MonthPeak(month, float(meter_month_peak_kw), at)
        if self.source == "energy":
            if import_kwh is None or not math.isfinite(import_kwh) or import_kwh < 0:
                raise ValueError(f"import_kwh must be a finite counter value >= 0, got {import_kwh!r}")
            new_energy = self._advance_counter(import_kwh)
        else:
            if power_w is None:
                raise ValueError("power_w is required when source='power'")
            new_energy = self._integrate(ts)
        completed: list[QuarterAverage] = []
        if (
            self._quarter is None
            or self._last_ts is None
            or ts < self._last_ts
            or ts - self._last_ts > self.max_gap
        ):
            self._start_quarter(ts, new_energy, complete=False)
        else:
            completed = self._close_quarters(ts, new_energy)
        self._last_ts = ts
        self._energy_kwh = new_energy
        if power_w is not None:
            self._power_kw = power_w / 1000.0
        for q in completed:
            self._offer_peak(MonthPeak(month_key(q.start, self.tz), q.avg_kw, q.start))
        if meter_peak is not None:
            self._offer_peak(meter_peak)
        return completed

    def _advance_counter(self, raw_kwh: float) -> float:
        if self._last_raw_kwh is not None and raw_kwh < self._last_raw_kwh:
            # counter went backwards (meter replaced): rebase, count nothing for this step
            self._offset_kwh += self._last_raw_kwh - raw_kwh
        self._last_raw_kwh = raw_kwh
        return raw_kwh + self._offset_kwh

    def _integrate(self, ts: datetime) -> float:
        if self._last_ts is None or self._power_kw is None or ts <= self._last_ts:
            return self._energy_kwh
        hours = (ts - self._last_ts).total_seconds() / 3600.0
        return self._energy_kwh + self._power_kw * hours

    def _start_quarter(self, ts: datetime, energy_kwh: float, *, complete: bool) -> None:
        start = quarter_start(ts, self.tz)
        self._quarter = _RunningQuarter(start, start + QUARTER, energy_kwh, ts, complete or ts == start)

    def _close_quarters(self, ts: datetime, energy_kwh: float) -> list[QuarterAverage]:
        assert self._quarter is not None and self._last_ts is not None
        done: list[QuarterAverage] = []
        t0, e0 = self._last_ts, self._energy_kwh
        span_s = (ts - t0).total_seconds()
        while ts >= self._quarter.end:
            q = self._quarter
            frac = (q.end - t0).total_seconds() / span_s if span_s > 0 else 1.0
            e_end = e0 + (energy_kwh - e0) * frac
            avg = max(e_end - q.energy_at_start_kwh, 0.0) / _QUARTER_H
            done.append(QuarterAverage(q.start, q.end, avg, q.complete))
            self._quarter = _RunningQuarter(q.end, q.end + QUARTER, e_end, q.end, True)
        return done

    def _offer_peak(self, peak: MonthPeak) -> None:
        current = self.month_peaks.get(peak.month)
        if current is None or peak.peak_kw > current.peak_kw:
            self.month_peaks[peak.month] = peak

    # -- reading -----------------------------------------------------------------------------

    def month_peak(self, month: str) -> MonthPeak | None:
        """The peak known for ``month`` (``YYYY-MM``)."""
        return self.month_peaks.get(month)

    def status(self, now: datetime | None = None) -> QuarterStatus | None:
        """The running quarter at ``now`` (default: the last reading's time); None before any reading.

        ``now`` past the end of the quarter of the last reading is clamped to that quarter's end
        (no reading has told us about the next quarter yet).
        """
        if self._quarter is None or self._last_ts is None:
            return None
        q = self._quarter
        now = self._last_ts if now is None else now.astimezone(timezone.utc)
        now = min(max(now, self._last_ts), q.end)
        quarter_s = QUARTER.total_seconds()
        elapsed_s = (now - q.start).total_seconds()
        observed_s = (self._last_ts - q.observed_from).total_seconds()
        energy_so_far = max(self._energy_kwh - q.energy_at_start_kwh, 0.0)
        avg_so_far = energy_so_far / (observed_s / 3600.0) if observed_s > 0 else (self._power_kw or 0.0)
        # energy since the quarter began: measured, plus the unobserved head (tracker started
        # late) and the time since the last reading, both at the best estimate of power
        head_s = (q.observed_from - q.start).total_seconds()
        tail_s = (now - self._last_ts).total_seconds()
        p_now = self._power_kw if self._power_kw is not None else avg_so_far
        est_energy = energy_so_far + avg_so_far * head_s / 3600.0 + p_now * tail_s / 3600.0
        remaining_h = max(quarter_s - elapsed_s, 0.0) / 3600.0
        forecast = (est_energy + p_now * remaining_h) / _QUARTER_H
        forecast_linear = est_energy / (elapsed_s / 3600.0) if elapsed_s > 0 else p_now
        month = month_key(q.start, self.tz)
        peak = self.month_peaks.get(month)
        peak_kw = peak.peak_kw if peak else 0.0
        threshold = max(peak_kw, FLOOR_KW)
        min_final = energy_so_far / _QUARTER_H
        if remaining_h > 0:
            allowed = max((threshold * _QUARTER_H - est_energy) / remaining_h, 0.0)
        else:
            allowed = 0.0
        return QuarterStatus(
            quarter_start=q.start,
            quarter_end=q.end,
            elapsed_s=elapsed_s,
            avg_kw_so_far=avg_so_far,
            forecast_kw=forecast,
            forecast_linear_kw=forecast_linear,
            min_final_kw=min_final,
            power_now_kw=p_now,
            month=month,
            month_peak_kw=peak_kw,
            month_peak_at=peak.peak_at if peak else None,
            threshold_kw=threshold,
            gap_kw=max(threshold - forecast, 0.0),
            allowed_power_kw=allowed,
            overshoot_kw=max(forecast - threshold, 0.0),
            new_peak_likely=forecast > threshold + _EPS_KW,
            new_peak_certain=min_final > threshold + _EPS_KW,
            source=self.source,
        )

    # -- persistence helpers ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state to persist so a restart keeps the running quarter and counters."""
        q = self._quarter
        return {
            "last_ts": self._last_ts.isoformat() if self._last_ts else None,
            "last_raw_kwh": self._last_raw_kwh,
            "offset_kwh": self._offset_kwh,
            "energy_kwh": self._energy_kwh,
            "power_kw": self._power_kw,
            "quarter": None
            if q is None
            else {
                "start": q.start.isoformat(),
                "energy_at_start_kwh": q.energy_at_start_kwh,
                "observed_from": q.observed_from.isoformat(),
                "complete": q.complete,
            },
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Resume from :meth:`snapshot`; the next reading closes any quarters missed meanwhile."""
        try:
            last_ts = snapshot.get("last_ts")
            self._last_ts = datetime.fromisoformat(last_ts) if last_ts else None
            raw = snapshot.get("last_raw_kwh")
            self._last_raw_kwh = None if raw is None else float(raw)
            self._offset_kwh = float(snapshot.get("offset_kwh", 0.0))
            self._energy_kwh = float(snapshot.get("energy_kwh", 0.0))
            p = snapshot.get("power_kw")
            self._power_kw = None if p is None else float(p)
            q = snapshot.get("quarter")
            if q is None:
                self._quarter = None
            else:
                start = datetime.fromisoformat(q["start"])
                self._quarter = _RunningQuarter(
                    start,
                    start + QUARTER,
                    float(q["energy_at_start_kwh"]),
                    datetime.fromisoformat(q["observed_from"]),
                    bool(q["complete"]),
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad capacity snapshot: {exc}") from exc
