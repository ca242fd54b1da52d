"""GridEdge shared library: domain logic, protocol codecs, simulators and the CLI.

The :mod:`gridedge.domain` and :mod:`gridedge.protocols` packages never import volttron or
gevent, so every decision and codec is testable without a bus.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
