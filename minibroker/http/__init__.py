"""The HTTP front end, sans-I/O: a JSON API onto the same core.

- :mod:`~minibroker.http.fields`: the typed request fields every operation
  reads, one description that both validates a JSON body and writes its
  schema into the OpenAPI document (so the two cannot drift apart);
- :mod:`~minibroker.http.operations`: the operations (put, fetch, ack,
  publish, append, read, request ...) carried out on a core namespace,
  plain JSON values in and out; ``HttpPeer`` is the core's ``Peer`` port
  for the whole HTTP face;
- :mod:`~minibroker.http.statuses`: wire error codes -> HTTP statuses;
- :mod:`~minibroker.http.openapi`: the OpenAPI 3.1 document.

The Trio adapter (routing, bodies, auth header, waiting for parked
operations and group commit) is ``minibroker/server/http_app.py``.
See docs/http.md.
"""
