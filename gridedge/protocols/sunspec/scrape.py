"""One scrape of SunSpec points: locate them in the discovered model chain, read, scale.

Each wanted point brings its scale-factor point along; both are planned into as few block
reads as possible. Registers inside a SunSpec map are all readable (unused ones hold "not
implemented"), so gaps between wanted points may be bridged (``max_gap``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gridedge.errors import ConfigError, GridEdgeError
from gridedge.protocols.modbus_meters.registers import MAX_READ_REGISTERS, Function, ReadSpan, plan_reads
from gridedge.protocols.modbus_meters.scrape import ReadFn, ScrapeResult, read_blocks
from gridedge.protocols.sunspec.codec import apply_scale, check_scale_factor, decode_raw
from gridedge.protocols.sunspec.discovery import ModelLocation, SunSpecMap
from gridedge.protocols.sunspec.models import METER_MODEL_IDS, PointDef, model_def

__all__ = ["SunSpecPointRef", "scrape_sunspec"]


@dataclass(frozen=True)
class SunSpecPointRef:
    """A point wanted from a SunSpec device.

    ``model_id`` None means "the device's meter model", whichever of 201..204 it has, so one
    registry serves all meter models. ``scale`` is a further value weight like a register
    point's: value = raw × 10^sf / scale (1000 turns Wh into kWh).
    """

    name: str
    point_id: str
    model_id: int | None = None
    scale: float = 1.0
    units: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.point_id:
            raise ConfigError("a SunSpec point needs a name and a point id")
        if self.model_id is not None and self.model_id <= 0:
            raise ConfigError(f"point {self.name}: invalid model id {self.model_id}")
        if self.scale == 0:
            raise ConfigError(f"point {self.name}: scale must not be 0")
        if self.model_id is not None:
            model_def(self.model_id).point(self.point_id)  # fail at configuration time

    def locate(self, chain: SunSpecMap) -> tuple[ModelLocation, PointDef, PointDef | None]:
        """Where the point and its scale factor are on this device; ConfigError if absent."""
        loc = chain.meter() if self.model_id is None else chain.find(self.model_id)
        if loc is None:
            wanted = f"a meter model {METER_MODEL_IDS}" if self.model_id is None else f"model {self.model_id}"
            found = [m.model_id for m in chain.models]
            raise ConfigError(f"point {self.name}: device has no {wanted} (models {found})")
        mdl = model_def(loc.model_id)
        point = mdl.point(self.point_id)
        return loc, point, mdl.sf_point(point)


def _span(loc: ModelLocation, point: PointDef) -> ReadSpan:
    return ReadSpan(function=Function.HOLDING, address=loc.address + point.offset, count=point.size)


def scrape_sunspec(
    refs: Mapping[str, SunSpecPointRef],
    read: ReadFn,
    chain: SunSpecMap,
    *,
    max_count: int = MAX_READ_REGISTERS,
    max_gap: int = MAX_READ_REGISTERS,
) -> ScrapeResult:
    """Read and scale ``refs`` (key -> point) from a device whose chain is ``chain``."""
    result = ScrapeResult()
    located: dict[str, tuple[SunSpecPointRef, PointDef, ReadSpan, PointDef | None, ReadSpan | None]] = {}
    for key, ref in refs.items():
        try:
            loc, point, sf_point = ref.locate(chain)
        except ConfigError as exc:
            result.errors[key] = str(exc)
            continue
        sf_span = _span(loc, sf_point) if sf_point is not None else None
        located[key] = (ref, point, _span(loc, point), sf_point, sf_span)
    spans = [s for _, _, span, _, sf_span in located.values() for s in (span, sf_span) if s is not None]
    plan = plan_reads(spans, max_count=max_count, max_gap=max_gap)
    words, failed, fatal = read_blocks(plan.blocks, read)

    def words_of(span: ReadSpan) -> list[int] | str:
        block = plan.block_for(span)
        if block in words:
            return block.slice(words[block], span)
        return failed.get(block) or fatal or "not read"

    for key, (ref, point, span, sf_point, sf_span) in located.items():
        got = words_of(span)
        if isinstance(got, str):
            result.errors[key] = got
            continue
        try:
            raw = decode_raw(point, got)
            if sf_point is not None and sf_span is not None:
                sf_words = words_of(sf_span)
                if isinstance(sf_words, str):
                    result.errors[key] = sf_words
                    continue
                sf_raw = decode_raw(sf_point, sf_words)
                sf = check_scale_factor(None if sf_raw is None else int(sf_raw), point_name=sf_point.name)
            else:
                sf = point.sf if isinstance(point.sf, int) else 0
                check_scale_factor(sf, point_name=f"{point.name} (fixed)")
            if isinstance(raw, str):
                result.values[key] = raw
                continue
            value = raw if (point.sf is None) else apply_scale(raw, sf)
            result.values[key] = value if (value is None or ref.scale == 1) else value / ref.scale
        except GridEdgeError as exc:
            result.errors[key] = f"{ref.name} ({point.name}): {exc}"
    return result
