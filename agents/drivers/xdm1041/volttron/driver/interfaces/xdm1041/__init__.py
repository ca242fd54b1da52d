"""Platform-driver interface ``xdm1041``: a battery monitor made of two OWON XDM1041 meters."""

from volttron.driver.interfaces.xdm1041.xdm1041 import (
    QUANTITIES,
    Xdm1041,
    Xdm1041PointConfig,
    Xdm1041Register,
    Xdm1041RemoteConfig,
)

__all__ = ["QUANTITIES", "Xdm1041", "Xdm1041PointConfig", "Xdm1041Register", "Xdm1041RemoteConfig"]
