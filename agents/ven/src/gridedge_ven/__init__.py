"""GridEdge VEN agent (identity ``gridedge.ven``): OpenADR 2.0b events onto the VOLTTRON bus."""

__version__ = "0.1.0"
__all__ = ["__version__"]
