"""GridEdge tariff agent (VIP identity ``gridedge.tariff``)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
