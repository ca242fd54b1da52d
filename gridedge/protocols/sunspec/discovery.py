"""Finding the models of a SunSpec device by walking its model chain.

At the base address (40000 by default; 0 and 50000 are the alternatives the specification
allows) a device holds "SunS", then models one after another, each starting with its ID and
its length L, and finally the end model 0xFFFF. Only the two header registers of each model
are read while walking, so discovery costs one small read per model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gridedge.errors import DeviceError, FrameError
from gridedge.protocols.sunspec.image import DEFAULT_BASE_ADDRESS, SUNS_MARKER
from gridedge.protocols.sunspec.models import END_MODEL_ID, METER_MODEL_IDS

__all__ = ["BASE_ADDRESSES", "ModelLocation", "SunSpecMap", "discover"]

#: where the specification lets "SunS" be, in the order they are tried
BASE_ADDRESSES: tuple[int, ...] = (DEFAULT_BASE_ADDRESS, 0, 50000)
#: a chain longer than this is taken for garbage, not for a device
_MAX_MODELS = 64

#: reads ``count`` holding registers from ``address``
HoldingReadFn = Callable[[int, int], Sequence[int]]


@dataclass(frozen=True)
class ModelLocation:
    """One model found on the device: its ID register address and length L."""

    model_id: int
    address: int
    length: int

    @property
    def end(self) -> int:
        """First address after the model."""
        return self.address + 2 + self.length


@dataclass(frozen=True)
class SunSpecMap:
    """The device's model chain, in device order."""

    base_address: int
    models: tuple[ModelLocation, ...]

    def find(self, model_id: int) -> ModelLocation | None:
        """The first instance of ``model_id``, or None."""
        return next((m for m in self.models if m.model_id == model_id), None)

    def meter(self) -> ModelLocation | None:
        """The first meter model (201..204), or None."""
        return next((m for m in self.models if m.model_id in METER_MODEL_IDS), None)


def discover(read: HoldingReadFn, *, base_addresses: Sequence[int] = BASE_ADDRESSES) -> SunSpecMap:
    """Walk the model chain from the first base address that holds "SunS".

    A base address answered with a Modbus exception or with other words than "SunS" is
    skipped; a timeout ends discovery at once (retryable ProtocolTimeout). Raises DeviceError
    when no base address holds "SunS", FrameError for a chain that runs off the address space
    or does not end.
    """
    tried: list[str] = []
    for base in base_addresses:
        try:
            marker = tuple(read(base, 2))
        except DeviceError as exc:
            tried.append(f"{base}: {exc}")
            continue
        if marker != SUNS_MARKER:
            tried.append(f"{base}: {' '.join(f'{w:04X}' for w in marker)}")
            continue
        return SunSpecMap(base_address=base, models=_walk(read, base))
    raise DeviceError(f"no 'SunS' marker at any base address ({'; '.join(tried)})")


def _walk(read: HoldingReadFn, base: int) -> tuple[ModelLocation, ...]:
    models: list[ModelLocation] = []
    address = base + 2
    for _ in range(_MAX_MODELS):
        if address + 1 > 0xFFFF:
            raise FrameError(f"SunSpec model chain from {base} runs past the last register")
        try:
            model_id, length = read(address, 2)
        except ValueError as exc:
            raise FrameError(f"model header at {address} did not return 2 registers") from exc
        if model_id == END_MODEL_ID:
            return tuple(models)
        models.append(ModelLocation(model_id=model_id, address=address, length=length))
        address += 2 + length
    raise FrameError(f"SunSpec model chain from {base} has no end model after {_MAX_MODELS} models")
