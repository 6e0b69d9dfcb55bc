"""The broker core: every model's state and rules, sans-I/O.

Plain Python objects with synchronous methods. Nothing here reads a clock
(time comes in as ``now``), touches a socket, imports Trio or msgpack, or
names a concrete store: the shell passes its storage in (``Broker(storage=...,
memory_log=...)``), and ``make test`` checks all of this (lint-imports, and
tests/test_layers.py at run time). Front ends call in with plain values; the
core answers with plain values, calls the ``Peer`` of the connections
involved, and arms deadlines in ``Timers``.

- :mod:`~minibroker.core.broker`: ``Broker``, the namespaces, storage
- :mod:`~minibroker.core.durability`: the fsync policy, the write generation and
  the confirmations waiting for a sync (:mod:`~minibroker.core.histogram`: its fsync times)
- :mod:`~minibroker.core.namespace`: one isolated set of models; the storage ports
- :mod:`~minibroker.core.peer`: the ``Peer`` port a connection offers the core
- :mod:`~minibroker.core.timers`: the deadline heap the shell's timer task drives
- :mod:`~minibroker.core.config`: ``Limits`` and ``CoreConfig``
- :mod:`~minibroker.core.names`, :mod:`~minibroker.core.sizes`: name rules, batch budgets
- queues: :mod:`~minibroker.core.queues`, :mod:`~minibroker.core.queue_message`,
  :mod:`~minibroker.core.queue_options`, :mod:`~minibroker.core.queue_journal`
- topics: :mod:`~minibroker.core.topics`, :mod:`~minibroker.core.trie`,
  :mod:`~minibroker.core.binding_journal`
- logs: :mod:`~minibroker.core.logs`, :mod:`~minibroker.core.log_readers`,
  :mod:`~minibroker.core.log_options`, :mod:`~minibroker.core.log_meta`
- request/reply: :mod:`~minibroker.core.rpc`, :mod:`~minibroker.core.rpc_stats`
- front ends' own durable state: :mod:`~minibroker.core.state_journal`

Errors come from the leaf :mod:`minibroker.errors`, the store interface from
the leaf :mod:`minibroker.log_store`. See docs/internals.md.
"""
