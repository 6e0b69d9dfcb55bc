"""The msgpack front end, sans-I/O (in the style of h11): bytes in, bytes out.

The first of the broker's front ends; others (AMQP, Kafka, SQS, HTTP) sit
beside it as packages of their own and never import it. It turns frames
into plain-value calls on the core and the answers back into frames; the
Trio shell (:mod:`minibroker.server`) only moves its bytes. docs/protocol.md
documents the wire format.

- :mod:`~minibroker.protocol.frames`: every frame, one frame class each
  (:mod:`~minibroker.protocol.frame_class`: typed like frozen dataclasses,
  cheap to define)
- :mod:`~minibroker.protocol.schema`: maps to frames and back, checked
- :mod:`~minibroker.protocol.codec`: bytes to frames and back, limits checked
  first; every frame the server sends is built there
- :mod:`~minibroker.protocol.ops`: the op table (frame, decoder, handler,
  permission) and the push encoders: all the wiring, in one place
- :mod:`~minibroker.protocol.session`: one connection's protocol state
- :mod:`~minibroker.protocol.handlers`: one handler module per messaging model
- who the client is and what it may do: :mod:`minibroker.access`, shared
  with the other front ends
- :mod:`~minibroker.protocol.stats`: the counters the metrics read

The clients share the codec and the frames (not the session, auth or
permissions: ``make test`` checks it).
"""
