"""One error root for GridEdge, with a family per layer.

``retryable`` separates "not available now, try again" (a timeout, a device that does not answer)
from "will never work" (a bad config, an unsupported signal).
"""

from __future__ import annotations

__all__ = [
    "GridEdgeError",
    "ProtocolError",
    "CrcError",
    "FrameError",
    "ProtocolTimeout",
    "DeviceError",
    "ConfigError",
    "SafetyError",
]


class GridEdgeError(Exception):
    """Root of every error GridEdge raises on purpose."""

    retryable: bool = False


class ProtocolError(GridEdgeError):
    """A frame, telegram or message on the wire was not what the protocol allows."""


class CrcError(ProtocolError):
    """A checksum did not match; the frame is discarded and counted, never used."""

    retryable = True


class FrameError(ProtocolError):
    """A frame is truncated, too long or malformed."""

    retryable = True


class ProtocolTimeout(ProtocolError):
    """The peer did not answer in time; it may answer next time."""

    retryable = True


class DeviceError(GridEdgeError):
    """A device refused or failed an operation."""


class ConfigError(GridEdgeError):
    """A configuration is invalid; it will not work until it is changed."""


class SafetyError(GridEdgeError):
    """An action was refused because it would leave the site unsafe."""
