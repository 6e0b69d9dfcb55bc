"""The client subcommands of each model, in the order ``--help`` lists them."""

from __future__ import annotations

from types import ModuleType

from minibroker.cli import logs, namespaces, queues, rpc, topics, trace

MODULES: list[ModuleType] = [queues, rpc, topics, logs, namespaces, trace]
