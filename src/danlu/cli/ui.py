"""`danlu ui`: the web dashboard over the store (issue 5; practices E2, T1, T2).

    danlu ui                         # http://127.0.0.1:8765/
    danlu ui last                    # the URL printed opens the latest run's page
    danlu ui --port 0                # any free port
    danlu ui --host 0.0.0.0 --token SECRET   # reachable from other machines, token required
"""

from __future__ import annotations

import argparse
import os

from danlu.cli.options import add_store_arg, open_store_from_args

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="open the web dashboard: runs table, curves, comparisons, reports",
        description="Serve a local web dashboard over the run store. Read-only except for "
                    "editing a run's note and tags.",
    )
    parser.add_argument("run", nargs="?", metavar="RUN",
                        help="open this run's page (id, id prefix, name or 'last')")
    add_store_arg(parser)
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other needs --token)")
    parser.add_argument("--token", default=os.environ.get("DANLU_UI_TOKEN"),
                        help="secret every request must carry (default: $DANLU_UI_TOKEN)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from danlu.errors import DanluError
    from danlu.ui.server import is_loopback, new_token, serve

    if not 0 <= args.port <= 65535:
        raise DanluError(f"--port {args.port} is not a port; give 1..65535, or 0 for any free port")
    if not is_loopback(args.host) and not args.token:
        raise DanluError(f"--host {args.host} makes the dashboard reachable from other machines; add --token SECRET "
                         f"(for example --token {new_token()}) so only people with the link can open it, or leave "
                         "--host out to stay on 127.0.0.1")
    store = open_store_from_args(args, create=False)
    page = ""
    if args.run:
        from urllib.parse import quote

        page = "#/run/" + quote(store.get_run(args.run).id, safe="")
    try:
        serve(store, host=args.host, port=args.port, token=args.token or None, page=page)
    except KeyboardInterrupt:
        pass
    return 0
