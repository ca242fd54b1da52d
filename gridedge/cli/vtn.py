"""``gridedge vtn``: run the demo OpenADR VTN and drive it through its control surface.

- ``gridedge vtn serve [--host 127.0.0.1] [--port 8080] [--control-port 8081]`` runs it in the
  foreground (Ctrl-C or SIGTERM stop it).
- ``gridedge vtn event (--shed-kw KW | --level N | --setpoint-kw KW) [--duration 300] [--start-in 0]
  [--url CONTROL_URL]`` creates an event and prints JSON with ``event_id``; a comma-separated value
  list (``--shed-kw 1,2,3``) makes one interval per value, the duration split evenly.
- ``gridedge vtn modify EVENT_ID (...same...)`` replaces an event (modification number + 1).
- ``gridedge vtn cancel EVENT_ID [--url ...]`` and ``gridedge vtn state [--url ...]``.

The control URL defaults to ``$GRIDEDGE_VTN_CONTROL_URL`` or ``http://127.0.0.1:8081``. The client
side uses the standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from gridedge.openadr.control_client import DEFAULT_CONTROL_URL, VtnControlClient, default_control_url

__all__ = ["register"]


def _values(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__} or a comma-separated list") from exc
        if not values:
            raise argparse.ArgumentTypeError("no value given")
        return values[0] if len(values) == 1 else values

    return parse


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help=f"control surface URL (default: $GRIDEDGE_VTN_CONTROL_URL or {DEFAULT_CONTROL_URL})")


def _add_event_args(parser: argparse.ArgumentParser) -> None:
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--shed-kw", type=_values(float), help="LOAD_DISPATCH delta: kW to shed (or a list)")
    kind.add_argument("--level", type=_values(int), help="SIMPLE level 0-3 (or a list)")
    kind.add_argument("--setpoint-kw", type=_values(float), help="LOAD_DISPATCH setpoint: kW to stay under")
    parser.add_argument("--duration", type=float, default=300.0, help="event duration in s (default 300)")
    parser.add_argument("--start-in", type=float, default=0.0, help="start this many s from now (default 0)")
    parser.add_argument("--priority", type=int, default=0, help="OpenADR priority (1 highest, 0 unspecified)")
    parser.add_argument("--test-event", action="store_true", help="mark the event as a test event")
    parser.add_argument("--ven-id", action="append", dest="ven_ids", help="target VEN id (repeatable)")
    _add_url(parser)


def _event_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"duration_s": args.duration, "start_in_s": args.start_in,
                            "priority": args.priority, "test_event": args.test_event}
    for name in ("shed_kw", "level", "setpoint_kw"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.ven_ids:
        body["ven_ids"] = args.ven_ids
    return body


def _client(args: argparse.Namespace) -> VtnControlClient:
    return VtnControlClient(base_url=args.url or default_control_url())


def _print(data: Any) -> int:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from gridedge.openadr.vtn import VtnConfig, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import openleadr  # noqa: F401  (it resets its own log level on import)

    logging.getLogger("openleadr").setLevel(logging.WARNING)
    config = VtnConfig(vtn_id=args.vtn_id, host=args.host, port=args.port, control_host=args.host,
                       control_port=args.control_port, poll_interval_s=args.poll_interval)

    def ready(vtn: Any) -> None:
        print(f"VTN {config.vtn_id}: OpenADR at {vtn.openadr_url}, control at {vtn.control_url}", flush=True)

    asyncio.run(serve(config, ready=ready))
    return 0


def _event(args: argparse.Namespace) -> int:
    return _print(_client(args).create_event(**_event_body(args)))


def _modify(args: argparse.Namespace) -> int:
    return _print(_client(args).modify_event(args.event_id, **_event_body(args)))


def _cancel(args: argparse.Namespace) -> int:
    return _print(_client(args).cancel_event(args.event_id))


def _state(args: argparse.Namespace) -> int:
    return _print(_client(args).state())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gridedge vtn`` and its sub-commands."""
    parser = subparsers.add_parser("vtn", help="demo OpenADR 2.0b VTN", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="vtn_command", metavar="SUBCOMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the VTN in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="OpenADR port (default 8080)")
    serve.add_argument("--control-port", type=int, default=8081, help="JSON control port (default 8081)")
    serve.add_argument("--vtn-id", default="GRIDEDGE-VTN", help="VTN id (default GRIDEDGE-VTN)")
    serve.add_argument("--poll-interval", type=float, default=1.0, help="poll period asked of VENs, s")
    serve.set_defaults(func=_serve)

    event = sub.add_parser("event", help="create an event; prints JSON with event_id")
    _add_event_args(event)
    event.set_defaults(func=_event)

    modify = sub.add_parser("modify", help="replace an event (modification number + 1)")
    modify.add_argument("event_id")
    _add_event_args(modify)
    modify.set_defaults(func=_modify)

    cancel = sub.add_parser("cancel", help="cancel an event")
    cancel.add_argument("event_id")
    _add_url(cancel)
    cancel.set_defaults(func=_cancel)

    state = sub.add_parser("state", help="print VENs, events, opt answers and reports as JSON")
    _add_url(state)
    state.set_defaults(func=_state)
