"""Platform driver interface ``stpm34``: an STPM34 metering board on a serial port."""

from volttron.driver.interfaces.stpm34.stpm34 import (
    Stpm34Interface,
    Stpm34PointConfig,
    Stpm34Register,
    Stpm34RemoteConfig,
)

__all__ = ["Stpm34Interface", "Stpm34PointConfig", "Stpm34Register", "Stpm34RemoteConfig"]
