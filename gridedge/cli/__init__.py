"""The ``gridedge`` command."""
