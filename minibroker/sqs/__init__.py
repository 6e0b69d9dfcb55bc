"""The SQS front end: Amazon SQS's HTTP API (AWS JSON 1.0 and the query/XML
protocol) onto minibroker's own queues.

Sans-I/O like the msgpack protocol beside it: ``wire`` turns an HTTP
request's method, path, headers and body into an action and JSON-shaped
parameters and renders answers back; ``handler`` carries the actions out on
the queue core. The Trio/ASGI adapter that serves it is
``minibroker/server/sqs_app.py``. See docs/sqs.md.
"""
