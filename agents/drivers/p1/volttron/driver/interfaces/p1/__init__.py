"""P1 digital-meter interface for the VOLTTRON platform driver (``driver_type: p1``)."""

from volttron.driver.interfaces.p1.p1 import P1, P1PointConfig, P1Register, P1RemoteConfig

__all__ = ["P1", "P1PointConfig", "P1Register", "P1RemoteConfig"]
