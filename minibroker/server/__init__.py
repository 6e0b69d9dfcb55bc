"""The Trio shell: moves bytes, sleeps until deadlines, syncs; decides nothing.

It owns the only I/O of the broker: listeners and connections, the timer
task, group commit, the data directory and the metrics endpoint. Broker
decisions are the core's (:mod:`minibroker.core`), wire decisions the front
ends' (:mod:`minibroker.protocol`). It hands the core its storage.

- :mod:`~minibroker.server.app`: ``BrokerServer``: listeners, tasks, shutdown
- :mod:`~minibroker.server.connection`: a connection's reader and writer tasks
- :mod:`~minibroker.server.memory_stream`: the stream of in-process clients
- :mod:`~minibroker.server.timers`: the task that fires the core's deadlines
- :mod:`~minibroker.server.busy_poll`: optional polling after input, for latency
- :mod:`~minibroker.server.durability`: group commit: when to sync the core's durability
- :mod:`~minibroker.server.datadir`: the ``--data-dir`` layout (the StorageOpener)
- :mod:`~minibroker.server.metrics` and ``*_metrics``: Prometheus, read at scrape time
"""
