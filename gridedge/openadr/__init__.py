"""OpenADR 2.0b: the VEN's event rules (pure) and the demo/test VTN.

- :mod:`gridedge.openadr.policy` / :mod:`gridedge.openadr.models`: the event rules over plain data
  (re-exported here; no asyncio, openleadr or volttron needed).
- :mod:`gridedge.openadr.ven_client`: the openleadr VEN on its own asyncio thread.
- :mod:`gridedge.openadr.vtn`: the demo VTN with its JSON control surface;
  :mod:`gridedge.openadr.control_client`: its stdlib client.
"""

from gridedge.openadr.models import (
    OPT_IN,
    OPT_OUT,
    ActiveRequest,
    Decision,
    EventStore,
    SignalInterval,
    StoredEvent,
)
from gridedge.openadr.policy import (
    MalformedEvent,
    PolicyConfig,
    effective_request,
    handle_event,
    next_boundary,
    power_kw_factor,
    prune,
)

__all__ = [
    "OPT_IN",
    "OPT_OUT",
    "ActiveRequest",
    "Decision",
    "EventStore",
    "MalformedEvent",
    "PolicyConfig",
    "SignalInterval",
    "StoredEvent",
    "effective_request",
    "handle_event",
    "next_boundary",
    "power_kw_factor",
    "prune",
]
