"""Tariff agent: P1 meter scrapes in; usage/cost and the capacity quarter out.

Thin glue over :class:`gridedge.storage.MeterRecorder`:

* subscribes to ``meter_topic`` (``devices/site/main/p1/all``: the platform driver's
  ``[values, meta]``) and books each scrape;
* every ``quarter_interval_s`` publishes the running quarter (``QuarterStatus`` as a dict) on
  ``gridedge/capacity/quarter``; every ``usage_interval_s``, or at once when the tariff or the
  local day changes, the usage/cost summary on ``gridedge/tariff/usage``;
* RPC ``get_usage()``, ``get_capacity()``, ``get_rates()``.

A bad config (or bad rates in it) is refused loudly and the last good one stays in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any

from pydantic import ValidationError
from volttron.client.messaging import headers as headers_mod
from volttron.client.vip.agent import RPC, Agent, Core
from volttron.utils import load_config, vip_main
from volttron.utils.scheduling import periodic

from gridedge.domain.tariffs import Tariff
from gridedge.domain.usage import MeterReading, ReadingError
from gridedge.errors import GridEdgeError
from gridedge.storage.recorder import MeterRecorder
from gridedge_tariff import __version__
from gridedge_tariff.config import TariffAgentConfig

__all__ = ["TariffAgent", "main"]

_log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TariffAgent(Agent):
    """Books P1 meter scrapes; publishes usage/cost and the capacity-tariff quarter."""

    def __init__(
        self, config_path: str | None = None, *, clock: Callable[[], datetime] = _utcnow, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self._clock = clock
        self.settings: TariffAgentConfig | None = None
        self.recorder: MeterRecorder | None = None
        self._subscribed_topic: str | None = None
        self._scheduled = False
        self._last_usage_pub: datetime | None = None
        self._last_usage_key: tuple[date, Tariff | None] | None = None
        self.vip.config.set_default("config", load_config(config_path))
        self.vip.config.subscribe(self.configure, actions=["NEW", "UPDATE"], pattern="config")

    # -- configuration ---------------------------------------------------------------------------

    def configure(self, config_name: str, action: str, contents: Mapping[str, Any]) -> bool:
        """Validate and apply a config; on any error keep the last good one. Returns True if applied."""
        try:
            settings = TariffAgentConfig.model_validate(dict(contents or {}))
            rates = settings.load_rates()
        except (ValidationError, GridEdgeError) as exc:
            _log.error(
                "gridedge.tariff: REFUSED %s of %r, keeping the last good config: %s",
                action,
                config_name,
                exc,
            )
            return False
        old = self.settings
        if (
            self.recorder is None
            or old is None
            or (old.data_path, old.timezone, old.flush_interval_s, old.past_days)
            != (
                settings.data_path,
                settings.timezone,
                settings.flush_interval_s,
                settings.past_days,
            )
        ):
            try:
                recorder = MeterRecorder(
                    data_dir=settings.data_path,
                    rates=rates,
                    tz=settings.tz,
                    flush_interval_s=settings.flush_interval_s,
                    past_days=settings.past_days,
                )
            except GridEdgeError as exc:
                _log.error("gridedge.tariff: REFUSED config, cannot open the data dir: %s", exc)
                return False
            if self.recorder is not None:
                self._close_recorder()
            self.recorder = recorder
        else:
            self.recorder.rates = rates
        self.settings = settings
        if self._subscribed_topic != settings.meter_topic:
            if self._subscribed_topic is not None:
                self.vip.pubsub.unsubscribe("pubsub", self._subscribed_topic, self.on_meter)
            self.vip.pubsub.subscribe("pubsub", settings.meter_topic, self.on_meter)
            self._subscribed_topic = settings.meter_topic
        _log.info("gridedge.tariff: config %s applied (meter topic %s)", action, settings.meter_topic)
        return True

    def _close_recorder(self) -> None:
        assert self.recorder is not None
        try:
            self.recorder.close()
        except GridEdgeError as exc:
            _log.error("gridedge.tariff: final flush failed: %s", exc)

    # -- lifecycle ----------------------------------------------------------------------------------

    @Core.receiver("onstart")
    def onstart(self, sender: Any, **kwargs: Any) -> None:
        """Start the publish ticks."""
        if not self._scheduled:
            interval = self.settings.quarter_interval_s if self.settings else 1.0
            self.core.schedule(periodic(interval), self.tick)
            self._scheduled = True

    @Core.receiver("onstop")
    def onstop(self, sender: Any, **kwargs: Any) -> None:
        """Flush figures to disk."""
        if self.recorder is not None:
            self._close_recorder()

    # -- bus ----------------------------------------------------------------------------------------

    def on_meter(
        self, peer: str, sender: str, bus: str, topic: str, headers: Mapping[str, Any], message: Any
    ) -> None:
        """Book one meter scrape (``[values, meta]`` or a bare values dict)."""
        if self.recorder is None or self.settings is None:
            return
        values = message[0] if isinstance(message, (list, tuple)) and message else message
        try:
            reading = self._reading(values, headers or {})
            self.recorder.feed(reading)
        except ReadingError as exc:
            _log.warning("gridedge.tariff: scrape on %s skipped: %s", topic, exc)
        except GridEdgeError as exc:
            _log.error("gridedge.tariff: storing figures failed (kept in memory, retried): %s", exc)

    def _reading(self, values: Any, headers: Mapping[str, Any]) -> MeterReading:
        assert self.settings is not None
        if not isinstance(values, Mapping):
            raise ReadingError(f"expected a dict of meter values, got {type(values).__name__}")
        ts_key = self.settings.key_map.get("ts", "ts")
        ts = None
        if values.get(ts_key) is None:
            # no meter time in the scrape: the driver's scrape time, else ours
            stamp = headers.get(headers_mod.DATE)
            try:
                ts = datetime.fromisoformat(stamp) if isinstance(stamp, str) else self._clock()
            except ValueError:
                ts = self._clock()
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=timezone.utc)
        return MeterReading.from_values(
            values, ts=ts, key_map=self.settings.key_map, naive_tz=self.settings.tz
        )

    def tick(self, now: datetime | None = None) -> None:
        """Publish the quarter status; the usage summary when due."""
        if self.recorder is None or self.settings is None or self.recorder.last_reading is None:
            return
        now = now or self._clock()
        stamp = {headers_mod.DATE: now.isoformat()}
        status = self.recorder.quarter_status(now)
        if status is not None:
            self.vip.pubsub.publish(
                "pubsub", self.settings.quarter_topic, headers=stamp, message=status.to_dict()
            )
        reading = self.recorder.last_reading
        key = (reading.ts.astimezone(self.recorder.tz).date(), reading.tariff)
        due = (
            self._last_usage_pub is None
            or (now - self._last_usage_pub).total_seconds() >= self.settings.usage_interval_s
        )
        if due or key != self._last_usage_key:
            self.vip.pubsub.publish(
                "pubsub", self.settings.usage_topic, headers=stamp, message=self.get_usage()
            )
            self._last_usage_pub, self._last_usage_key = now, key

    # -- RPC ----------------------------------------------------------------------------------------

    @RPC.export
    def get_usage(self) -> dict[str, Any] | None:
        """Usage and cost: today, past days, ISO week, month, year (plus the active tariff)."""
        if self.recorder is None or self.recorder.last_reading is None:
            return None
        summary = self.recorder.usage_summary().to_dict()
        summary["tariff"] = int(self.recorder.last_reading.tariff)
        return summary

    @RPC.export
    def get_capacity(self) -> dict[str, Any] | None:
        """Running quarter, month peaks and the billed 12-month capacity (kW)."""
        if self.recorder is None:
            return None
        status = self.recorder.quarter_status(self._clock())
        return {
            "quarter": status.to_dict() if status else None,
            "month_peaks": [
                {
                    "month": p.month,
                    "peak_kw": p.peak_kw,
                    "peak_at": p.peak_at.isoformat() if p.peak_at else None,
                }
                for p in self.recorder.month_peaks()
            ],
            "capacity_kw": self.recorder.capacity_kw(),
        }

    @RPC.export
    def get_rates(self) -> dict[str, Any] | None:
        """The rates in force, in the ``rates.json`` shape."""
        return self.recorder.rates.to_json_dict() if self.recorder else None


def main() -> None:
    """Entry point of the installed agent."""
    vip_main(TariffAgent, version=__version__)


if __name__ == "__main__":
    main()
