"""Pure decision logic: no I/O, no volttron, no gevent."""
