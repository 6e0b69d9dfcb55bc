/**
 * Request/reply: request (with a timeout), respond (requests as an async
 * iterator) and serve (a handler answering every request).
 *
 *     const reply = await mb.request("svc.echo", "hi", { timeout: 1 });
 *     const service = mb.serve("svc.echo", async (req) => req.body);
 *     await service.ready;  ...  await service.stop();
 *
 * Errors a requester gets: NoRespondersError (at once, nobody serves the
 * subject), TimeoutError (no reply within `timeout` seconds),
 * ResponderGoneError (the responder went away holding it) and ResponderError
 * (the responder answered with an error, e.g. its handler threw).
 * Wire: docs/protocol.md, "Request/reply".
 */

import { asBuffer } from "./records.js";
import { ResponderError } from "./errors.js";
import { Subscription } from "./subscription.js";
import { compact, toBytes, wireHeaders } from "./client.js";

/** Handlers a `serve` runs at once by default. */
export const DEFAULT_CONCURRENCY = 64;
/** The op (and hello extension) that withdraws a request whose caller gave up. */
const WITHDRAW_OP = "request.cancel";

/**
 * @typedef {object} Reply
 * @property {Buffer} body
 * @property {Record<string, string> | null} headers
 */

/** A request pushed to a responder: answer it once, with reply() or fail(). */
export class IncomingRequest {
  /**
   * @param {import("./client.js").Client} client
   * @param {any} wire
   */
  constructor(client, wire) {
    this._client = client;
    /** @type {number} names the request in the reply */
    this.rid = wire.rid;
    /** @type {string} */
    this.subject = wire.subject;
    /** @type {Buffer} */
    this.body = asBuffer(wire.body);
    /** @type {Record<string, string> | null} */
    this.headers = wire.headers ?? null;
    /** @type {number} seconds the requester had left when the broker sent it */
    this.timeout = wire.timeout ?? 0;
    this.answered = false;
  }

  /**
   * Send the reply. Resolves true if the requester got it, false if the
   * request had already ended (a late reply is dropped, never an error).
   * Not awaiting is fine.
   * @param {Uint8Array | string} [body]
   * @param {{headers?: Record<string, string>}} [options]
   * @returns {Promise<boolean>}
   */
  reply(body = new Uint8Array(0), options = {}) {
    let fields;
    try {
      fields = compact({ rid: this.rid, body: toBytes(body), headers: wireHeaders(options.headers) });
      this._answer();
    } catch (err) {
      return Promise.reject(err);
    }
    return this._send(fields);
  }

  /**
   * Answer with an error: the requester's request() rejects with
   * ResponderError carrying `message`.
   * @param {string} message
   * @returns {Promise<boolean>}
   */
  fail(message) {
    try {
      this._answer();
    } catch (err) {
      return Promise.reject(err);
    }
    return this._send({ rid: this.rid, error: String(message) });
  }

  _answer() {
    if (this.answered) throw new Error(`request ${this.rid} on '${this.subject}' was already answered`);
    this.answered = true;
  }

  /** @param {Record<string, unknown>} fields */
  _send(fields) {
    const promise = this._client._call("reply", fields, { parse: Boolean });
    promise.catch(() => {});
    return promise;
  }
}

/**
 * What a serve handler may return: the reply body, `{body, headers}`, or
 * nothing (an empty reply, unless it answered `req` itself).
 * @param {any} result
 * @returns {{body: Uint8Array | string, headers?: Record<string, string>}}
 */
function answerOf(result) {
  if (result === undefined || result === null) return { body: new Uint8Array(0) };
  if (result instanceof Uint8Array || typeof result === "string" || result instanceof ArrayBuffer) {
    return { body: /** @type {any} */ (result) };
  }
  if (typeof result === "object" && "body" in result) return { body: result.body ?? new Uint8Array(0), headers: result.headers };
  throw new TypeError("a serve handler must return a body (Buffer, Uint8Array, string), {body, headers} or nothing");
}

/**
 * The requester's view of a handler that threw.
 * @param {unknown} err
 */
function failureMessage(err) {
  if (err instanceof ResponderError) return err.message;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

/**
 * A running `serve`: answers every request to a subject with a handler.
 */
export class Service {
  /**
   * @param {Subscription<IncomingRequest>} requests
   * @param {(req: IncomingRequest) => any} handler
   * @param {number} concurrency
   * @param {((err: unknown, req: IncomingRequest) => void) | undefined} onError
   */
  constructor(requests, handler, concurrency, onError) {
    this._requests = requests;
    this._handler = handler;
    this._concurrency = concurrency;
    this._onError = onError;
    this._running = 0;
    /** @type {(() => void) | null} */
    this._slot = null;
    /** Resolves once the responder is registered with the broker. */
    this.ready = requests.ready.then(() => this);
    this.ready.catch(() => {});
    /**
     * Resolves when the service stops (stop() or the client closed); rejects
     * if the connection drops.
     * @type {Promise<void>}
     */
    this.done = this._loop();
    this.done.catch(() => {});
  }

  async _loop() {
    for await (const req of this._requests) {
      while (this._running >= this._concurrency) {
        await new Promise((resolve) => {
          this._slot = () => resolve(undefined);
        });
      }
      this._running++;
      this._handle(req).finally(() => {
        this._running--;
        const slot = this._slot;
        this._slot = null;
        if (slot) slot();
      });
    }
  }

  /** @param {IncomingRequest} req */
  async _handle(req) {
    try {
      const result = await this._handler(req);
      if (!req.answered) {
        const answer = answerOf(result);
        await req.reply(answer.body, { headers: answer.headers });
      }
    } catch (err) {
      if (!(err instanceof ResponderError) && this._onError) {
        try {
          this._onError(err, req);
        } catch {
          // A failing error hook must not stop the service.
        }
      }
      if (!req.answered) {
        // The only way this fails is the connection going away: then nobody
        // is left to tell, and the loop ends with the connection error.
        await req.fail(failureMessage(err)).catch(() => {});
      }
    }
  }

  /**
   * Unregister the responder. Requests it received but has not answered
   * fail at once with `responder_gone` for their requesters; handlers
   * still running finish, and their late replies are dropped.
   */
  async stop() {
    await this._requests.close();
    await this.done.catch(() => {});
  }
}

/** Request/reply methods, installed on Client.prototype by index.js. */
export const rpcMethods = {
  /**
   * Send a request to one responder of `subject` and wait for its reply.
   * With a `signal` that aborts first, the promise rejects with the
   * signal's reason and the request is withdrawn from the broker
   * (`request.cancel`, if the broker announces it): the broker forgets it
   * instead of keeping it until its deadline, and a responder's reply to it
   * is dropped as a late one.
   * @this {import("./client.js").Client}
   * @param {string} subject
   * @param {Uint8Array | string} [body]
   * @param {{headers?: Record<string, string>, timeout?: number, signal?: AbortSignal}} [options] timeout in seconds (default 5)
   * @returns {Promise<Reply>}
   */
  request(subject, body = new Uint8Array(0), options = {}) {
    let fields;
    const signal = options.signal;
    try {
      signal?.throwIfAborted();
      fields = compact({ subject, body: toBytes(body), headers: wireHeaders(options.headers), timeout: options.timeout });
    } catch (err) {
      return Promise.reject(err);
    }
    let id = 0;
    const call = this._call("request", fields, {
      parse: (r) => ({ body: asBuffer(r.body), headers: r.headers ?? null }),
      onId: (/** @type {number} */ sent) => {
        id = sent;
      },
    });
    if (!signal) return call;
    return new Promise((resolve, reject) => {
      const withdraw = () => {
        // Nobody waits for the answer any more: drop it when it comes (the
        // broker answers a withdrawn request with `cancelled`), and take the
        // request back unless it was answered already.
        if (this._pending.delete(id) && this.serverInfo.extensions?.includes(WITHDRAW_OP)) {
          this._post(WITHDRAW_OP, { request: id });
        }
        reject(signal.reason);
      };
      signal.addEventListener("abort", withdraw, { once: true });
      call.then(resolve, reject).finally(() => signal.removeEventListener("abort", withdraw));
    });
  },

  /**
   * Register as a responder of `subject`; iterate the requests as they come
   * and answer each with `req.reply()` or `req.fail()`. Responders sharing a
   * `group` share the requests.
   * @this {import("./client.js").Client}
   * @param {string} subject
   * @param {{group?: string, maxPending?: number}} [options]
   * @returns {Subscription<IncomingRequest>}
   */
  respond(subject, options = {}) {
    return new Subscription(
      this,
      "respond",
      compact({ subject, group: options.group }),
      (frame) => frame.requests.map((/** @type {any} */ r) => new IncomingRequest(this, r)),
      { maxPending: options.maxPending },
    );
  },

  /**
   * Answer every request to `subject` with `await handler(req)`, up to
   * `concurrency` at once. The handler returns the reply body, `{body,
   * headers}`, or nothing after answering `req` itself; if it throws, the
   * requester gets ResponderError with the error's text (throw
   * `new ResponderError(msg)` to send just `msg`).
   *
   * `maxPending` bounds the requests received and not yet handed to a
   * handler (those waiting for a free slot of `concurrency`), as for
   * `respond`: past it the responder is paused in the broker, where further
   * requests wait (and may time out there) until the handlers catch up.
   * Its own, else the client's `maxPending`, else 10,000.
   * @this {import("./client.js").Client}
   * @param {string} subject
   * @param {(req: IncomingRequest) => any} handler
   * @param {{group?: string, concurrency?: number, maxPending?: number, onError?: (err: unknown, req: IncomingRequest) => void}} [options]
   * @returns {Service}
   */
  serve(subject, handler, options = {}) {
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError("concurrency must be an integer >= 1");
    const requests = rpcMethods.respond.call(this, subject, { group: options.group, maxPending: options.maxPending });
    return new Service(requests, handler, concurrency, options.onError);
  },
};
