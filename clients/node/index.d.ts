// Type declarations for the minibroker Node.js client (src/ is plain JS).
// Times are in seconds, as on the wire; bodies go out as bytes (strings are
// sent as UTF-8) and come back as Buffers.

/// <reference types="node" />
import type { ConnectionOptions } from "node:tls";
import type { Socket } from "node:net";

export type Bytes = Uint8Array | string;
export type Headers = Record<string, string>;

// ------------------------------------------------------------------ errors

export class BrokerError extends Error {
  constructor(message: string, options?: { code?: string; details?: any; cause?: unknown });
  /** The wire error code, e.g. "not_found". */
  code: string;
  /** Machine-readable extras for some codes (e.g. `first_offset`), or undefined. */
  details: any;
  static code: string;
}
export class BadFrameError extends BrokerError {}
export class TooLargeError extends BrokerError {}
export class UnsupportedVersionError extends BrokerError {}
export class UnauthorizedError extends BrokerError {}
export class ForbiddenError extends BrokerError {}
export class UnknownOpError extends BrokerError {}
export class BadRequestError extends BrokerError {}
export class InvalidNameError extends BrokerError {}
export class NotFoundError extends BrokerError {}
export class ConflictError extends BrokerError {}
export class OverflowError extends BrokerError {}
export class LimitExceededError extends BrokerError {}
export class UnknownDeliveryError extends BrokerError {}
export class OffsetOutOfRangeError extends BrokerError {}
export class NoRespondersError extends BrokerError {}
export class TimeoutError extends BrokerError {}
export class ResponderGoneError extends BrokerError {}
export class ResponderError extends BrokerError {}
/** The broker's answer to a withdrawn request (code "cancelled"); an aborted `request` rejects with its signal's reason instead. */
export class CancelledError extends BrokerError {}
export class StorageFullError extends BrokerError {}
export class StorageError extends BrokerError {}
export class ShuttingDownError extends BrokerError {}
export class SlowConsumerError extends BrokerError {}
export class InternalError extends BrokerError {}
/** Client-side: the connection dropped or was closed (code "connection_closed"). */
export class ConnectionClosedError extends BrokerError {}
/** Client-side: log record bytes failed their CRC or shape check (code "corrupt_record"). */
export class CorruptRecordError extends BrokerError {}
/** Client-side: the broker ended a subscription with an `end` push; `cause` is the broker's error. */
export class SubscriptionEndedError extends BrokerError {}
export function errorFromCode(code: string, message: string, details?: any): BrokerError;
export const ERRORS_BY_CODE: Map<string, typeof BrokerError>;

// -------------------------------------------------------------- connection

export interface ConnectOptions {
  /** Overrides a token in the URL. */
  token?: string;
  /** Overrides `?namespace=` in the URL. */
  namespace?: string;
  /** Shown in the broker's logs (default "minibroker-node"). */
  clientName?: string;
  /** TLS options; implied (with defaults) by a minibrokers:// URL. */
  tls?: ConnectionOptions | boolean;
  /** Seconds for TCP connect, TLS and hello (default 10). */
  connectTimeout?: number;
  /** Items a subscription buffers unread (default 10000); past that a topic subscription applies its onOverflow, a tail or responder is paused in the broker. */
  maxPending?: number;
  /**
   * Largest frame accepted from the broker before hello (default 256 MiB). After hello it is
   * raised to the broker's advertised `limits.max_frame_bytes` if that is larger.
   */
  maxFrameBytes?: number;
}

/** Connect to `minibroker://[token@]host[:port][?namespace=NAME]` and say hello. */
export function connect(url?: string, options?: ConnectOptions): Promise<Client>;

export interface ServerInfo {
  server: string;
  version: string;
  protocol: number;
  connection: number;
  namespace: string;
  features: string[];
  fsync: "always" | "batch" | "never";
  limits: {
    max_frame_bytes: number;
    max_message_bytes: number;
    max_batch: number;
    max_subscriptions: number;
    max_pending_requests: number;
    [key: string]: number;
  };
  [key: string]: unknown;
}

/** A message to put or publish: a body, or a body with headers. */
export type MessageInput = Bytes | { body: Bytes; headers?: Headers | null };
/** A record to append: a body, or a body with key and headers (a read LogRecord works). */
export type RecordInput = Bytes | { body: Bytes; key?: Bytes | null; headers?: Headers | null };

export class Client {
  constructor(socket: Socket, options?: { maxPending?: number; maxFrameBytes?: number });
  /** The hello result. */
  serverInfo: ServerInfo;
  /** Items each subscription may hold unread, if `connect` was given `maxPending`. */
  maxPending: number | undefined;
  /** Largest frame accepted from the broker; hello raises it to the broker's advertised limit. */
  readonly maxFrameBytes: number;
  /** The largest frame the broker accepts (from hello); a bigger request rejects with TooLargeError, unsent. */
  readonly sendLimit: number | null;
  /** Resolves (never rejects) with the reason once the connection is closed. */
  readonly closed: Promise<Error>;
  readonly isClosed: boolean;
  /** True while the socket's write buffer is full. */
  readonly needsDrain: boolean;
  /** Resolves when the socket can take more data (for producers that do not await each call). */
  drained(): Promise<void>;
  /** Close: queued frames are still sent, pending calls fail, subscriptions end quietly. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  /** Round trip; resolves with `data` echoed back (null without data). */
  ping(data?: Bytes): Promise<Buffer | null>;
  /** Delete a namespace with everything in it; its connections are closed. False if nothing was there. */
  dropNamespace(name: string): Promise<boolean>;
  /** Low level: send any request and resolve with its raw `ok` result. */
  _call(op: string, fields: Record<string, unknown>): Promise<any>;

  // queues
  declareQueue(
    queue: string,
    options?: {
      maxLength?: number;
      maxLengthBytes?: number;
      overflow?: "reject_publish" | "drop_head";
      messageTtl?: number;
      visibilityTimeout?: number;
      maxDeliveries?: number;
      deadLetterQueue?: string;
      durable?: boolean;
    },
  ): Promise<boolean>;
  deleteQueue(queue: string): Promise<number>;
  purgeQueue(queue: string): Promise<number>;
  listQueues(): Promise<Array<{ queue: string; ready: number; in_flight: number; consumers: number; durable: boolean }>>;
  queueStats(queue: string): Promise<Record<string, any>>;
  inspectQueue(queue: string, options?: { limit?: number }): Promise<{ ready: any[]; in_flight: any[]; delayed: any[] }>;
  put(queue: string, body: Bytes, options?: { headers?: Headers }): Promise<number>;
  putMany(queue: string, messages: Iterable<MessageInput>): Promise<number>;
  fetch(queue: string, options?: { maxMessages?: number; wait?: number; visibilityTimeout?: number }): Promise<Delivery[]>;
  ack(deliveries: Delivery | Delivery[]): Promise<number>;
  ack(queue: string, deliveryIds: number | number[]): Promise<number>;
  nack(deliveries: Delivery | Delivery[], options?: NackOptions): Promise<number>;
  nack(queue: string, deliveryIds: number | number[], options?: NackOptions): Promise<number>;
  consume(queue: string, options?: ConsumeOptions): Consumer;

  // topics
  publish(topic: string, body: Bytes, options?: { headers?: Headers }): Promise<PublishResult>;
  publishMany(topic: string, messages: Iterable<MessageInput>): Promise<PublishResult>;
  subscribe(
    pattern: string,
    options?: {
      group?: string;
      buffer?: number;
      /** Bytes the broker buffers for this subscriber when it falls behind (default 16 MiB). */
      bufferBytes?: number;
      onOverflow?: "drop_oldest" | "disconnect";
      maxPending?: number;
    },
  ): Subscription<TopicMessage>;
  bind(queue: string, pattern: string): Promise<boolean>;
  unbind(queue: string, pattern: string): Promise<boolean>;

  // logs
  createLog(log: string, options?: { retentionBytes?: number; retentionSeconds?: number; segmentBytes?: number }): Promise<boolean>;
  deleteLog(log: string): Promise<number>;
  listLogs(): Promise<string[]>;
  logStats(log: string): Promise<Record<string, any>>;
  append(log: string, body: Bytes, options?: { key?: Bytes; headers?: Headers }): Promise<number>;
  appendMany(log: string, records: Iterable<RecordInput>): Promise<number>;
  read(log: string, options?: ReadOptions): Promise<LogRecord[]>;
  readBatch(log: string, options?: ReadOptions): Promise<{ records: LogRecord[]; nextOffset: number }>;
  tail(log: string, options?: TailOptions): LogTail;
  commit(log: string, group: string, offset: number): Promise<void>;
  committed(log: string, group: string): Promise<number | null>;

  // request/reply
  /** With `signal`: an abort rejects with its reason and withdraws the request from the broker (`request.cancel`). */
  request(
    subject: string,
    body?: Bytes,
    options?: { headers?: Headers; timeout?: number; signal?: AbortSignal },
  ): Promise<Reply>;
  respond(subject: string, options?: { group?: string; maxPending?: number }): Subscription<IncomingRequest>;
  serve(
    subject: string,
    handler: (req: IncomingRequest) => HandlerResult | Promise<HandlerResult>,
    options?: {
      group?: string;
      concurrency?: number;
      /** Requests waiting for a free handler slot before the responder is paused in the broker (default: the client's, else 10000). */
      maxPending?: number;
      onError?: (err: unknown, req: IncomingRequest) => void;
    },
  ): Service;
}

export const PROTOCOL_VERSION: 1;

// ----------------------------------------------------------- subscriptions

export const DEFAULT_MAX_PENDING: number;

/** A push subscription: iterate with `for await`; `break` unsubscribes. */
export class Subscription<T> implements AsyncIterableIterator<T> {
  /** Resolves once the broker confirmed the subscription; rejects if it refused it. */
  readonly ready: Promise<this>;
  /** The broker's id for it, once live. */
  sub: number | null;
  /** The creating request's `ok` result. */
  info: any;
  /** Messages dropped for this subscriber: by the broker (`notice` pushes) or by this client's full buffer. */
  dropped: number;
  onNotice: ((dropped: number) => void) | null;
  /** Items received and not yet taken. */
  readonly pending: number;
  /** undefined while live, null if it ended quietly, else the error. */
  readonly endedWith: unknown;
  next(): Promise<IteratorResult<T, undefined>>;
  /** Wait for at least one item, then take up to `max` ([] once ended). */
  nextBatch(max?: number): Promise<T[]>;
  close(): Promise<void>;
  return(): Promise<IteratorResult<T, undefined>>;
  [Symbol.asyncIterator](): this;
  [Symbol.asyncDispose](): Promise<void>;
}

// ------------------------------------------------------------------ queues

export interface NackOptions {
  /** true (default): back to the front of the queue; false: dead-letter (or drop). */
  requeue?: boolean;
  /** Seconds before a requeued message is ready again. */
  delay?: number;
}

export interface ConsumeOptions {
  /** Most deliveries held unsettled (and fetched at once); default 100. */
  prefetch?: number;
  /** Long-poll seconds per fetch; default 5. */
  wait?: number;
  /** This consumer's visibility timeout (seconds); default: the queue's. */
  visibilityTimeout?: number;
}

export class Delivery {
  readonly queue: string;
  readonly deliveryId: number;
  readonly body: Buffer;
  readonly headers: Headers | null;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** ms since the epoch, of the original put. */
  readonly publishedAt: number;
  settled: boolean;
  /** Batched with the other acks of this event-loop turn. */
  ack(): Promise<void>;
  nack(options?: NackOptions): Promise<void>;
}

export class Consumer implements AsyncIterableIterator<Delivery> {
  readonly queue: string;
  readonly prefetch: number;
  /** Deliveries yielded and not settled yet. */
  readonly unsettled: number;
  next(): Promise<IteratorResult<Delivery, undefined>>;
  /** Stop: withdraws a parked long poll (`fetch.cancel`), sends pending acks,
   * gives fetched, unyielded deliveries back. */
  close(): Promise<void>;
  return(): Promise<IteratorResult<Delivery, undefined>>;
  [Symbol.asyncIterator](): this;
}

// ------------------------------------------------------------------ topics

export interface TopicMessage {
  topic: string;
  body: Buffer;
  headers: Headers | null;
}

export interface PublishResult {
  /** Copies handed to subscriptions (a group counts once per message). */
  subscriptions: number;
  /** Copies stored in bound queues. */
  queues: number;
}

// -------------------------------------------------------------------- logs

export interface LogRecord {
  offset: number;
  timestampMs: number;
  key: Buffer | null;
  headers: Headers | null;
  body: Buffer;
}

export type Start = number | "earliest" | "latest" | "committed";

export interface ReadOptions {
  start?: Start;
  timestampMs?: number;
  group?: string;
  maxRecords?: number;
  maxBytes?: number;
  /** Long-poll seconds when nothing is readable yet. */
  wait?: number;
}

export interface TailOptions {
  /** Default: "committed" with a group, else "latest". */
  start?: Start;
  timestampMs?: number;
  group?: string;
  maxBytes?: number;
  /** Processed records between commits (with a group); default 1000. */
  commitEvery?: number;
  maxPending?: number;
}

export const DEFAULT_COMMIT_EVERY: number;

export class LogTail extends Subscription<LogRecord> {
  readonly log: string;
  readonly group: string | undefined;
  commitEvery: number;
  /** The offset the tail started at, once ready. */
  readonly startOffset: number | null;
  /** Offset of the next record this tail will hand out. */
  readonly position: number | null;
  /** Commit now: everything handed out so far counts as processed. */
  commit(): Promise<void>;
}

/** Decode a buffer of storage record frames, checking every CRC. */
export function decodeRecords(data: Uint8Array): LogRecord[];
/** CRC-32/ISO-HDLC. */
export function crc32(data: Uint8Array): number;

// ----------------------------------------------------------- request/reply

export interface Reply {
  body: Buffer;
  headers: Headers | null;
}

export type HandlerResult = Bytes | { body?: Bytes; headers?: Headers } | undefined | null | void;

export class IncomingRequest {
  readonly rid: number;
  readonly subject: string;
  readonly body: Buffer;
  readonly headers: Headers | null;
  /** Seconds the requester had left when the broker sent it. */
  readonly timeout: number;
  answered: boolean;
  /** true if the requester got it, false if the request had already ended. */
  reply(body?: Bytes, options?: { headers?: Headers }): Promise<boolean>;
  fail(message: string): Promise<boolean>;
}

export const DEFAULT_CONCURRENCY: number;

export class Service {
  /** Resolves once the responder is registered. */
  readonly ready: Promise<this>;
  /** Resolves when the service stops; rejects if the connection drops. */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

// ----------------------------------------------------------------- helpers

export const DEFAULT_PORT: 7878;
export function parseUrl(url: string): {
  host: string;
  port: number;
  tls: boolean;
  token: string | undefined;
  namespace: string | undefined;
};
/** Largest frame a client accepts before hello tells it the broker's limit (256 MiB). */
export const DEFAULT_MAX_INBOUND_FRAME: number;
export function encodeFrame(value: Record<string, unknown>): Buffer;
export class FrameReader {
  constructor(maxFrameBytes?: number);
  /** Largest frame accepted; a bigger length prefix throws BadFrameError. */
  maxFrameBytes: number;
  push(chunk: Buffer): any[];
  readonly pendingBytes: number;
}
