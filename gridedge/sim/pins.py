"""A gpiozero pin factory whose output pins drive the simulated site instead of a GPIO header.

The demo site has no Raspberry Pi: the platform driver's ``gpio_relay`` interface still drives
relays and PWM outputs through gpiozero, but with :class:`SitePinFactory` each output change is
sent to the site model (``{"op": "set_pin", "pin": N, "level": x}`` over :class:`SiteClient`),
so that a relay switched on the bus really changes the load the simulated meters measure.

The simulated relay board is active-high: the level the site receives is the electrical pin level
(1 = high = load on). Writes are synchronous: the pin takes its new state only after the site has
acknowledged it, and a site that cannot be reached makes the write fail with
:class:`SiteUnreachableError` (retryable) instead of leaving a pin that lies about the load.
"""

from __future__ import annotations

from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from gridedge.errors import DeviceError
from gridedge.sim.site_server import SiteClient

__all__ = ["SitePin", "SitePinFactory", "SiteUnreachableError"]


class SiteUnreachableError(DeviceError):
    """The site model did not take a pin change (socket down, refused, or an error reply)."""

    retryable = True


class SitePin(MockPWMPin):
    """A mock pin (PWM-capable, so it serves relays and dimmers alike) that forwards every driven
    output level to the site model before taking it."""

    def __init__(self, factory: SitePinFactory, info: Any) -> None:
        super().__init__(factory, info)
        self._site_factory = factory
        self._closing = False

    @property
    def bcm(self) -> int:
        """The pin's BCM GPIO number."""
        return int(self.info.name.removeprefix("GPIO"))

    def close(self) -> None:
        # Releasing a pin must not switch the simulated load: on a real board the relay keeps
        # whatever the driver last drove (its safe state) until something drives it again.
        self._closing = True
        try:
            super().close()
        finally:
            self._closing = False

    def _set_state(self, value: float) -> None:
        if self._function == "output" and not self._closing:
            self._site_factory.send_level(self.bcm, float(value))
        super()._set_state(value)


class SitePinFactory(MockFactory):
    """gpiozero pin factory for the simulated site (pins are BCM numbers of the site's circuits)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int, timeout_s: float = 2.0,
                 client: SiteClient | None = None) -> None:
        super().__init__(pin_class=SitePin)
        self._client = client if client is not None else SiteClient(host=host, port=port,
                                                                    timeout_s=timeout_s)
        self._where = f"{host}:{port}"

    def send_level(self, pin: int, level: float) -> None:
        """Hand one output level to the site model; raise :class:`SiteUnreachableError` if it is not
        taken."""
        try:
            reply = self._client.request({"op": "set_pin", "pin": pin, "level": level})
        except (OSError, ValueError) as exc:
            raise SiteUnreachableError(
                f"site model at {self._where} unreachable setting GPIO{pin} to {level}: {exc}") from exc
        if not reply.get("ok"):
            raise SiteUnreachableError(
                f"site model at {self._where} refused GPIO{pin} = {level}: {reply.get('error')}")

    def close(self) -> None:
        """Release the pins and the site connection."""
        try:
            super().close()
        finally:
            self._client.close()
