/**
 * A push subscription (topic subscription, log tail or responder) as an
 * async iterator.
 *
 * The subscription is created by a request whose `ok` result holds `sub`;
 * the client then routes every push frame naming that `sub` here. Items wait
 * in a local FIFO until the application asks for them, at most `maxPending`
 * (the subscription's, else the client's, else a topic subscription's
 * `buffer`, else DEFAULT_MAX_PENDING).
 *
 * A full topic subscription never stops the client reading its socket: the
 * answers to this connection's own calls travel behind its pushes, so a
 * client that subscribed and then published more than `maxPending` messages
 * itself would wait forever for its publish. Like a NATS client, the FIFO
 * applies the subscription's own overflow policy instead: `drop_oldest`
 * drops its oldest items (counted in `dropped`, reported to `onNotice`),
 * `disconnect` ends the subscription with SlowConsumerError (after the items
 * received so far) and unsubscribes it. A log tail or a responder, which
 * must not lose anything, has no policy: a full FIFO asks the broker to
 * `pause` that one subscription, and to `resume` it once the application has
 * taken half; the socket is read all the while (issue 14).
 */

import { ConnectionClosedError, SlowConsumerError, SubscriptionEndedError, errorFromCode } from "./errors.js";

/** Items a subscription may hold unread: past that a topic subscription applies its overflow policy, a tail or responder is paused in the broker. */
export const DEFAULT_MAX_PENDING = 10_000;

/** Marks a subscription that ended quietly (closed by us, or its log deleted). */
const DONE = Symbol("done");

/**
 * @template T
 * @implements {AsyncIterableIterator<T>}
 */
export class Subscription {
  /**
   * @param {import("./client.js").Client} client
   * @param {string} op the creating request
   * @param {Record<string, unknown>} fields its fields
   * @param {(frame: any) => T[]} parse push frame -> items
   * @param {{maxPending?: number}} [options]
   */
  constructor(client, op, fields, parse, options = {}) {
    this._client = client;
    this._parse = parse;
    // One number bounds a topic subscription end to end: the `buffer` it asked
    // the broker for, unless `maxPending` (its own, else the client's) says otherwise.
    this._maxPending = options.maxPending ?? client.maxPending ?? Number(fields.buffer ?? DEFAULT_MAX_PENDING);
    /** @type {string | null} a topic subscription's on_overflow, applied to a full FIFO; null for tails and responders */
    this._onOverflow = op === "subscribe" ? String(fields.on_overflow ?? "drop_oldest") : null;
    /** @type {T[]} */
    this._items = [];
    this._head = 0;
    /** @type {Array<{resolve: (r: IteratorResult<T>) => void, reject: (e: unknown) => void}>} */
    this._waiters = [];
    /** @type {unknown} why the subscription ended: DONE, an error, or null while live */
    this._ended = null;
    this._closing = false;
    /** True from the `pause` a full tail or responder FIFO sent until its `resume`. */
    this._paused = false;
    /** @type {number | null} the broker's id for this subscription, once it is live */
    this.sub = null;
    /** @type {any} the `ok` result of the creating request */
    this.info = null;
    /** Messages dropped for this subscriber (its overflow policy): by the broker, per `notice` pushes, or by this client's full FIFO. */
    this.dropped = 0;
    /** @type {((dropped: number) => void) | null} called on each `notice` push and each drop from the full FIFO */
    this.onNotice = null;
    /**
     * Resolves with this subscription once the broker confirmed it (the first
     * push can only come after that); rejects if the request failed.
     * @type {Promise<this>}
     */
    this.ready = client
      ._call(op, fields, { onOk: (result) => this._register(result) })
      .then(() => this)
      .catch((err) => {
        this._end(err);
        throw err;
      });
    // Iterating reports the failure too: never an unhandled rejection.
    this.ready.catch(() => {});
  }

  /**
   * Run by the client's reader as the `ok` arrives, before the next frame is
   * decoded: pushes may share a TCP read with the `ok` and must find us.
   * @param {any} result
   */
  _register(result) {
    const sub = Number(result.sub);
    if (this._closing) {
      this._client._post("unsubscribe", { sub });
      return;
    }
    this.sub = sub;
    this.info = result;
    this._client._subscriptions.set(sub, this);
  }

  /**
   * A push frame for this subscription (called by the client's reader).
   * @param {any} frame
   */
  _push(frame) {
    if (this._ended !== null) return;
    switch (frame.op) {
      case "notice": {
        const dropped = Number(frame.dropped) || 0;
        this.dropped += dropped;
        if (this.onNotice) this.onNotice(dropped);
        return;
      }
      case "end": {
        const cause = errorFromCode(String(frame.code), String(frame.message));
        this._client._subscriptions.delete(/** @type {number} */ (this.sub));
        // The log was deleted: the stream simply stops. Anything else
        // (e.g. offset_out_of_range) is raised to the reader.
        this._end(
          cause.code === "not_found"
            ? DONE
            : new SubscriptionEndedError(`subscription ended by the broker: ${cause.message}`, {
                code: cause.code,
                cause,
              }),
        );
        this._endedBy = cause;
        return;
      }
      default: {
        const items = this._parse(frame);
        for (const item of items) this._deliver(item);
        if (this.pending < this._maxPending) return;
        if (this._onOverflow === null) {
          if (!this._paused && this._ended === null) {
            this._paused = true;
            this._client._post("pause", { sub: this.sub });
          }
        } else if (this.pending > this._maxPending) this._overflow();
      }
    }
  }

  /** A topic subscription's FIFO passed `maxPending`: apply its policy here, as the broker would. */
  _overflow() {
    const excess = this.pending - this._maxPending;
    if (this._onOverflow === "disconnect") {
      this._items.length -= excess; // keep what arrived first, as the broker's buffer does
      this._client._subscriptions.delete(/** @type {number} */ (this.sub));
      this._client._post("unsubscribe", { sub: this.sub });
      this._end(
        new SlowConsumerError(
          `subscription ${this.sub} fell ${this._maxPending} messages behind in the client (on_overflow=disconnect)`,
        ),
      );
      return;
    }
    this._items = this._items.slice(this._head + excess);
    this._head = 0;
    this.dropped += excess;
    if (this.onNotice) this.onNotice(excess);
  }

  /** @param {T} item */
  _deliver(item) {
    const waiter = this._waiters.shift();
    if (waiter) waiter.resolve({ value: item, done: false });
    else this._items.push(item);
  }

  /**
   * End the subscription: waiters get `done` (DONE) or the error, once the
   * buffered items are consumed.
   * @param {unknown} reason
   */
  _end(reason) {
    if (this._ended !== null) return;
    this._ended = reason;
    for (const waiter of this._waiters.splice(0)) this._settleEnded(waiter);
  }

  /** @param {{resolve: (r: IteratorResult<T>) => void, reject: (e: unknown) => void}} waiter */
  _settleEnded(waiter) {
    if (this._ended === DONE) waiter.resolve({ value: undefined, done: true });
    else waiter.reject(this._ended);
  }

  /** Items received and not yet taken. */
  get pending() {
    return this._items.length - this._head;
  }

  /** Why the subscription ended: undefined while live, null when it ended quietly, else the error. */
  get endedWith() {
    if (this._ended === null) return undefined;
    return this._ended === DONE ? null : this._ended;
  }

  /** @returns {T | undefined} */
  _take() {
    if (this._head >= this._items.length) return undefined;
    const item = this._items[this._head];
    this._items[this._head++] = /** @type {any} */ (undefined);
    if (this._head >= this._items.length) {
      this._items = [];
      this._head = 0;
    } else if (this._head > 4096 && this._head * 2 > this._items.length) {
      this._items = this._items.slice(this._head);
      this._head = 0;
    }
    if (this._paused && this._items.length - this._head <= Math.floor(this._maxPending / 2)) {
      this._paused = false;
      if (this._ended === null) this._client._post("resume", { sub: this.sub });
    }
    return item;
  }

  /** @returns {Promise<IteratorResult<T>>} */
  next() {
    if (this._head < this._items.length) {
      return Promise.resolve({ value: /** @type {T} */ (this._take()), done: false });
    }
    if (this._ended !== null) {
      return this._ended === DONE
        ? Promise.resolve({ value: undefined, done: true })
        : Promise.reject(this._ended);
    }
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  /**
   * Wait for at least one item, then take up to `max` at once: the cheapest
   * way to consume a busy subscription. Resolves to [] once it has ended
   * quietly.
   * @param {number} [max]
   * @returns {Promise<T[]>}
   */
  async nextBatch(max = 1000) {
    const first = await this.next();
    if (first.done) return [];
    const batch = [first.value];
    while (batch.length < max && this._head < this._items.length) batch.push(/** @type {T} */ (this._take()));
    return batch;
  }

  /** Stop: unsubscribe (items already buffered are dropped). Safe to call twice. */
  async close() {
    if (this._closing) return;
    this._closing = true;
    const sub = this.sub;
    this._end(DONE);
    this._items = [];
    this._head = 0;
    if (sub === null) return; // not live yet: _register unsubscribes when the ok comes
    this._client._subscriptions.delete(sub);
    if (!this._client.isClosed) {
      try {
        await this._client._call("unsubscribe", { sub });
      } catch (err) {
        if (!(err instanceof ConnectionClosedError) && /** @type {any} */ (err)?.code !== "not_found") throw err;
      }
    }
  }

  /** `for await` calls this on break, return or throw: unsubscribe. */
  async return() {
    await this.close();
    return { value: undefined, done: /** @type {const} */ (true) };
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  async [Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose")]() {
    await this.close();
  }
}

export { DONE };
