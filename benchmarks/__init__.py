"""The minibroker benchmark harness.

Runs the same workloads (W1 queue, W2 fan-out, W3 log, W4 request/reply,
W5 start-up) against minibroker and, when they are reachable on 127.0.0.1,
RabbitMQ, a Kafka-protocol broker (tansu) and NATS, each through its
best-regarded Python client. Producers and consumers run in separate
processes, every message is counted and checksummed, and a run that loses or
corrupts a message is reported as FAILED, never as a speed.

Run it with ``python -m benchmarks --help``.
"""
