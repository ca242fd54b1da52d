"""Building a SunSpec device's register image: "SunS", the models, the end model.

Used by the simulator (and tests) to lay values out exactly as a device does. Values are
given in engineering units; scale factors are given explicitly per ``sunssf`` point, as a
device firmware fixes them. Points left out are sent as "not implemented".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gridedge.protocols.sunspec.codec import check_scale_factor, encode_raw, unscale
from gridedge.protocols.sunspec.models import END_MODEL_ID, model_def

__all__ = ["DEFAULT_BASE_ADDRESS", "SUNS_MARKER", "build_image", "encode_model"]

#: "SunS" as two registers
SUNS_MARKER: tuple[int, int] = (0x5375, 0x6E53)
DEFAULT_BASE_ADDRESS = 40000

Value = int | float | str | None


def encode_model(
    model_id: int,
    values: Mapping[str, Value],
    *,
    scale_factors: Mapping[str, int | None] | None = None,
) -> list[int]:
    """The registers of one model (ID and L included).

    ``values``: engineering values by point name (None or absent = not implemented).
    ``scale_factors``: value of each ``sunssf`` point (None or absent = not implemented, and
    then every point scaled by it is sent as not implemented too).
    """
    mdl = model_def(model_id)
    sfs = dict(scale_factors or {})
    unknown = (set(values) | set(sfs)) - set(mdl.points)
    if unknown:
        raise ValueError(f"model {model_id} has no points {sorted(unknown)}")
    words: list[int] = []
    for point in mdl.points.values():
        if point.name == "ID":
            raw: Value = model_id
        elif point.name == "L":
            raw = mdl.length
        elif point.sunspec_type == "sunssf":
            raw = check_scale_factor(sfs.get(point.name), point_name=point.name)
        else:
            value = values.get(point.name)
            sf: int | None
            if isinstance(point.sf, str):
                sf = sfs.get(point.sf)
            else:
                sf = point.sf if isinstance(point.sf, int) else 0
            if value is None or (isinstance(point.sf, str) and sf is None):
                raw = None
            elif isinstance(value, str):
                raw = value
            elif point.sf is None and point.sunspec_type in ("float32", "float64"):
                raw = float(value)
            else:
                raw = unscale(float(value), sf or 0)
        words.extend(encode_raw(point, raw))
    if len(words) != mdl.length + 2:
        raise AssertionError(f"model {model_id} encoded to {len(words)} registers, expected {mdl.length + 2}")
    return words


def build_image(models: Sequence[Sequence[int]]) -> list[int]:
    """"SunS" + the already encoded models + the end model (0xFFFF, length 0)."""
    image: list[int] = list(SUNS_MARKER)
    for words in models:
        image.extend(words)
    image.extend((END_MODEL_ID, 0))
    return image
