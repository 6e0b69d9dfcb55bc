"""The Python clients: Trio, asyncio, blocking, and in-process through Trio.

They speak only the protocol (the codec and frames of
:mod:`minibroker.protocol`, the record decoder of
:mod:`minibroker.record_format`, the errors of :mod:`minibroker.errors`);
they never import the core, storage, the server or its configuration
(``make test`` checks it), so a program that only talks to a broker loads
no broker.

- :mod:`~minibroker.client.protocol`: requests (``Call``), framing and events;
  :mod:`~minibroker.client.bodies`: bodies and the wire form of messages
- :mod:`~minibroker.client.connection`: one connection's state, sans-I/O
  (request ids, calls in flight, subscriptions, failure)
- :mod:`~minibroker.client.trio_client`, :mod:`~minibroker.client.aio`,
  :mod:`~minibroker.client.sync`: the three transports (socket, byte pump,
  one wake-up primitive each)
- :mod:`~minibroker.client.transport`, :mod:`~minibroker.client.api`: the
  methods, written once for every flavour (``sends``, ``opens``), in one table;
  :mod:`~minibroker.client.advice`: ``connect``'s options (``Dial``) and
  errors that say what to do
- :mod:`~minibroker.client.flavours`: the async and blocking sides, and
  waits written once for both (flows, ``waits``)
- :mod:`~minibroker.client.producer`: ordered, pipelined producers
- :mod:`~minibroker.client.queues`, :mod:`~minibroker.client.queue_wire`,
  :mod:`~minibroker.client.queue_consumer`, :mod:`~minibroker.client.topics`,
  :mod:`~minibroker.client.logs`, :mod:`~minibroker.client.rpc`: per model
- :mod:`~minibroker.client.pushes`: push frames to subscription items, and
  both sides' subscriptions (each its own ``with`` context)
- :mod:`~minibroker.client.url`: ``minibroker://`` URLs
"""
