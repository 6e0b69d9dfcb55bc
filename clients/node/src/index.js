/**
 * minibroker for Node.js: `connect(url)` and the four messaging models over
 * one connection. Written from docs/protocol.md.
 *
 *     import { connect } from "minibroker";
 *     const mb = await connect("minibroker://127.0.0.1:7878", { namespace: "demo" });
 *     await mb.publish("orders.created", "{}");
 *     await mb.close();
 */

import * as net from "node:net";
import * as tls from "node:tls";

import { Client, PROTOCOL_VERSION } from "./client.js";
import { BrokerError, ConnectionClosedError } from "./errors.js";
import { logMethods } from "./logs.js";
import { queueMethods } from "./queues.js";
import { rpcMethods } from "./rpc.js";
import { topicMethods } from "./topics.js";
import { parseUrl } from "./url.js";

for (const methods of [queueMethods, topicMethods, logMethods, rpcMethods]) {
  for (const [name, fn] of Object.entries(methods)) {
    Object.defineProperty(Client.prototype, name, { value: fn, writable: true, configurable: true });
  }
}

/**
 * @typedef {object} ConnectOptions
 * @property {string} [token] overrides a token in the URL
 * @property {string} [namespace] overrides `?namespace=` in the URL
 * @property {string} [clientName] shown in the broker's logs (default "minibroker-node")
 * @property {tls.ConnectionOptions | boolean} [tls] TLS options (implied by minibrokers://)
 * @property {number} [connectTimeout] seconds for TCP connect, TLS and hello (default 10)
 * @property {number} [maxPending] items a subscription buffers before it overflows or is paused (default:
 *   a topic subscription's `buffer`; 10000 for log tails and responders)
 * @property {number} [maxFrameBytes] largest frame accepted from the broker before hello (default
 *   256 MiB); raised after hello to the broker's advertised `limits.max_frame_bytes` when that is larger
 */

/**
 * Connect and say hello; resolves with a ready Client.
 * @param {string} [url] `minibroker://[token@]host[:port][?namespace=NAME]`
 * @param {ConnectOptions} [options]
 * @returns {Promise<Client>}
 */
export async function connect(url = "minibroker://127.0.0.1:7878", options = {}) {
  const address = parseUrl(url);
  const useTls = address.tls || Boolean(options.tls);
  const timeoutMs = (options.connectTimeout ?? 10) * 1000;
  const socket = await openSocket(address.host, address.port, useTls, options.tls, timeoutMs);
  const client = new Client(socket, { maxPending: options.maxPending, maxFrameBytes: options.maxFrameBytes });
  /** @type {Record<string, unknown>} */
  const hello = { version: PROTOCOL_VERSION, client: options.clientName ?? "minibroker-node" };
  const token = options.token ?? address.token;
  const namespace = options.namespace ?? address.namespace;
  if (token !== undefined) hello.token = token;
  if (namespace !== undefined) hello.namespace = namespace;
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  try {
    client.serverInfo = await Promise.race([
      // onOk runs before the next frame is read: from then on frames up to
      // the broker's advertised limit are accepted.
      client._call("hello", hello, { onOk: (info) => client._adoptServerLimits(info) }),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new ConnectionClosedError(`no answer to hello within ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (err) {
    socket.destroy();
    // A refused connection (limit_exceeded, shutting_down before any hello)
    // comes as an error without id: report the broker's reason itself.
    if (err instanceof ConnectionClosedError && err.cause instanceof BrokerError) throw err.cause;
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/**
 * @param {string} host
 * @param {number} port
 * @param {boolean} useTls
 * @param {tls.ConnectionOptions | boolean | undefined} tlsOptions
 * @param {number} timeoutMs
 * @returns {Promise<net.Socket>}
 */
function openSocket(host, port, useTls, tlsOptions, timeoutMs) {
  return new Promise((resolve, reject) => {
    const socket = useTls
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...(typeof tlsOptions === "object" ? tlsOptions : {}) })
      : net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectionClosedError(`could not connect to ${host}:${port} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.once(useTls ? "secureConnect" : "connect", () => {
      clearTimeout(timer);
      socket.removeListener("error", onError);
      resolve(socket);
    });
    /** @param {Error} err */
    const onError = (err) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once("error", onError);
  });
}

export { Client, PROTOCOL_VERSION } from "./client.js";
export * from "./errors.js";
export { Subscription, DEFAULT_MAX_PENDING } from "./subscription.js";
export { Consumer, Delivery } from "./queues.js";
export { LogTail, DEFAULT_COMMIT_EVERY } from "./logs.js";
export { IncomingRequest, Service, DEFAULT_CONCURRENCY } from "./rpc.js";
export { decodeRecords } from "./records.js";
export { crc32 } from "./crc32.js";
export { parseUrl, DEFAULT_PORT } from "./url.js";
export { encodeFrame, FrameReader, DEFAULT_MAX_INBOUND_FRAME } from "./framing.js";
