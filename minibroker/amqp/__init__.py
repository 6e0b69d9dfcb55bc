"""The AMQP 0-9-1 front end: RabbitMQ's clients (pika, aio-pika, kombu, Celery) on minibroker.

A second door onto the same core, beside the msgpack protocol:

* ``framing``: the byte stream cut into frames (pamqp decodes each one) and
  frames built for sending, with the negotiated ``frame_max`` enforced;
* ``connection``: one connection's sans-I/O state machine (``AmqpSession``):
  the handshake, heartbeats, channels, and every method mapped onto the core;
* ``channel``: one channel's consumers, delivery tags and publisher confirms,
  with ``transactions`` (Tx.Select: publishes and acks held until commit);
* ``vhost``: what AMQP keeps per namespace beside the core's own state
  (exchanges and their bindings, queue declarations, reply-to channels), with
  ``consumers`` (push delivery over the core's pull queues) and
  ``dead_letters`` (x-dead-letter-exchange, with ``deaths``: the x-death header);
* ``messages``: how an AMQP message (properties, exchange, routing key) is
  kept in a core message's headers and rebuilt from them.
* ``durable``: what a vhost keeps on disk (durable exchanges, bindings,
  queue declarations) in the namespace's state journal;
* ``permissions``: the native permissions file applied to AMQP methods.

An AMQP queue *is* a minibroker queue; a topic exchange routes through the
core's topic trie; the core never learns which door a message came through.
docs/amqp.md describes the supported surface and every difference from RabbitMQ.
"""
