"""``minibroker namespace drop NAME``: delete a namespace with everything in it.

    minibroker namespace drop test-42        # "dropped namespace 'test-42'"

The command connects to the default namespace (``--namespace`` picks
another): a connection cannot drop the namespace it is in.
"""

from __future__ import annotations

import argparse

from minibroker.cli.common import connection_options, guarded
from minibroker.client.sync import connect_sync


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "namespace",
        help="drop a namespace",
        description="Work with namespaces (isolated sets of names, one per test in a suite).",
    )
    sub = parser.add_subparsers(dest="namespace_command", metavar="ACTION", required=True)
    drop = sub.add_parser(
        "drop",
        help="delete a namespace and everything in it; its connections are closed",
        description="Delete namespace NAME with its queues, messages, logs, bindings, "
        "subscriptions and responders (durable files too), closing every connection in it.",
    )
    connection_options(drop)
    drop.add_argument("name", help="the namespace to drop")
    drop.set_defaults(run=lambda args: guarded(_run_drop, args))


def _run_drop(args: argparse.Namespace) -> int:
    with connect_sync(args.url, namespace=args.namespace, client_name="minibroker-cli") as mb:
        dropped = mb.drop_namespace(args.name)
    print(f"dropped namespace {args.name!r}" if dropped else f"no namespace {args.name!r}")
    return 0
