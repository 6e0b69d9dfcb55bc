"""The blocking client: ``with minibroker.connect_sync(url) as mb``, no ``await``.

For scripts, threads, WSGI apps and test suites that are not async: the
same methods and errors as the Trio client. How it works, and why:

* **one thread at a time reads the socket.** A call that finds nobody
  reading and no subscription open reads its own answer on the calling
  thread: one wake-up per call, the caller's, instead of the reader
  thread's plus its hand-over (docs/internals.md, "Latency"). Otherwise the
  **reader thread** reads, hands each reply to the lock its caller is
  blocked on (a pre-acquired lock the reader releases: the cheapest
  one-shot wake-up in CPython) and each push to its subscription; it parks
  when nothing waits. A callback subscription's callback runs on whichever
  thread reads, so a blocking call from it raises ``RuntimeError`` instead
  of waiting for itself;
* **any number of threads may call at once**: a caller encodes its request
  and appends it to an outbox under one short lock; whoever finds nobody
  sending sends the whole outbox with one ``sendall`` (flat combining), so
  under contention many requests leave in one syscall;
* **timeouts**: a call waits at most the client's ``timeout`` plus the
  server-side wait the request asks for (its ``wait`` or ``timeout``), then
  raises ``CallTimeout`` (a ``minibroker.Timeout`` and a ``TimeoutError``)
  and its late answer is discarded. A lost connection fails every call at once;
* **TLS** runs OpenSSL over memory BIOs (``ssl.SSLObject``) under the
  outbox lock, because an ``SSLSocket`` must not be read and written from
  two threads at once; the lock that orders the outbox keeps TLS records in order.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, Unpack

import sniffio

from minibroker.client.advice import (
    DEFAULT_URL,
    ConnectOptions,
    Dial,
    refuse_blocking_on_trio,
)
from minibroker.client.api import SyncMethods
from minibroker.client.connection import Connection, PostedCall, SyncPendingCall
from minibroker.client.protocol import CLOSED_BY_BROKER, Call, connection_lost
from minibroker.client.pushes import DEFAULT_MAX_PENDING, BlockingSubscription
from minibroker.errors import BrokerError, ConnectionClosed, Timeout

log = logging.getLogger("minibroker.client")

T = TypeVar("T")

#: Default seconds a call waits for its answer (on top of any server-side wait).
DEFAULT_TIMEOUT = 30.0
READ_CHUNK = 65536
#: Longest single ``poll`` (milliseconds, its C int); longer waits poll again.
MAX_POLL_MS = 2**31 - 1

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_TIMEOUT",
    "CallTimeout",
    "Client",
    "Subscription",
    "connect_sync",
]


class CallTimeout(Timeout, TimeoutError):
    """A blocking call got no answer within its timeout (client side).

    Catch it as ``minibroker.Timeout`` or as the built-in ``TimeoutError``.
    The connection stays usable; a late answer is discarded.
    """


class _Use:
    """Sentinel: use the client's default timeout."""


USE_DEFAULT: Any = _Use()


def server_wait(call: Call[Any]) -> float:
    """Seconds the broker may legitimately hold ``call`` before answering.

    Long polls carry ``wait`` (fetch, read) and request/reply carries
    ``timeout``; a client-side timeout must not fire before those.
    """
    extra = 0.0
    for key in ("wait", "timeout"):
        value = call.fields.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            extra += float(value)
    return extra


class _BlockingCall(SyncPendingCall[T]):
    """A call whose caller blocks on a lock the reader thread releases (the
    cheapest one-shot wake-up in CPython).

    ``wait`` blocks up to ``timeout`` (the client's, plus the request's own
    server-side wait); past it the call is done with ``CallTimeout`` and a
    late answer is discarded. Settling and abandoning agree under ``_guard``
    (see ``PendingCall``), as the reader answers on its own thread.
    """

    __slots__ = ("_guard", "_lock", "op", "timeout")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._guard = threading.Lock()
        self._lock = threading.Lock()
        self._lock.acquire()
        self.op = ""
        self.timeout: float | None = None

    def _wake(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        if self.done or self._lock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            return
        if not self._time_out():
            self._lock.acquire()  # the reader is settling it right now: let it finish

    def _time_out(self) -> bool:
        """The wait is over: done with ``CallTimeout`` unless an answer won the race.
        Returns True if it timed out."""
        with self._guard:
            timed_out = not self.done
            if timed_out:
                self.error = CallTimeout(
                    f"no answer to {self.op!r} within {self.timeout:g} seconds"
                )
                self.done = True
        if timed_out:
            self._give_up()
        return timed_out


class _TLS:
    """OpenSSL over memory buffers: the caller moves ciphertext to and from the socket."""

    def __init__(self, context: ssl.SSLContext, hostname: str) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_hostname=hostname)

    def handshake(self, sock: socket.socket) -> None:
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            pending = self._outgoing.read()
            if pending:
                sock.sendall(pending)
            data = sock.recv(READ_CHUNK)
            if not data:
                raise ConnectionClosed("the broker closed the connection in the TLS handshake")
            self._incoming.write(data)
        pending = self._outgoing.read()
        if pending:
            sock.sendall(pending)

    def encrypt(self, data: bytes) -> bytes:
        view = memoryview(data)
        while view:
            written = self._obj.write(view)
            view = view[written:]
        return self._outgoing.read()

    def decrypt(self, data: bytes) -> tuple[bytes, bytes]:
        """Plaintext from ``data``, plus any ciphertext OpenSSL wants to send back."""
        self._incoming.write(data)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._obj.read(READ_CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), self._outgoing.read()


#: A live push subscription: ``for item in sub`` (see ``BlockingSubscription``).
Subscription = BlockingSubscription


class Client(SyncMethods):
    """A connection to a broker from blocking code. Use ``minibroker.connect_sync``.

    Safe to share between threads. Every method of the Trio client is here
    with the same name and arguments, minus the ``await``.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_pending: int | None = None,
        tls: _TLS | None = None,
    ) -> None:
        self._sock = sock
        self._tls = tls
        #: Default seconds a call waits for its answer; None waits forever.
        self.timeout = timeout
        self._conn = Connection()
        self._lock = threading.Lock()
        self._outbox: list[bytes] = []
        self._sending = False
        self._max_pending = max_pending
        self.server_info: dict[str, Any] = {}
        self._reader = threading.Thread(
            target=self._read_loop, name="minibroker-client-reader", daemon=True
        )
        #: The thread that reads the socket now (the reader thread, or a caller
        #: reading its own answer); None while nobody needs to. Under ``_lock``.
        self._reading: threading.Thread | None = None
        #: Released to hand the reader thread the reading role; it parks on it.
        self._turn = threading.Lock()
        self._turn.acquire()
        #: Where a caller reading directly waits for input, up to its timeout.
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        if tls is not None:
            self._give_reader_the_turn()  # TLS records are decrypted by the reader alone
        self._reader.start()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_timeout(self, timeout: float | None) -> SyncMethods:
        """A view of this client whose calls wait up to ``timeout`` (None: forever).

            mb.with_timeout(120).put_many("jobs", huge_batch)
        """
        return _TimeoutView(self, timeout)

    # -------------------------------------------------------- the transport

    def _call(
        self,
        call: Call[T],
        *,
        timeout: Any = USE_DEFAULT,
        on_reply: Callable[[Any], None] | None = None,
    ) -> T:
        # A call with a hook starts a subscription: its pushes belong to the reader thread.
        [pending] = self._submit([call], timeout, on_reply, read_directly=on_reply is None)
        pending.wait()  # at once when it read its own answer
        result: T = pending.outcome()
        return result

    def _call_many(self, calls: list[Call[Any]], *, timeout: Any = USE_DEFAULT) -> list[Any]:
        """Pipeline ``calls`` from one thread: one send for all, then wait for
        every answer. Returns the results in order; raises the first error
        (after every answer is in, so none is left behind)."""
        pendings = self._submit(calls, timeout)
        results: list[Any] = []
        first_error: BaseException | None = None
        for pending in pendings:
            pending.wait()
            try:
                results.append(pending.outcome())
            except BrokerError as exc:
                first_error = first_error or exc
                results.append(None)
        if first_error is not None:
            raise first_error
        return results

    def _begin(
        self,
        call: Call[T],
        *,
        timeout: Any = USE_DEFAULT,
        on_reply: Callable[[Any], None] | None = None,
    ) -> _BlockingCall[T]:
        """Send ``call`` without waiting for its answer; collect it later."""
        return self._submit([call], timeout, on_reply)[0]

    def _submit(
        self,
        calls: list[Call[Any]],
        timeout: Any,
        on_reply: Callable[[Any], None] | None = None,
        read_directly: bool = False,
    ) -> list[_BlockingCall[Any]]:
        """Register ``calls`` and send them (or leave them to the thread already sending).

        Someone must then read the answers: with ``read_directly``, the calling
        thread takes the reading role if nobody holds it (``_read_until``),
        else the reader thread is handed the role if it is parked.
        """
        if self._on_reader_thread():
            raise RuntimeError(
                "a blocking call from a subscription callback would wait for the reader "
                "thread it runs on; hand the work to another thread instead"
            )
        if sniffio.thread_local.name == "trio":  # one attribute read: cheap enough per call
            refuse_blocking_on_trio(f"the blocking client's {calls[0].op!r}")
        if timeout is USE_DEFAULT:
            timeout = self.timeout
        pendings: list[_BlockingCall[Any]] = []
        frames: list[bytes] = []
        me = threading.current_thread()
        reading = False
        # From claiming the reading role to giving it up, all in one try: an
        # interrupt anywhere in between must not leave the role held.
        try:
            with self._lock:
                try:
                    for call in calls:
                        pending, data = self._conn.begin(call, _BlockingCall, on_reply)
                        pending.op = call.op
                        pending.timeout = None if timeout is None else timeout + server_wait(call)
                        pendings.append(pending)
                        frames.append(data)
                except BaseException:
                    # One too large: none of the others may wait for an answer to an unsent frame.
                    for pending in pendings:
                        self._conn.pending.pop(pending.request_id, None)
                    raise
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                self._outbox.append(data if self._tls is None else self._tls.encrypt(data))
                reading = read_directly and self._reading is None and not self._conn.subscriptions
                if reading:
                    self._reading = me
                else:
                    self._give_reader_the_turn()
            self._flush()
            if reading:
                self._read_until(pendings[0])
        finally:
            if reading and self._reading is me:
                self._stop_reading()
        return pendings

    def _post(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for its answer (replies, acks, cleanup).

        Its answer is still read (a ``PostedCall`` stays in the pending table
        until it comes, so the reader thread reads on): answers nobody reads
        would fill the socket and, with the broker's output budget, finally
        stop the broker reading this connection. A quiet call (a reply sent
        without ``confirm``) gets no answer unless it failed: nothing waits.
        """
        with self._lock:
            if self._conn.closed is not None:
                return
            if call.quiet:  # answered only with an error: nothing to wait for
                data = self._conn.protocol.encode(call)[1]
            else:
                data = self._conn.begin(call, PostedCall)[1]
                self._give_reader_the_turn()
            self._outbox.append(data if self._tls is None else self._tls.encrypt(data))
        if self._on_reader_thread():
            # The reader must never block in sendall (the broker may be
            # waiting for us to read); let a helper thread send it.
            threading.Thread(target=self._flush, daemon=True).start()
        else:
            self._flush()

    def _flush(self) -> None:
        """Send the outbox unless another thread is already doing so (it will)."""
        lock = self._lock
        with lock:
            if self._sending or not self._outbox:
                return
            self._sending = True
        try:
            while True:
                with lock:
                    outbox = self._outbox
                    if not outbox:
                        self._sending = False
                        return
                    data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                    outbox.clear()
                self._sock.sendall(data)
        except OSError as exc:
            with lock:
                self._sending = False
                self._outbox.clear()
            self._fail(connection_lost(str(exc) or type(exc).__name__))
        except BaseException as exc:
            # Interrupted in the middle of a send (KeyboardInterrupt, a signal
            # handler's exception): part of a frame may be on the wire, so the
            # byte stream cannot go on. End the connection, so other threads'
            # calls fail with ConnectionClosed instead of waiting for answers
            # to frames nobody will ever send, and let the interrupt through.
            with lock:
                self._sending = False
                self._outbox.clear()
            self._fail(connection_lost(f"a send was interrupted ({type(exc).__name__})"))
            raise

    def _on_reader_thread(self) -> bool:
        """True on the thread dispatching what the socket delivers (where pushes
        and hooks run): the reader thread, or a caller reading its own answer."""
        thread = threading.current_thread()
        return thread is self._reader or thread is self._reading

    # ----------------------------------------------------------- the readers
    #
    # One thread at a time reads the socket: it holds the reading role
    # (``_reading``). A blocking call that finds nobody reading, and no
    # subscription that pushes could arrive for, takes the role and reads its
    # own answer (``_read_until``): one wake-up, the caller's, instead of the
    # reader thread's plus a hand-over to the caller (docs/internals.md). When
    # it has its answer it hands the role to the reader thread if anything
    # else still waits (other calls, subscriptions). The reader thread reads
    # while anything waits and parks when nothing does.

    def _give_reader_the_turn(self) -> None:
        """Under ``_lock``: wake the reader thread to read, unless someone reads."""
        if self._reading is None:
            self._reading = self._reader
            self._turn.release()

    def _stop_reading(self) -> None:
        """A caller reading directly is done: hand over if anything else waits."""
        with self._lock:
            self._reading = None
            conn = self._conn
            if conn.pending or conn.subscriptions or conn.closed is not None:
                self._give_reader_the_turn()

    def _read_until(self, pending: _BlockingCall[Any]) -> None:
        """Holding the reading role: read and dispatch until ``pending`` is
        answered, its timeout passes or the connection ends (the caller then
        gives the role up)."""
        deadline = None if pending.timeout is None else time.monotonic() + pending.timeout
        while not pending.done:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    pending._time_out()
                    return
                if not self._poll.poll(min(left * 1000, MAX_POLL_MS)):
                    continue
            if not self._receive():
                return

    def _receive(self) -> bool:
        """Read one chunk and dispatch it; False once the connection has ended.

        An interrupt (Ctrl-C) while waiting for the chunk loses nothing and
        reaches the caller reading directly; one while dispatching it may
        leave a chunk half dispatched, so the connection ends first.
        """
        try:
            data = self._sock.recv(READ_CHUNK)
            if not data:
                self._fail(connection_lost(CLOSED_BY_BROKER))
                return False
        except OSError as exc:
            self._fail(connection_lost(str(exc) or type(exc).__name__))
            return False
        try:
            if self._tls is not None:
                data = self._decrypt(data)
            self._conn.receive_data(data)
        except BrokerError as exc:  # undecodable data from the server
            self._fail(exc)
            return False
        except BaseException as exc:  # a bug (or an interrupt) must not leave callers hanging
            self._fail(connection_lost(f"client reader failed: {exc!r}"))
            if threading.current_thread() is not self._reader:
                raise
            log.exception("minibroker client reader failed")
            return False
        return True

    def _read_loop(self) -> None:
        conn = self._conn
        while True:
            self._turn.acquire()  # parked until handed the reading role
            while True:
                with self._lock:
                    if conn.closed is not None:
                        return
                    if self._tls is None and not conn.pending and not conn.subscriptions:
                        self._reading = None  # nothing waits: park
                        break
                if not self._receive():
                    return

    def _decrypt(self, data: bytes) -> bytes:
        assert self._tls is not None
        with self._lock:
            plain, reply = self._tls.decrypt(data)
            if reply:
                self._outbox.append(reply)
        if reply:
            threading.Thread(target=self._flush, daemon=True).start()
        return plain

    def _fail(self, error: BaseException) -> None:
        """Fail every pending call and end every subscription with ``error``."""
        with self._lock:  # a call registering now either sees it closed or gets failed
            if self._conn.closed is None:
                self._conn.closed = error
            self._give_reader_the_turn()  # a parked reader thread wakes and ends
        self._conn.fail(error)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection: pending calls fail, subscriptions end. Idempotent."""
        for subscription in list(self._conn.subscriptions.values()):
            subscription._end(StopIteration())
        self._fail(ConnectionClosed("the client was closed"))
        if not self._on_reader_thread():
            self._reader.join(timeout=10)
        self._sock.close()


class _TimeoutView(SyncMethods):
    """The same connection with another default timeout (see ``Client.with_timeout``)."""

    def __init__(self, client: Client, timeout: float | None) -> None:
        self._client = client
        self._conn = client._conn
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        # closed, server_info, close() ... are the connection's own.
        return getattr(self._client, name)

    def _call(self, call: Call[T]) -> T:
        return self._client._call(call, timeout=self._timeout)

    def _begin(self, call: Call[T]) -> _BlockingCall[T]:
        return self._client._begin(call, timeout=self._timeout)

    def _post(self, call: Call[Any]) -> None:
        self._client._post(call)

    def _subscription(self, *args: Any) -> Any:
        return self._client._subscription(*args)


def connect_sync(
    url: str = DEFAULT_URL,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    connect_timeout: float | None = None,
    **options: Unpack[ConnectOptions],
) -> Client:
    """Connect to a broker over TCP (TLS with ``minibrokers://`` or an
    ``ssl_context``), say hello, and return a blocking client; ``options``:
    see ``ConnectOptions``.

        with minibroker.connect_sync("minibroker://127.0.0.1:7878") as mb:
            mb.ping()

    ``timeout`` is the default wait for each call's answer (None: forever);
    ``connect_timeout`` bounds connecting and the handshake (default:
    ``timeout``). Raises ``Unauthorized`` or ``UnsupportedVersion`` if the
    broker refuses the hello, ``OSError`` if it cannot be reached.
    """
    refuse_blocking_on_trio("minibroker.connect_sync")
    dial = Dial.of(url, options, "minibroker-sync")
    address = dial.address
    if connect_timeout is None:
        connect_timeout = timeout
    with dial.connecting():
        sock = socket.create_connection((address.host, address.port), timeout=connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls: _TLS | None = None
        if dial.ssl_context is not None:
            tls = _TLS(dial.ssl_context, address.host)
            tls.handshake(sock)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    client = Client(sock, timeout=timeout, max_pending=dial.max_pending, tls=tls)
    try:
        with dial.greeting():
            client.server_info = client._call(dial.hello(), timeout=connect_timeout)
    except BaseException:
        client.close()
        raise
    return client
