"""The SQS front end: Amazon SQS's HTTP API (AWS JSON 1.0 and the query/XML
protocol) onto minibroker's own queues.

Sans-I/O like the msgpack protocol beside it: ``wire`` turns an HTTP
request's method, path, headers and body into an action and JSON-shaped
parameters and renders answers back; ``handler`` carries the actions out on
the queue core; ``session`` is one connection's HTTP/1.1 state (bytes in,
bytes out), driven by the server's shell like the other front ends'
sessions (``minibroker/server/sqs_app.py`` adds the port). See docs/sqs.md.
"""
