/**
 * The connection: framing, request ids, pipelining, pushes, back-pressure.
 *
 * One socket carries every call. A call gets the next request id and its
 * frame joins an outbox; the outbox is written to the socket in one write per
 * turn of the event loop (so concurrent calls coalesce into one syscall),
 * and not at all while the socket's buffer is full: after `socket.write()`
 * returns false the client waits for 'drain'. Responses are matched to calls
 * by id (never by order: long polls and requests answer later), pushes are
 * routed to their subscription by `sub`. If the connection drops, every
 * pending call is rejected at once with ConnectionClosedError and every
 * subscription ends with it: nothing hangs.
 *
 * The model operations (queues, topics, logs, request/reply) are added to
 * this class by their own modules; see index.js.
 */

import { FrameReader, encodeFrame } from "./framing.js";
import { BrokerError, ConnectionClosedError, TooLargeError, errorFromCode } from "./errors.js";
import { asBuffer } from "./records.js";
import { DONE as SUBSCRIPTION_DONE } from "./subscription.js";

export const PROTOCOL_VERSION = 1;

/**
 * @typedef {object} PendingCall
 * @property {(value: any) => void} resolve
 * @property {(error: unknown) => void} reject
 * @property {((result: any) => any) | undefined} parse turns the `ok` result into the return value
 * @property {((result: any) => void) | undefined} onOk run by the reader, before the next frame
 */

export class Client {
  /**
   * @param {import("node:net").Socket} socket a connected socket (TCP or TLS)
   * @param {{maxPending?: number, maxFrameBytes?: number}} [options]
   */
  constructor(socket, options = {}) {
    this._socket = socket;
    this._reader = new FrameReader(options.maxFrameBytes);
    this._nextId = 1;
    /** @type {Map<number, PendingCall>} */
    this._pending = new Map();
    /** @type {Map<number, import("./subscription.js").Subscription<any>>} */
    this._subscriptions = new Map();
    /** @type {Buffer[]} */
    this._outbox = [];
    this._outboxBytes = 0;
    this._flushScheduled = false;
    /** True after socket.write() returned false, until 'drain'. */
    this._blocked = false;
    /** @type {Array<() => void>} */
    this._drainWaiters = [];
    /** @type {Error | null} */
    this._closedWith = null;
    /** @type {number | null} the largest frame the broker accepts (its advertised limit, from hello) */
    this.sendLimit = null;
    /**
     * @type {number | undefined} items each subscription may hold unread, if
     * `connect` was given `maxPending`; otherwise a topic subscription holds
     * its `buffer` and a tail or responder DEFAULT_MAX_PENDING (subscription.js).
     */
    this.maxPending = options.maxPending;
    /** @type {Record<string, any>} the hello result: server, version, connection, namespace, features, fsync, limits */
    this.serverInfo = {};
    /** @type {(reason: Error) => void} */
    let settle = () => {};
    /** Resolves (never rejects) with the reason once the connection is closed. */
    this.closed = new Promise((resolve) => {
      settle = resolve;
    });
    this._settleClosed = settle;

    socket.setNoDelay?.(true);
    socket.on("data", (chunk) => this._onData(chunk));
    socket.on("drain", () => this._onDrain());
    socket.on("end", () => {
      this._fail(new ConnectionClosedError("the broker closed the connection"));
    });
    socket.on("error", (err) => {
      this._fail(new ConnectionClosedError(`connection to the broker lost: ${err.message}`, { cause: err }));
    });
    socket.on("close", () => {
      this._fail(new ConnectionClosedError("the connection was closed"));
    });
  }

  /** The largest frame accepted from the broker (raised to its advertised limit by hello). */
  get maxFrameBytes() {
    return this._reader.maxFrameBytes;
  }

  /**
   * Accept frames as large as the broker's advertised `limits.max_frame_bytes`.
   * The broker never sends a frame above the limit it advertises, and may
   * send any frame up to it, so a broker started with a larger
   * `--max-frame-bytes` than this client's limit must not make legal frames
   * fatal. Only ever raises the limit; malformed info is ignored. The
   * advertised limit also becomes `sendLimit`: a request above it is refused
   * here (TooLargeError) instead of being sent, because the broker closes a
   * connection that sends an oversized frame.
   * @param {any} info the hello result
   */
  _adoptServerLimits(info) {
    const advertised = info?.limits?.max_frame_bytes;
    if (!Number.isSafeInteger(advertised) || advertised <= 0) return;
    this.sendLimit = advertised;
    if (advertised > this._reader.maxFrameBytes) this._reader.maxFrameBytes = advertised;
  }

  /** True once the connection is closed (by either side). */
  get isClosed() {
    return this._closedWith !== null;
  }

  /** True while the socket's write buffer is full; `await client.drained()` to wait. */
  get needsDrain() {
    return this._blocked;
  }

  /**
   * Resolves when the socket can take more data. Producers that do not await
   * each call (fire-and-forget loops) should await this now and then, so a
   * slow broker slows them down instead of filling this process's memory.
   * @returns {Promise<void>}
   */
  drained() {
    if (!this._blocked || this._closedWith) return Promise.resolve();
    return new Promise((resolve) => this._drainWaiters.push(resolve));
  }

  // ------------------------------------------------------------ requests

  /**
   * Send one request and resolve with its (parsed) result.
   * @param {string} op
   * @param {Record<string, unknown>} fields
   * @param {{parse?: (result: any) => any, onOk?: (result: any) => void, onId?: (id: number) => void}} [hooks]
   *   `onId` learns the request id (a consumer names its parked fetch by it in `fetch.cancel`)
   * @returns {Promise<any>}
   */
  _call(op, fields, hooks = {}) {
    if (this._closedWith) return Promise.reject(this._lost());
    const id = this._nextId;
    let frame;
    try {
      frame = encodeFrame({ ...fields, op, id });
    } catch (err) {
      return Promise.reject(err);
    }
    const size = frame.length - 4;
    if (this.sendLimit !== null && size > this.sendLimit) {
      const message =
        `the '${op}' request is ${size} bytes, above the broker's frame limit of ${this.sendLimit} bytes; ` +
        "nothing was sent. Split it into smaller batches (or start the broker with a larger --max-frame-bytes)";
      return Promise.reject(new TooLargeError(message, { details: { limit: this.sendLimit, size } }));
    }
    this._nextId += 1;
    if (hooks.onId) hooks.onId(id);
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, parse: hooks.parse, onOk: hooks.onOk });
      this._send(frame);
    });
  }

  /**
   * Send a request whose answer nobody waits for (cleanup such as an
   * unsubscribe for an abandoned subscription); its errors are ignored.
   * @param {string} op
   * @param {Record<string, unknown>} fields
   */
  _post(op, fields) {
    this._call(op, fields).catch(() => {});
  }

  /** @param {Buffer} frame */
  _send(frame) {
    this._outbox.push(frame);
    this._outboxBytes += frame.length;
    if (!this._flushScheduled && !this._blocked) {
      this._flushScheduled = true;
      queueMicrotask(() => this._flush());
    }
  }

  _flush() {
    this._flushScheduled = false;
    if (this._blocked || this._closedWith || this._outbox.length === 0) return;
    const data = this._outbox.length === 1 ? this._outbox[0] : Buffer.concat(this._outbox, this._outboxBytes);
    this._outbox = [];
    this._outboxBytes = 0;
    if (!this._socket.write(data)) this._blocked = true;
  }

  _onDrain() {
    this._blocked = false;
    this._flush();
    if (!this._blocked) for (const wake of this._drainWaiters.splice(0)) wake();
  }

  // ------------------------------------------------------------ receiving

  /** @param {Buffer} chunk */
  _onData(chunk) {
    let frames;
    try {
      frames = this._reader.push(chunk);
    } catch (err) {
      this._fail(/** @type {Error} */ (err));
      return;
    }
    for (const frame of frames) {
      this._dispatch(frame);
      if (this._closedWith) return;
    }
  }

  /** @param {any} frame */
  _dispatch(frame) {
    switch (frame.op) {
      case "ok": {
        const call = this._pending.get(frame.id);
        if (!call) return;
        this._pending.delete(frame.id);
        try {
          if (call.onOk) call.onOk(frame.result);
          call.resolve(call.parse ? call.parse(frame.result) : frame.result);
        } catch (err) {
          call.reject(err);
        }
        return;
      }
      case "error": {
        const error = errorFromCode(String(frame.code), String(frame.message), frame.details);
        if (frame.id === undefined || frame.id === null) {
          // About the connection, not one request: the server closes it now.
          this._fail(error);
          return;
        }
        const call = this._pending.get(frame.id);
        if (!call) return;
        this._pending.delete(frame.id);
        call.reject(error);
        return;
      }
      case "bye":
        this._fail(errorFromCode(String(frame.code), String(frame.message)));
        return;
      default: {
        // msg, records, req, notice, end: a push for one subscription.
        // Pushes for a subscription we already closed may still arrive: drop them.
        const subscription = this._subscriptions.get(frame.sub);
        if (subscription) subscription._push(frame);
      }
    }
  }

  // ------------------------------------------------------------ closing

  /** The error for calls made after the connection ended. */
  _lost() {
    const reason = /** @type {Error} */ (this._closedWith);
    return reason instanceof ConnectionClosedError
      ? reason
      : new ConnectionClosedError(`connection to the broker lost: ${reason.message}`, { cause: reason });
  }

  /**
   * The connection is over: reject every pending call and end every
   * subscription at once, with `reason`.
   * @param {Error} reason
   */
  _fail(reason) {
    if (this._closedWith) return;
    this._closedWith = reason;
    const lost = this._lost();
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const call of pending) call.reject(lost);
    const subscriptions = [...this._subscriptions.values()];
    this._subscriptions.clear();
    // A broker's reason (bye slow_consumer, shutting_down...) is more useful
    // to a subscriber than "connection closed".
    for (const subscription of subscriptions) subscription._end(reason instanceof BrokerError ? reason : lost);
    this._outbox = [];
    this._outboxBytes = 0;
    for (const wake of this._drainWaiters.splice(0)) wake();
    this._socket.destroy();
    this._settleClosed(reason);
  }

  /**
   * Close the connection: what was already queued is still sent (acks,
   * replies), pending calls fail with ConnectionClosedError, subscriptions
   * end quietly. Resolves once the socket is closed.
   * @returns {Promise<void>}
   */
  async close() {
    if (this._closedWith) return;
    const subscriptions = [...this._subscriptions.values()];
    this._closedWith = new ConnectionClosedError("the client was closed");
    const lost = this._closedWith;
    for (const call of this._pending.values()) call.reject(lost);
    this._pending.clear();
    this._subscriptions.clear();
    for (const subscription of subscriptions) subscription._end(/** @type {any} */ (SUBSCRIPTION_DONE));
    const rest = this._outbox;
    this._outbox = [];
    await new Promise((resolve) => {
      const timer = setTimeout(() => this._socket.destroy(), 2000);
      this._socket.once("close", () => {
        clearTimeout(timer);
        resolve(undefined);
      });
      // Half-close after the queued frames: the broker answers what it read,
      // then closes its side, and 'close' fires.
      if (rest.length) this._socket.end(Buffer.concat(rest));
      else this._socket.end();
    });
    this._settleClosed(lost);
  }

  async [Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose")]() {
    await this.close();
  }

  // ------------------------------------------------------------ connection ops

  /**
   * Round trip to the broker; resolves with `data` echoed back.
   * @param {Uint8Array | string} [data]
   * @returns {Promise<Buffer | null>}
   */
  ping(data) {
    return this._call("ping", data === undefined ? {} : { data: toBytes(data, "data") }, {
      parse: (r) => (r == null ? null : asBuffer(r)),
    });
  }

  /**
   * Delete namespace `name` with everything in it and close the connections
   * in it (not this client's own namespace: that is a ConflictError).
   * Resolves false when there was nothing to drop.
   * @param {string} name
   * @returns {Promise<boolean>}
   */
  dropNamespace(name) {
    return this._call("namespace.drop", { namespace: name }, { parse: (r) => Boolean(r.dropped) });
  }
}

/**
 * Bytes for the wire: Uint8Array/Buffer as they are, strings as UTF-8,
 * ArrayBuffer wrapped. Anything else is a TypeError.
 * @param {unknown} value
 * @param {string} what for the error message
 * @returns {Uint8Array}
 */
export function toBytes(value, what = "body") {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`${what} must be a Buffer, Uint8Array or string, not ${value === null ? "null" : typeof value}`);
}

/**
 * Headers for the wire: undefined when empty (an empty map is the same as none).
 * @param {Record<string, string> | null | undefined} headers
 * @returns {Record<string, string> | undefined}
 */
export function wireHeaders(headers) {
  if (headers == null) return undefined;
  for (const _ in headers) return headers;
  return undefined;
}

/**
 * Drop undefined and null options, so the broker applies its defaults.
 * @param {Record<string, unknown>} fields
 */
export function compact(fields) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) out[k] = v;
  return out;
}
