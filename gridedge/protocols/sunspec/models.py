"""SunSpec model layouts, built from pysunspec2's model definitions (its JSON files), not typed in.

A :class:`ModelDef` gives, for every top-level point of a model, its offset from the model's
ID register, its SunSpec type, its size in registers and its scale factor (the name of an
``sunssf`` point of the same model, or a fixed integer). Offsets count from the ``ID`` point
(offset 0); ``L`` (offset 1) is the number of registers after it.

Only top-level points are laid out: the models used here (1 common, 201-204 meters) have no
nested groups; a model with repeating groups is refused rather than half-described.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sunspec2 import device as ss_device
from sunspec2 import mdef as ss_mdef

from gridedge.errors import ConfigError

__all__ = ["COMMON_MODEL_ID", "END_MODEL_ID", "METER_MODEL_IDS", "ModelDef", "PointDef", "model_def"]

#: SunSpec meter models: 201 single-phase, 202 split-phase, 203 wye (3P4W), 204 delta (3P3W)
METER_MODEL_IDS: tuple[int, ...] = (201, 202, 203, 204)
COMMON_MODEL_ID = 1
END_MODEL_ID = ss_mdef.END_MODEL_ID


@dataclass(frozen=True)
class PointDef:
    """One point of a model: where it sits and how to read it."""

    name: str
    #: registers from the model's ID register (ID = 0, L = 1, first data point = 2)
    offset: int
    sunspec_type: str
    size: int
    #: name of the scale-factor point, a fixed scale factor, or None (unscaled)
    sf: str | int | None = None
    units: str = ""
    mandatory: bool = False

    def __post_init__(self) -> None:
        if self.offset < 0 or self.size < 1:
            raise ConfigError(f"point {self.name}: invalid offset {self.offset} / size {self.size}")


@dataclass(frozen=True)
class ModelDef:
    """The layout of one SunSpec model."""

    model_id: int
    name: str
    #: value of the L point: registers after ID and L
    length: int
    points: Mapping[str, PointDef]

    def point(self, name: str) -> PointDef:
        """The point ``name``; ConfigError naming model and point if the model has none."""
        try:
            return self.points[name]
        except KeyError:
            raise ConfigError(
                f"SunSpec model {self.model_id} ({self.name}) has no point {name!r}"
            ) from None

    def sf_point(self, point: PointDef) -> PointDef | None:
        """The scale-factor point of ``point`` (None when it is unscaled or has a fixed sf)."""
        return self.point(point.sf) if isinstance(point.sf, str) else None


@functools.cache
def model_def(model_id: int) -> ModelDef:
    """The layout of SunSpec model ``model_id`` from pysunspec2's definitions."""
    try:
        raw = ss_device.get_model_def(model_id)
    except ss_mdef.ModelDefinitionError as exc:
        raise ConfigError(f"no SunSpec model definition for model {model_id}: {exc}") from exc
    group = raw[ss_mdef.GROUP]
    if group.get(ss_mdef.GROUPS):
        raise ConfigError(f"SunSpec model {model_id} has nested groups; not supported here")
    points: dict[str, PointDef] = {}
    offset = 0
    for p in group[ss_mdef.POINTS]:
        ptype = p[ss_mdef.TYPE]
        size = p.get(ss_mdef.SIZE) or ss_mdef.point_type_info[ptype]["len"]
        sf = p.get(ss_mdef.SF)
        if isinstance(sf, str):
            sf = int(sf) if sf.lstrip("-").isdigit() else sf
        points[p[ss_mdef.NAME]] = PointDef(
            name=p[ss_mdef.NAME],
            offset=offset,
            sunspec_type=ptype,
            size=int(size),
            sf=sf,
            units=p.get(ss_mdef.UNITS, "") or "",
            mandatory=p.get(ss_mdef.MANDATORY) == ss_mdef.MANDATORY_TRUE,
        )
        offset += int(size)
    return ModelDef(
        model_id=model_id,
        name=group[ss_mdef.NAME],
        length=offset - 2,
        points=MappingProxyType(points),
    )
