/**
 * Topics: publish, publishMany, subscribe (an async iterator), bind, unbind.
 *
 *     const { subscriptions } = await mb.publish("orders.created", '{"id": 1}');
 *     const sub = mb.subscribe("orders.*");
 *     await sub.ready;                       // live: publishes from now on reach it
 *     for await (const m of sub) console.log(m.topic, m.body.toString());
 *
 * Wire: docs/protocol.md, "Topics" and the `msg` / `notice` pushes.
 */

import { asBuffer } from "./records.js";
import { Subscription } from "./subscription.js";
import { compact, toBytes, wireHeaders } from "./client.js";

/**
 * @typedef {object} TopicMessage
 * @property {string} topic the topic it was published to
 * @property {Buffer} body
 * @property {Record<string, string> | null} headers
 */

/**
 * @typedef {object} PublishResult
 * @property {number} subscriptions copies handed to subscriptions (a group counts once per message)
 * @property {number} queues copies stored in bound queues
 */

/**
 * A message for put/publish: a body, or `{body, headers}`.
 * @param {any} item
 * @returns {{body: Uint8Array, headers?: Record<string, string>}}
 */
export function wireMessage(item) {
  if (item instanceof Uint8Array || typeof item === "string" || item instanceof ArrayBuffer) {
    return { body: toBytes(item) };
  }
  if (item !== null && typeof item === "object" && "body" in item) {
    const headers = wireHeaders(item.headers);
    return headers ? { body: toBytes(item.body), headers } : { body: toBytes(item.body) };
  }
  throw new TypeError("a message is a Buffer, Uint8Array or string body, or an object {body, headers?}");
}

/**
 * Items of one `msg` push.
 * @param {any} frame
 * @returns {TopicMessage[]}
 */
function parseMessages(frame) {
  return frame.messages.map((/** @type {any} */ m) => ({
    topic: m.topic,
    body: asBuffer(m.body),
    headers: m.headers ?? null,
  }));
}

/** @param {any} r @returns {PublishResult} */
const parsePublish = (r) => ({ subscriptions: r.subscriptions, queues: r.queues });

/** Topic methods, installed on Client.prototype by index.js. */
export const topicMethods = {
  /**
   * Publish one message; resolves once the broker routed it.
   * @this {import("./client.js").Client}
   * @param {string} topic
   * @param {Uint8Array | string} body
   * @param {{headers?: Record<string, string>}} [options]
   * @returns {Promise<PublishResult>}
   */
  publish(topic, body, options = {}) {
    return this._call("publish", { topic, messages: [wireMessage({ body, headers: options.headers })] }, {
      parse: parsePublish,
    });
  },

  /**
   * Publish a batch in one frame (the fast path); results are totals.
   * @this {import("./client.js").Client}
   * @param {string} topic
   * @param {Iterable<any>} messages bodies or `{body, headers}` objects
   * @returns {Promise<PublishResult>}
   */
  publishMany(topic, messages) {
    let wire;
    try {
      wire = Array.from(messages, wireMessage);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._call("publish", { topic, messages: wire }, { parse: parsePublish });
  },

  /**
   * Subscribe to a topic pattern (`*` one word, `#` zero or more). Returns at
   * once; `await sub.ready` to know it is live, iterate it with `for await`.
   * @this {import("./client.js").Client}
   * @param {string} pattern
   * @param {{group?: string, buffer?: number, bufferBytes?: number, onOverflow?: "drop_oldest" | "disconnect", maxPending?: number}} [options]
   * @returns {Subscription<TopicMessage>}
   */
  subscribe(pattern, options = {}) {
    const fields = compact({
      pattern,
      group: options.group,
      buffer: options.buffer,
      buffer_bytes: options.bufferBytes,
      on_overflow: options.onOverflow,
    });
    return new Subscription(this, "subscribe", fields, parseMessages, { maxPending: options.maxPending });
  },

  /**
   * Keep a copy of every message matching `pattern` in `queue` (which must exist).
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {string} pattern
   * @returns {Promise<boolean>} true if the binding is new
   */
  bind(queue, pattern) {
    return this._call("bind", { queue, pattern }, { parse: (r) => Boolean(r.created) });
  },

  /**
   * Remove a binding.
   * @this {import("./client.js").Client}
   * @param {string} queue
   * @param {string} pattern
   * @returns {Promise<boolean>} true if there was one
   */
  unbind(queue, pattern) {
    return this._call("unbind", { queue, pattern }, { parse: (r) => Boolean(r.removed) });
  },
};
