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
  when nothing waits. The worker threads of a blocking ``serve`` read for
  themselves the same way (``Client._next_request``): the worker that reads
  a request runs its handler, with no hand-over in between. A callback
  subscription's callback runs on whichever thread reads, so a blocking
  call from it raises ``RuntimeError`` instead of waiting for itself;
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
from typing import Any, TypeVar, Unpack

import sniffio

from minibroker.client.advice import (
    DEFAULT_URL,
    ConnectOptions,
    Dial,
    refuse_blocking_on_trio,
)
from minibroker.client.api import SyncMethods
from minibroker.client.connection import Connection, Hook, PostedCall, SyncPendingCall
from minibroker.client.protocol import CLOSED_BY_BROKER, Call, connection_lost
from minibroker.client.pushes import (
    DEFAULT_MAX_PENDING,
    BlockingSubscription,
    SubscriptionEnded,
)
from minibroker.errors import BrokerError, ConnectionClosed, Timeout

log = logging.getLogger("minibroker.client")

T = TypeVar("T")

#: Default seconds a call waits for its answer (on top of any server-side wait).
DEFAULT_TIMEOUT = 30.0
READ_CHUNK = 65536
#: Longest single ``poll`` (milliseconds, its C int); longer waits poll again.
MAX_POLL_MS = 2**31 - 1
#: A blocking ``serve`` worker whose last handler took less than this keeps
#: the reading role for its next handler (see ``Client._next_request``) ...
FAST_HANDLER_SECONDS = 0.00025
#: ... and loses it to a watching worker once that handler runs this long:
#: the most a request arriving meanwhile waits before it is read.
LEND_SECONDS = 0.002
#: What ``Client._wait_for_turn`` returns when the caller got the reading role.
_READ: Any = object()

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
        self._conn = Connection(post=self._post)
        self._lock = threading.Lock()
        self._outbox: list[bytes] = []
        self._sending = False
        self._max_pending = max_pending
        self.server_info: dict[str, Any] = {}
        self._reader = threading.Thread(
            target=self._read_loop, name="minibroker-client-reader", daemon=True
        )
        #: The thread that reads the socket now (the reader thread, a caller
        #: reading its own answer, a serve worker), or the served subscription
        #: whose idle workers were offered the role (``_offer``); None while
        #: nobody needs to. Under ``_lock``.
        self._reading: threading.Thread | BlockingSubscription[Any] | None = None
        #: Released to hand the reader thread the reading role; it parks on it.
        self._turn = threading.Lock()
        self._turn.acquire()
        #: Subscriptions a blocking ``serve`` takes requests from with worker
        #: threads that read the socket themselves (``_next_request``).
        self._served: set[BlockingSubscription[Any]] = set()
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
        self, call: Call[T], *, timeout: Any = USE_DEFAULT, on_reply: Hook | None = None
    ) -> T:
        # A call with a hook starts a subscription: its pushes belong to the reader thread.
        [pending] = self._submit([call], timeout, on_reply, read_directly=on_reply is None)
        try:
            pending.wait()  # at once when it read its own answer
        except BaseException:  # Ctrl-C: the call is given up (a request withdrawn)
            if not pending.done:
                pending._give_up()
            raise
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
        self, call: Call[T], *, timeout: Any = USE_DEFAULT, on_reply: Hook | None = None
    ) -> _BlockingCall[T]:
        """Send ``call`` without waiting for its answer; collect it later."""
        return self._submit([call], timeout, on_reply)[0]

    def _submit(
        self,
        calls: list[Call[Any]],
        timeout: Any,
        on_reply: Hook | None = None,
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
                try:
                    self._read_until(pendings[0])
                except BaseException:  # Ctrl-C while reading: as in ``_call``, once
                    # the role is given up (so the withdrawal is sent from here).
                    self._release(me)
                    if not pendings[0].done:
                        pendings[0]._give_up()
                    raise
        finally:
            if reading:
                self._release(me)
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
        except BaseException as exc:
            # An OSError: the connection broke. Anything else interrupted a send
            # midway (KeyboardInterrupt, a signal handler's exception): part of
            # a frame may be on the wire, so the byte stream cannot go on
            # either. End the connection, so other threads' calls fail with
            # ConnectionClosed instead of waiting for answers to frames nobody
            # will ever send, and let the interrupt through.
            with lock:
                self._sending = False
                self._outbox.clear()
            name = type(exc).__name__
            broken = isinstance(exc, OSError)
            reason = (str(exc) or name) if broken else f"a send was interrupted ({name})"
            self._fail(connection_lost(reason))
            if not broken:
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
        """Under ``_lock``: wake the reader thread to read, unless someone reads.

        A role lent to a serve worker running a handler (see ``_next_request``)
        counts as nobody reading: a call that handler makes must be answered.
        """
        holder = self._reading
        if holder is None or (isinstance(holder, BlockingSubscription) and not holder._offered):
            self._reading = self._reader
            self._turn.release()

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
                if self._served and self._offer_to_workers():
                    break  # a serve worker reads now: park

    # ------------------------------------------ serve workers read themselves
    #
    # A blocking ``serve`` runs handlers on worker threads, never on the
    # reader thread: a handler may call this client, and a slow one must not
    # stop the other requests and answers. Passing each request from the
    # reader thread to a worker cost a thread wake-up and a GIL hand-over on
    # every request's critical path (docs/internals.md, "Latency"). So the
    # workers read themselves (leader/followers): an idle worker takes the
    # reading role, and when what it reads gives its subscription a request
    # it runs the handler itself:
    #
    # * when the last handlers were quick, it *lends* the role: nobody reads
    #   while its handler runs, and it takes the role back afterwards, so a
    #   sequential request costs this process one wake-up. One idle worker
    #   watches (a timed wait, only while requests keep coming): a handler
    #   still running after ``LEND_SECONDS`` loses the role to the watcher,
    #   and a call the handler makes on this client hands it to the reader
    #   thread at once;
    # * otherwise it *offers* the role to an idle worker (one wake-up, while
    #   the handler runs), or to the reader thread when none is idle.

    def _next_request(self, sub: BlockingSubscription[T], handled: float = 0.0) -> T | None:
        """A serve worker's next request of ``sub``, read from the socket by this
        thread when nobody else reads; None once the subscription ended.
        ``handled``: seconds this worker's previous handler took (0: none)."""
        me = threading.current_thread()
        cond = sub._cond
        self._served.add(sub)
        while True:
            with cond:
                if handled:
                    sub._fast = handled < FAST_HANDLER_SECONDS
                    handled = 0.0
                if sub._lender is me:  # back from a handler: take the role back
                    sub._lender = None
                    if not sub._offered:
                        self._pass_role(sub, me)
                if self._reading is not me:
                    taken = self._wait_for_turn(sub, me)
            if self._reading is not me:
                if taken is None:
                    return None
                item, resume = taken
                if resume:
                    sub._resume()
                return item
            # Holding the reading role: read until a request is ours.
            sub._leader = True
            try:
                self._read_for(sub)
            except BaseException:
                sub._leader = False
                self._release(me)
                raise
            sub._leader = False
            with cond:
                got = bool(sub._items)
                if got:
                    item = sub._items.popleft()
                    resume = sub._paused and sub._consumed()
                    # Keep the role for a quick handler when a worker is idle to watch.
                    if sub._fast and sub._idle and self._pass_role(me, sub):
                        sub._lent_at = time.monotonic()
                        sub._lender = me
                        sub._lends += 1
                        if not sub._watched:
                            cond.notify()  # an idle worker starts watching
            if not got or sub._lender is not me:
                self._release(me)
            if got:
                if resume:
                    sub._resume()
                return item

    def _wait_for_turn(
        self, sub: BlockingSubscription[T], me: threading.Thread
    ) -> tuple[T, bool] | None:
        """Under ``sub._cond``: wait for an item (returned, with whether to
        resume the subscription), the end (None, or the error raised) or the
        reading role (then ``me`` holds it)."""
        cond = sub._cond
        while True:
            if sub._offered:  # the role was handed to us workers
                sub._offered = False
                if self._pass_role(sub, me):
                    return None
            if sub._items:
                item = sub._items.popleft()
                return item, sub._paused and sub._consumed()
            if sub._ended is not None:
                self._stop_serving(sub)
                ended = sub._ended
                if isinstance(ended, SubscriptionEnded | StopIteration):
                    return None
                raise ended
            if self._tls is None and self._pass_role(None, me):
                return None
            lent = self._reading is sub and not sub._offered
            if lent and not sub._watched:
                if self._watch(sub, me):
                    return None
                continue
            sub._idle += 1
            try:
                cond.wait()
            finally:
                sub._idle -= 1

    def _watch(self, sub: BlockingSubscription[Any], me: threading.Thread) -> bool:
        """Under ``sub._cond``: watch the role lent to a worker running a handler;
        True once ``me`` took it over (the handler ran past ``LEND_SECONDS``).
        Returns False on anything else to look at (an item, an offer, the end),
        or once no handler borrowed the role during a whole wait."""
        cond = sub._cond
        sub._watched = True
        try:
            while True:
                lends = sub._lends
                lent = self._reading is sub and not sub._offered
                wait = sub._lent_at + LEND_SECONDS - time.monotonic() if lent else LEND_SECONDS
                if wait <= 0:
                    return self._pass_role(sub, me)
                sub._idle += 1
                try:
                    cond.wait(wait)
                finally:
                    sub._idle -= 1
                if sub._offered or sub._items or sub._ended is not None:
                    return False
                lent = self._reading is sub and not sub._offered
                if not lent and sub._lends == lends:
                    return False  # requests stopped coming: wait without a timer
        finally:
            sub._watched = False

    def _pass_role(self, holder: object, to: threading.Thread | BlockingSubscription[Any]) -> bool:
        """Hand the reading role from ``holder`` to ``to`` if ``holder`` has it: a
        worker takes it (``holder`` None: nobody has it, or the subscription it
        was offered or lent to), or lends it to its subscription while it runs
        a handler (``to`` the subscription), or the role is offered to ``to``'s
        idle workers."""
        with self._lock:
            if self._reading is not holder:
                return False
            self._reading = to
            return True

    def _read_for(self, sub: BlockingSubscription[Any]) -> None:
        """Holding the role: read and dispatch until ``sub`` has an item or ends."""
        conn = self._conn
        while not sub._items and sub._ended is None and conn.closed is None:
            if not self._receive():
                return

    def _offer_to_workers(self) -> bool:
        """The reader thread: hand the role to an idle serve worker, if one waits."""
        if self._tls is not None:
            return False  # TLS records are decrypted by the reader thread alone
        return any(self._offer(sub, self._reader) for sub in tuple(self._served))

    def _offer(self, sub: BlockingSubscription[Any], holder: object) -> bool:
        """Hand the role ``holder`` has to one idle worker of ``sub``, if there is one."""
        with sub._cond:
            if not sub._idle or sub._offered or not self._pass_role(holder, sub):
                return False
            sub._offered = True  # the role is parked at sub: nobody else takes it
            sub._cond.notify()
            return True

    def _release(self, holder: object) -> None:
        """``holder`` (a worker, or a subscription the role was offered or lent
        to) gives the role up: to an idle worker of a served subscription, else
        to the reader thread if anything still waits for input (a caller that
        read its own answer gives it up this way too)."""
        if self._served and isinstance(holder, threading.Thread):
            for sub in tuple(self._served):
                if self._offer(sub, holder):
                    return
        with self._lock:
            if self._reading is not holder:
                return
            self._reading = None
            conn = self._conn
            if conn.pending or conn.subscriptions or conn.closed is not None:
                self._give_reader_the_turn()

    def _stop_serving(self, sub: BlockingSubscription[Any]) -> None:
        """A serve worker of ``sub`` leaves: a role parked at ``sub`` must not stay there."""
        self._served.discard(sub)
        self._release(sub)

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

    def _next_request(self, subscription: Any, handled: float = 0.0) -> Any:
        return self._client._next_request(subscription, handled)

    def _stop_serving(self, subscription: Any) -> None:
        self._client._stop_serving(subscription)

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
