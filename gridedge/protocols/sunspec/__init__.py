"""SunSpec over Modbus: model layouts from pysunspec2, value rules, model-chain discovery, scraping."""

from gridedge.protocols.sunspec.codec import (
    SF_MAX,
    SF_MIN,
    ScaleFactorError,
    apply_scale,
    check_scale_factor,
    decode_raw,
    encode_raw,
    not_implemented_words,
    unscale,
)
from gridedge.protocols.sunspec.discovery import BASE_ADDRESSES, ModelLocation, SunSpecMap, discover
from gridedge.protocols.sunspec.image import DEFAULT_BASE_ADDRESS, SUNS_MARKER, build_image, encode_model
from gridedge.protocols.sunspec.models import (
    COMMON_MODEL_ID,
    END_MODEL_ID,
    METER_MODEL_IDS,
    ModelDef,
    PointDef,
    model_def,
)
from gridedge.protocols.sunspec.scrape import SunSpecPointRef, scrape_sunspec

__all__ = [
    "BASE_ADDRESSES",
    "COMMON_MODEL_ID",
    "DEFAULT_BASE_ADDRESS",
    "END_MODEL_ID",
    "METER_MODEL_IDS",
    "SF_MAX",
    "SF_MIN",
    "SUNS_MARKER",
    "ModelDef",
    "ModelLocation",
    "PointDef",
    "ScaleFactorError",
    "SunSpecMap",
    "SunSpecPointRef",
    "apply_scale",
    "build_image",
    "check_scale_factor",
    "decode_raw",
    "discover",
    "encode_model",
    "encode_raw",
    "model_def",
    "not_implemented_words",
    "scrape_sunspec",
    "unscale",
]
