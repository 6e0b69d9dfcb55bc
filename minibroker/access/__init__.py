"""Who a connection is and what it may do, shared by every front end.

- :mod:`~minibroker.access.auth`: tokens -> principals (the msgpack hello,
  AMQP's SASL, an HTTP bearer token all authenticate against the same table).
- :mod:`~minibroker.access.permissions`: per-principal grants of read, write
  and admin on queue, topic, log and subject names, and the msgpack
  protocol's table of what each of its operations needs. Another front end
  maps its own methods onto the same actions and kinds.

It sits below the front ends and above the core, and imports only the
shared error leaf.
"""
