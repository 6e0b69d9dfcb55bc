/**
 * Queues: declare, put, fetch, ack/nack, and `consume`, an async-iterator
 * consumer with prefetch and batched acks.
 *
 *     await mb.declareQueue("jobs", { visibilityTimeout: 30, maxDeliveries: 5 });
 *     await mb.putMany("jobs", ["a", "b", { body: "c", headers: { k: "v" } }]);
 *     for await (const d of mb.consume("jobs", { prefetch: 100 })) {
 *       await work(d.body);
 *       d.ack();                      // batched: one ack frame per event-loop turn
 *     }
 *
 * Times are in seconds, as on the wire. Wire: docs/protocol.md, "Queues".
 */

import { asBuffer } from "./records.js";
import { UnknownDeliveryError } from "./errors.js";
import { compact } from "./client.js";
import { wireMessage } from "./topics.js";

/** Delivery ids per ack/nack frame at most (the broker's max_batch is 100,000). */
const MAX_SETTLE_BATCH = 10_000;

/**
 * A message handed out by `fetch` or `consume`; settle it with ack() or nack().
 */
export class Delivery {
  /**
   * @param {import("./client.js").Client} client
   * @param {string} queue
   * @param {any} wire the delivery map from the broker
   */
  constructor(client, queue, wire) {
    /** @private */
    this._client = client;
    /** The queue it came from. */
    this.queue = queue;
    /** @type {number} unique in the namespace; names this delivery in ack/nack */
    this.deliveryId = wire.delivery_id;
    /** @type {Buffer} */
    this.body = asBuffer(wire.body);
    /** @type {Record<string, string> | null} */
    this.headers = wire.headers ?? null;
    /** @type {number} 1 on the first delivery, raised on each redelivery */
    this.deliveryCount = wire.delivery_count;
    /** @type {number} time of the original put, ms since the Unix epoch */
    this.publishedAt = wire.published_at;
    /** @type {((d: Delivery) => void) | null} set by a consumer to count settlements */
    this._onSettle = null;
    this.settled = false;
  }

  /**
   * Acknowledge: the message leaves the queue. Batched with the other acks of
   * this event-loop turn; resolves when the broker confirmed. Not awaiting is
   * fine: a failed ack (e.g. the visibility timeout already passed) only means
   * the message is delivered again.
   * @returns {Promise<void>}
   */
  ack() {
    return this._settle("ack", {});
  }

  /**
   * Give the message back: requeued at the front (after `delay` seconds), or
   * with `requeue: false` dead-lettered (or dropped).
   * @param {{requeue?: boolean, delay?: number}} [options]
   * @returns {Promise<void>}
   */
  nack(options = {}) {
    return this._settle("nack", compact({ requeue: options.requeue, delay: options.delay }));
  }

  /** Settled (or about to be): a consumer gets room for one more. */
  _markSettled() {
    if (this.settled) return;
    this.settled = true;
    const onSettle = this._onSettle;
    this._onSettle = null;
    if (onSettle) onSettle(this);
  }

  /**
   * @param {"ack" | "nack"} op
   * @param {Record<string, unknown>} options
   */
  _settle(op, options) {
    if (this.settled) {
      return Promise.reject(new Error(`delivery ${this.deliveryId} was already settled`));
    }
    this._markSettled();
    const promise = settler(this._client).add(op, this.queue, options, this.deliveryId);
    promise.catch(() => {});
    return promise;
  }
}

/**
 * Coalesces the ack/nack calls of one event-loop turn into one frame per
 * (op, queue, options). Ack and nack are all-or-nothing on the broker: when
 * a batch fails with `unknown_delivery` and the error lists the offending
 * ids, only those are failed and the rest are sent again.
 */
class Settler {
  /** @param {import("./client.js").Client} client */
  constructor(client) {
    this.client = client;
    /** @type {Map<string, {op: string, queue: string, options: Record<string, unknown>, ids: number[], waiters: Array<{resolve: () => void, reject: (e: unknown) => void}>}>} */
    this.batches = new Map();
    this.scheduled = false;
  }

  /**
   * @param {"ack" | "nack"} op
   * @param {string} queue
   * @param {Record<string, unknown>} options
   * @param {number} id
   * @returns {Promise<void>}
   */
  add(op, queue, options, id) {
    const key = `${op}\u0000${queue}\u0000${JSON.stringify(options)}`;
    let batch = this.batches.get(key);
    if (!batch) {
      batch = { op, queue, options, ids: [], waiters: [] };
      this.batches.set(key, batch);
    }
    const promise = new Promise((resolve, reject) =>
      /** @type {any} */ (batch).waiters.push({ resolve, reject }),
    );
    batch.ids.push(id);
    if (batch.ids.length >= MAX_SETTLE_BATCH) {
      this.batches.delete(key);
      this.send(batch);
    } else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    return /** @type {Promise<void>} */ (promise);
  }

  /** Send every batch now (a consumer does this before it fetches again). */
  flush() {
    this.scheduled = false;
    const batches = [...this.batches.values()];
    this.batches.clear();
    for (const batch of batches) this.send(batch);
  }

  /**
   * @param {{op: string, queue: string, options: Record<string, unknown>, ids: number[], waiters: Array<{resolve: () => void, reject: (e: unknown) => void}>}} batch
   * @param {boolean} [retried]
   */
  send(batch, retried = false) {
    this.client._call(batch.op, { queue: batch.queue, deliveries: batch.ids, ...batch.options }).then(
      () => {
        for (const w of batch.waiters) w.resolve();
      },
      (err) => {
        const bad = err instanceof UnknownDeliveryError ? err.details?.deliveries : undefined;
        if (!retried && Array.isArray(bad) && bad.length > 0 && bad.length < batch.ids.length) {
          const badSet = new Set(bad);
          const keep = { ...batch, ids: /** @type {number[]} */ ([]), waiters: /** @type {typeof batch.waiters} */ ([]) };
          batch.ids.forEach((id, i) => {
            if (badSet.has(id)) batch.waiters[i].reject(err);
            else {
              keep.ids.push(id);
              keep.waiters.push(batch.waiters[i]);
            }
          });
          this.send(keep, true);
          return;
        }
        for (const w of batch.waiters) w.reject(err);
      },
    );
  }
}

/** @type {WeakMap<object, Settler>} */
const SETTLERS = new WeakMap();

/** @param {import("./client.js").Client} client */
function settler(client) {
  let s = SETTLERS.get(client);
  if (!s) {
    s = new Settler(client);
    SETTLERS.set(client, s);
  }
  return s;
}

/**
 * Delivery ids of `deliveries` grouped by queue.
 * @param {Delivery | Delivery[]} deliveries
 * @returns {Map<string, number[]>}
 */
function idsByQueue(deliveries) {
  /** @type {Map<string, number[]>} */
  const out = new Map();
  for (const d of Array.isArray(deliveries) ? deliveries : [deliveries]) {
    if (!(d instanceof Delivery)) throw new TypeError("expected Delivery objects (or a queue name and delivery ids)");
    d._markSettled();
    const ids = out.get(d.queue);
    if (ids) ids.push(d.deliveryId);
    else out.set(d.queue, [d.deliveryId]);
  }
  return out;
}

/**
 * ack/nack by Delivery objects, or by queue name and ids.
 * @param {import("./client.js").Client} client
 * @param {"ack" | "nack"} op
 * @param {any} first
 * @param {any} second
 * @param {Record<string, unknown>} options
 * @returns {Promise<number>} messages settled
 */
async function settle(client, op, first, second, options) {
  if (typeof first === "string") {
    const ids = Array.isArray(second) ? second : [second];
    const r = await client._call(op, { queue: first, deliveries: ids, ...options });
    return r.count;
  }
  let count = 0;
  for (const [queue, ids] of idsByQueue(first)) {
    const r = await client._call(op, { queue, deliveries: ids, ...options });
    count += r.count;
  }
  return count;
}

/**
 * Pull consumer: fetches up to `prefetch` messages at a time with a long
 * poll, yields them one by one, and never holds more than `prefetch`
 * unsettled deliveries. Acks made through `d.ack()` are batched and sent
 * before each fetch. Leaving the loop (break, return, throw) gives the
 * fetched-but-not-yet-yielded messages back to the queue at once; messages
 * already yielded stay yours to settle.
 *
 * @implements {AsyncIterableIterator<Delivery>}
 */
export class Consumer {
  /**
   * @param {import("./client.js").Client} client
   * @param {string} queue
   * @param {{prefetch?: number, wait?: number, visibilityTimeout?: number}} options
   */
  constructor(client, queue, options) {
    this._client = client;
    this.queue = queue;
    this.prefetch = options.prefetch ?? 100;
    if (!Number.isInteger(this.prefetch) || this.prefetch < 1) throw new RangeError("prefetch must be an integer >= 1");
    this.wait = options.wait ?? 5;
    this.visibilityTimeout = options.visibilityTimeout;
    /** @type {Delivery[]} fetched, not yet yielded */
    this._buffer = [];
    /** Deliveries yielded and not settled yet. */
    this.unsettled = 0;
    /** @type {(() => void) | null} wakes a next() waiting for room under prefetch */
    this._room = null;
    this._closed = false;
    /** @type {Promise<IteratorResult<Delivery>> | null} */
    this._inFlight = null;
    /** @type {number | null} request id of the fetch waiting for its answer */
    this._fetchId = null;
  }

  /** @returns {Promise<IteratorResult<Delivery>>} */
  next() {
    // Calls are serialised: a second next() waits for the first.
    const previous = this._inFlight;
    const result = previous ? previous.then(() => this._next(), () => this._next()) : this._next();
    this._inFlight = result;
    return result;
  }

  /** @returns {Promise<IteratorResult<Delivery>>} */
  async _next() {
    while (this._buffer.length === 0) {
      if (this._closed) return { value: undefined, done: true };
      if (this.unsettled >= this.prefetch) {
        settler(this._client).flush();
        await new Promise((resolve) => {
          this._room = () => resolve(undefined);
        });
        continue;
      }
      settler(this._client).flush();
      let wire;
      try {
        wire = await this._client._call(
          "fetch",
          compact({
            queue: this.queue,
            max_messages: this.prefetch - this.unsettled,
            wait: this.wait,
            visibility_timeout: this.visibilityTimeout,
          }),
          { onId: (id) => (this._fetchId = id) },
        );
      } finally {
        this._fetchId = null;
      }
      const deliveries = wire.map((/** @type {any} */ w) => this._track(new Delivery(this._client, this.queue, w)));
      if (this._closed) {
        this._giveBack(deliveries);
        return { value: undefined, done: true };
      }
      this._buffer = deliveries;
    }
    const delivery = /** @type {Delivery} */ (this._buffer.shift());
    this.unsettled++;
    return { value: delivery, done: false };
  }

  /** @param {Delivery} d */
  _track(d) {
    d._onSettle = () => {
      this.unsettled--;
      const room = this._room;
      this._room = null;
      if (room) room();
    };
    return d;
  }

  /** @param {Delivery[]} deliveries */
  _giveBack(deliveries) {
    if (deliveries.length === 0 || this._client.isClosed) return;
    for (const d of deliveries) {
      d._onSettle = null;
      d.nack().catch(() => {});
    }
    settler(this._client).flush();
  }

  /**
   * Stop consuming: a long poll in progress is withdrawn (`fetch.cancel`: it
   * answers empty at once, and no message is delivered to it; what it got
   * if its answer was already on the way goes back), pending acks are sent,
   * fetched messages not yet yielded go back to the queue.
   */
  async close() {
    if (this._closed) return;
    this._closed = true;
    if (this._fetchId !== null && !this._client.isClosed) {
      // Before the nacks below: requeued messages would feed this very fetch.
      this._client._post("fetch.cancel", { queue: this.queue, fetch: this._fetchId });
    }
    const rest = this._buffer;
    this._buffer = [];
    this._giveBack(rest);
    settler(this._client).flush();
    const room = this._room;
    this._room = null;
    if (room) room();
  }

  async return() {
    await this.close();
    return { value: undefined, done: /** @type {const} */ (true) };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/** @param {import("./client.js").Client} client @param {string} queue */
const parseDeliveries = (client, queue) => (/** @type {any[]} */ wire) =>
  wire.map((w) => new Delivery(client, queue, w));

/** Queue methods, installed on Client.prototype by index.js. */
export const queueMethods = {
  /**
   * Create a queue, or check an existing one has the same options (else `conflict`).
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {{maxLength?: number, maxLengthBytes?: number, overflow?: "reject_publish" | "drop_head", messageTtl?: number, visibilityTimeout?: number, maxDeliveries?: number, deadLetterQueue?: string, durable?: boolean}} [options]
   * @returns {Promise<boolean>} true if it was created
   */
  declareQueue(queue, options = {}) {
    const fields = compact({
      queue,
      max_length: options.maxLength,
      max_length_bytes: options.maxLengthBytes,
      overflow: options.overflow,
      message_ttl: options.messageTtl,
      visibility_timeout: options.visibilityTimeout,
      max_deliveries: options.maxDeliveries,
      dead_letter_queue: options.deadLetterQueue,
      durable: options.durable,
    });
    return this._call("queue.declare", fields, { parse: (r) => Boolean(r.created) });
  },

  /**
   * Delete a queue and its messages.
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @returns {Promise<number>} messages it held
   */
  deleteQueue(queue) {
    return this._call("queue.delete", { queue }, { parse: (r) => r.messages });
  },

  /**
   * Remove the ready and delayed messages.
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @returns {Promise<number>} messages removed
   */
  purgeQueue(queue) {
    return this._call("queue.purge", { queue }, { parse: (r) => r.purged });
  },

  /**
   * The queues of this namespace: `[{queue, ready, in_flight, consumers, durable}]`.
   * @this {import("./client.js").Client}
   * @returns {Promise<any[]>}
   */
  listQueues() {
    return this._call("queue.list", {});
  },

  /**
   * A queue's statistics and options, as the broker reports them.
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @returns {Promise<Record<string, any>>}
   */
  queueStats(queue) {
    return this._call("queue.stats", { queue });
  },

  /**
   * Test hook: the ready, in-flight and delayed messages, unchanged.
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {{limit?: number}} [options]
   * @returns {Promise<{ready: any[], in_flight: any[], delayed: any[]}>}
   */
  inspectQueue(queue, options = {}) {
    return this._call("queue.inspect", compact({ queue, limit: options.limit }));
  },

  /**
   * Put one message; resolves once stored (the publisher confirm).
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {Uint8Array | string} body
   * @param {{headers?: Record<string, string>}} [options]
   * @returns {Promise<number>} messages stored (1)
   */
  put(queue, body, options = {}) {
    let message;
    try {
      message = wireMessage({ body, headers: options.headers });
    } catch (err) {
      return Promise.reject(err);
    }
    return this._call("put", { queue, messages: [message] }, { parse: (r) => r.count });
  },

  /**
   * Put a batch in one frame, stored entirely or not at all.
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {Iterable<any>} messages bodies or `{body, headers}` objects
   * @returns {Promise<number>} messages stored
   */
  putMany(queue, messages) {
    let wire;
    try {
      wire = Array.from(messages, wireMessage);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._call("put", { queue, messages: wire }, { parse: (r) => r.count });
  },

  /**
   * Fetch up to `maxMessages` ready messages; with `wait` > 0 (seconds) a long
   * poll that answers as soon as any is ready (or [] when the wait runs out).
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {{maxMessages?: number, wait?: number, visibilityTimeout?: number}} [options]
   * @returns {Promise<Delivery[]>}
   */
  fetch(queue, options = {}) {
    const fields = compact({
      queue,
      max_messages: options.maxMessages,
      wait: options.wait,
      visibility_timeout: options.visibilityTimeout,
    });
    return this._call("fetch", fields, { parse: parseDeliveries(this, queue) });
  },

  /**
   * Acknowledge deliveries in one frame per queue: `ack(delivery)`,
   * `ack([d1, d2])`, or `ack("jobs", [17, 18])` by ids. All or nothing:
   * `unknown_delivery` if any id is unknown, expired or someone else's.
   * @this {import("./client.js").Client}
   * @param {Delivery | Delivery[] | string} deliveries
   * @param {number | number[]} [ids]
   * @returns {Promise<number>}
   */
  ack(deliveries, ids) {
    return settle(this, "ack", deliveries, ids, {});
  },

  /**
   * Give deliveries back (`requeue` true by default, after `delay` seconds),
   * or dead-letter them (`requeue: false`). Same forms as `ack`; with ids,
   * the options come third: `nack("jobs", [17], {requeue: false})`.
   * @this {import("./client.js").Client}
   * @param {Delivery | Delivery[] | string} deliveries
   * @param {any} [idsOrOptions]
   * @param {{requeue?: boolean, delay?: number}} [options]
   * @returns {Promise<number>}
   */
  nack(deliveries, idsOrOptions, options) {
    const byIds = typeof deliveries === "string";
    const opts = (byIds ? options : idsOrOptions) ?? {};
    return settle(this, "nack", deliveries, byIds ? idsOrOptions : undefined, compact({ requeue: opts.requeue, delay: opts.delay }));
  },

  /**
   * An async-iterator consumer (see Consumer).
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {{prefetch?: number, wait?: number, visibilityTimeout?: number}} [options]
   * @returns {Consumer}
   */
  consume(queue, options = {}) {
    return new Consumer(this, queue, options);
  },
};
