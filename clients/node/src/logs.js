/**
 * Logs: createLog, append, appendMany, read, tail (an async iterator),
 * commit, committed.
 *
 *     await mb.createLog("events");
 *     const offset = await mb.append("events", '{"deposit": 10}', { key: "acct-1" });
 *     for (const r of await mb.read("events", { start: "earliest" })) console.log(r.offset, r.body.toString());
 *     for await (const r of mb.tail("events", { group: "projector" })) apply(r);  // commits as it goes
 *
 * Reads and tails carry the broker's storage frames untouched; they are
 * decoded here with every CRC checked (records.js). Wire: docs/protocol.md,
 * "Logs" and "Log record format".
 */

import { decodeRecords } from "./records.js";
import { Subscription } from "./subscription.js";
import { compact, toBytes, wireHeaders } from "./client.js";

/** Processed records between two commits of a tail with a group. */
export const DEFAULT_COMMIT_EVERY = 1000;

/**
 * A record for append, in its wire form: a record with neither key nor
 * headers goes as its bare body (smaller, and the broker checks no map for
 * it; see docs/protocol.md, `append`), any other as `{body, key?, headers?}`.
 * @param {any} item
 * @returns {Uint8Array | {body: Uint8Array, key?: Uint8Array, headers?: Record<string, string>}}
 */
function wireRecord(item) {
  if (item instanceof Uint8Array || typeof item === "string" || item instanceof ArrayBuffer) {
    return toBytes(item);
  }
  if (item !== null && typeof item === "object" && "body" in item) {
    const body = toBytes(item.body);
    const headers = wireHeaders(item.headers);
    if (item.key == null && !headers) return body;
    /** @type {{body: Uint8Array, key?: Uint8Array, headers?: Record<string, string>}} */
    const record = { body };
    if (item.key != null) record.key = toBytes(item.key, "key");
    if (headers) record.headers = headers;
    return record;
  }
  throw new TypeError("a record is a Buffer, Uint8Array or string body, or an object {body, key?, headers?}");
}

/**
 * `start`/`timestamp_ms`/`group` fields shared by read and tail.
 * @param {{start?: number | string, timestampMs?: number, group?: string}} options
 */
function position(options) {
  return { start: options.start, timestamp_ms: options.timestampMs, group: options.group };
}

/**
 * @typedef {object} ReadResult
 * @property {import("./records.js").LogRecord[]} records
 * @property {number} nextOffset where the next read should start
 */

/** @param {any} r @returns {ReadResult} */
const parseRead = (r) => ({ records: decodeRecords(r.records), nextOffset: r.next_offset });

/**
 * A tail: replay from `start`, then follow new appends, as an async iterator
 * of records. With a `group`, it commits the group's offset as it goes
 * (at-least-once): a record counts as processed once the loop asks for the
 * next one; the tail commits every `commitEvery` processed records, whenever
 * it has caught up and is about to wait, and on close. Leaving the loop
 * early (break or throw) does not count the record being processed.
 *
 * @extends {Subscription<import("./records.js").LogRecord>}
 */
export class LogTail extends Subscription {
  /**
   * @param {import("./client.js").Client} client
   * @param {string} log
   * @param {Record<string, unknown>} fields
   * @param {{group?: string, commitEvery?: number, maxPending?: number}} options
   */
  constructor(client, log, fields, options) {
    super(client, "tail", fields, (frame) => decodeRecords(frame.data), { maxPending: options.maxPending });
    this.log = log;
    this.group = options.group;
    this.commitEvery = options.commitEvery ?? DEFAULT_COMMIT_EVERY;
    /** @type {number | null} offset after the last record handed out */
    this._delivered = null;
    /** @type {number | null} offset after the last record processed */
    this._processed = null;
    /** @type {number | null} last offset committed by this tail */
    this._committed = null;
  }

  /** The offset the tail started at (resolved from `start`), once ready. */
  get startOffset() {
    return this.info ? this.info.offset : null;
  }

  /** Offset of the next record this tail will hand out. */
  get position() {
    return this._delivered ?? this.startOffset;
  }

  /** @returns {Promise<IteratorResult<import("./records.js").LogRecord>>} */
  async next() {
    // Asking for the next record means the previous one was processed.
    if (this._delivered !== null) this._processed = this._delivered;
    if (this.group !== undefined && this._processed !== null && this.endedWith === undefined) {
      const behind = this._processed - (this._committed ?? this.startOffset ?? 0);
      if (behind >= this.commitEvery || (behind > 0 && this.pending === 0)) await this._commitTo(this._processed);
    }
    const result = await super.next();
    if (!result.done) this._delivered = result.value.offset + 1;
    return result;
  }

  /**
   * Wait for at least one record, then take up to `max` at once; the
   * records of the previous batch count as processed.
   * @param {number} [max]
   */
  async nextBatch(max = 1000) {
    const batch = await super.nextBatch(max);
    if (batch.length) this._delivered = batch[batch.length - 1].offset + 1;
    return batch;
  }

  /** @param {number} offset */
  async _commitTo(offset) {
    if (this.group === undefined || offset === this._committed) return;
    await this._client._call("commit", { log: this.log, group: this.group, offset });
    this._committed = offset;
  }

  /**
   * Commit now: everything handed out so far counts as processed.
   * @returns {Promise<void>}
   */
  async commit() {
    if (this._delivered !== null) {
      this._processed = this._delivered;
      await this._commitTo(this._delivered);
    }
  }

  /** Unsubscribe, committing what was processed first (with a group). */
  async close() {
    if (this.group !== undefined && this._processed !== null && !this._client.isClosed && this.endedWith === undefined) {
      try {
        await this._commitTo(this._processed);
      } finally {
        await super.close();
      }
      return;
    }
    await super.close();
  }
}

/** Log methods, installed on Client.prototype by index.js. */
export const logMethods = {
  /**
   * Create a log, or check an existing one has the same options (else `conflict`).
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {{retentionBytes?: number, retentionSeconds?: number, segmentBytes?: number}} [options]
   * @returns {Promise<boolean>} true if it was created
   */
  createLog(log, options = {}) {
    const fields = compact({
      log,
      retention_bytes: options.retentionBytes,
      retention_seconds: options.retentionSeconds,
      segment_bytes: options.segmentBytes,
    });
    return this._call("log.create", fields, { parse: (r) => Boolean(r.created) });
  },

  /**
   * Delete a log; its tails end.
   * @this {import("./client.js").Client}
   * @param {string} log
   * @returns {Promise<number>} records it held
   */
  deleteLog(log) {
    return this._call("log.delete", { log }, { parse: (r) => r.records });
  },

  /**
   * Names of the logs of this namespace, sorted.
   * @this {import("./client.js").Client}
   * @returns {Promise<string[]>}
   */
  listLogs() {
    return this._call("log.list", {});
  },

  /**
   * Where a log starts and ends, its size, groups and options.
   * @this {import("./client.js").Client}
   * @param {string} log
   * @returns {Promise<Record<string, any>>}
   */
  logStats(log) {
    return this._call("log.stats", { log });
  },

  /**
   * Append one record; resolves with its offset once stored.
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {Uint8Array | string} body
   * @param {{key?: Uint8Array | string, headers?: Record<string, string>}} [options]
   * @returns {Promise<number>}
   */
  append(log, body, options = {}) {
    let record;
    try {
      record = wireRecord({ body, key: options.key, headers: options.headers });
    } catch (err) {
      return Promise.reject(err);
    }
    return this._call("append", { log, records: [record] }, { parse: (r) => r.offset });
  },

  /**
   * Append a batch in one frame; resolves with the first offset (they are consecutive).
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {Iterable<any>} records bodies or `{body, key?, headers?}` objects (a read record works)
   * @returns {Promise<number>}
   */
  appendMany(log, records) {
    let wire;
    try {
      wire = Array.from(records, wireRecord);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._call("append", { log, records: wire }, { parse: (r) => r.offset });
  },

  /**
   * Read records from `start` (an offset, "earliest", "latest" or
   * "committed" with a group) or from `timestampMs`; `wait` seconds > 0 makes
   * an empty read a long poll.
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {{start?: number | string, timestampMs?: number, group?: string, maxRecords?: number, maxBytes?: number, wait?: number}} [options]
   * @returns {Promise<import("./records.js").LogRecord[]>}
   */
  async read(log, options = {}) {
    return (await logMethods.readBatch.call(this, log, options)).records;
  },

  /**
   * `read`, also giving `nextOffset` (where the next read should start, even
   * when nothing was read).
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {{start?: number | string, timestampMs?: number, group?: string, maxRecords?: number, maxBytes?: number, wait?: number}} [options]
   * @returns {Promise<ReadResult>}
   */
  readBatch(log, options = {}) {
    const fields = compact({
      log,
      ...position(options),
      max_records: options.maxRecords,
      max_bytes: options.maxBytes,
      wait: options.wait,
    });
    return this._call("read", fields, { parse: parseRead });
  },

  /**
   * Follow a log (see LogTail). `start` defaults to the group's committed
   * offset with a group, else "latest".
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {{start?: number | string, timestampMs?: number, group?: string, maxBytes?: number, commitEvery?: number, maxPending?: number}} [options]
   * @returns {LogTail}
   */
  tail(log, options = {}) {
    const start = options.start ?? (options.group !== undefined ? "committed" : undefined);
    const fields = compact({ log, ...position({ ...options, start }), max_bytes: options.maxBytes });
    return new LogTail(this, log, fields, options);
  },

  /**
   * Store a group's position: the next offset it will read (after processing
   * record 41, commit 42).
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {string} group
   * @param {number} offset
   * @returns {Promise<void>}
   */
  async commit(log, group, offset) {
    await this._call("commit", { log, group, offset });
  },

  /**
   * A group's committed offset, or null if it never committed.
   * @this {import("./client.js").Client}
   * @param {string} log
   * @param {string} group
   * @returns {Promise<number | null>}
   */
  committed(log, group) {
    return this._call("committed", { log, group }, { parse: (r) => r.offset ?? null });
  },
};
