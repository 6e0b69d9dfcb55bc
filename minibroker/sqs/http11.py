"""HTTP/1.1 for the SQS endpoint, sans-I/O: bytes in, requests out; answers to bytes.

The parsing is httptools (llhttp, the parser of Node.js, as uvicorn uses
it): about 8 µs per SQS request here, where a pure-Python parser (h11, under
hypercorn) cost more than the native port's whole request. This module adds
what llhttp leaves to its caller, so that no client can make the broker
hold unbounded memory:

* request line and headers: at most ``max_header_bytes`` (431 beyond),
  counted as bytes while they are incomplete (so llhttp never buffers a huge
  one) and, once complete, as parsed if the read that completed them was
  big enough to hold too many (headers that arrive whole in one read);
* the body: at most ``max_body_bytes`` (413). A body over the limit is read
  and dropped as it comes (nothing is kept), so a client that sends it in
  full still gets its answer instead of a reset; the request deadline
  (the session's) bounds how long that may take;
* every complete request is one ``HttpRequest``; pipelined requests queue in
  ``requests``, in order.

Anything llhttp refuses (a malformed request line, a bad Content-Length,
both Content-Length and Transfer-Encoding, an upgrade) is an ``HttpError``:
the session answers it and closes the connection, since the rest of the
stream can no longer be framed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import httptools

#: Reason phrases of the statuses this endpoint answers with.
REASONS: Final = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The headers anything here reads (the rest stay in ``raw_headers`` only):
#: decoding a dozen headers per request was a measurable share of its cost.
USED_HEADERS: Final = frozenset(
    {
        b"authorization",
        b"content-length",
        b"content-type",
        b"expect",
        b"host",
        b"user-agent",
        b"x-amz-target",
    }
)


class HttpError(Exception):
    """A request refused at the HTTP level; the connection closes after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class HttpRequest:
    method: str
    #: The path as sent (still percent-encoded), and the query string.
    path: bytes
    query: bytes
    #: The ``USED_HEADERS``, lower-case names; a repeated one's values joined with ",".
    headers: dict[str, str]
    #: The headers as they came (names as sent): Signature V4 is checked on them.
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    #: The body was over the limit (and dropped): answer 413.
    too_large: bool = False


class RequestReader:
    """Feeds bytes to llhttp and collects complete requests (``requests``)."""

    def __init__(self, *, max_header_bytes: int, max_body_bytes: int) -> None:
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self.requests: deque[HttpRequest] = deque()
        #: True from a request's first byte until it is complete.
        self.in_request = False
        #: True between a request's headers and its end.
        self.in_body = False
        #: The declared Content-Length of the body now arriving (0 if none or chunked).
        self.declared_length = 0
        #: The request whose headers just completed asked for ``100 Continue``.
        self.expects_continue = False
        self._header_bytes = 0
        #: Bytes of the read being parsed (an upper bound of any request's headers in it).
        self._read_bytes = 0
        self._url: list[bytes] = []
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._too_large = False
        self._headers: dict[str, str] = {}

    def feed(self, data: bytes | bytearray) -> None:
        """Parse ``data``; complete requests are appended to ``requests``. HttpError
        for a request that cannot be read (the stream is unusable after it)."""
        self._read_bytes = len(data)
        if not self.in_body:
            # Bytes of a request line and headers in progress: bounded before llhttp
            # buffers a huge header value (at most one read past the limit).
            self._header_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise HttpError(400, "Protocol upgrades are not supported.") from None
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, HttpError):  # on_headers_complete's 431
                raise exc.__context__ from None
            raise HttpError(400, f"Malformed HTTP request: {exc}.") from None
        if self.in_request and not self.in_body and self._header_bytes > self._max_header_bytes:
            raise HttpError(431, "The request line and headers are too large.")

    # ----------------------------------------------------- llhttp callbacks

    def on_message_begin(self) -> None:
        self.in_request = True
        self._url = []
        self._raw_headers = []

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        limit = self._max_header_bytes
        if self._header_bytes > limit or self._read_bytes > limit:
            # Headers that came complete in one read, which ``feed`` does not
            # check: count them as parsed (only when the reads could hold too many).
            size = sum(map(len, self._url)) + sum(len(n) + len(v) + 4 for n, v in self._raw_headers)
            if size > limit:
                raise HttpError(431, "The request line and headers are too large.")
        self.in_body = True
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw_headers:
            lowered = raw_name.lower()
            if lowered in USED_HEADERS:
                name = lowered.decode("ascii")
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]},{value}" if name in headers else value
        self._headers = headers
        length = headers.get("content-length")
        self.declared_length = int(length) if length is not None and length.isdigit() else 0
        self._too_large = self.declared_length > self._max_body_bytes
        self.expects_continue = headers.get("expect", "").lower() == "100-continue"

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body_bytes:
            self._too_large = True
        if not self._too_large:
            self._body.append(body)

    def on_message_complete(self) -> None:
        url = b"".join(self._url)
        path, _, query = url.partition(b"?")
        if not path.startswith(b"/"):
            # The absolute form (``http://host/path``), as sent to proxies.
            parsed = httptools.parse_url(url)
            path, query = parsed.path or b"/", parsed.query or b""
        self.requests.append(
            HttpRequest(
                self._parser.get_method().decode("ascii"),
                path,
                query,
                self._headers,
                self._raw_headers,
                b"" if self._too_large else b"".join(self._body),
                self._parser.should_keep_alive(),
                self._too_large,
            )
        )
        self._body = []
        self.in_request = self.in_body = False
        self.declared_length = 0
        self.expects_continue = False
        self._header_bytes = 0


def response(
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    close: bool = False,
) -> bytes:
    """A whole response, ready to send (Content-Length set; no chunked encoding)."""
    lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Unknown"))]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"content-length: %d" % len(body))
    if close:
        lines.append(b"connection: close")
    lines.append(b"\r\n")
    return b"\r\n".join(lines) + body
