/**
 * The broker's error vocabulary, as JavaScript exceptions.
 *
 * Every error frame carries a stable `code` (docs/protocol.md, "Error
 * codes"); each code gets its own subclass of {@link BrokerError}, so callers
 * can either `catch (e) { if (e instanceof NotFoundError) ... }` or test
 * `e.code === "not_found"`. Unknown codes (a newer server) become a plain
 * BrokerError that still carries the code.
 */

export class BrokerError extends Error {
  /**
   * @param {string} message human-readable text from the server
   * @param {{code?: string, details?: any, cause?: unknown}} [options]
   */
  constructor(message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    /** @type {string} the wire error code */
    this.code = options.code ?? /** @type {any} */ (this.constructor).code ?? "internal";
    /** @type {any} machine-readable extras (e.g. `first_offset`), or undefined */
    this.details = options.details;
  }

  get name() {
    return this.constructor.name;
  }
}

/** @type {Map<string, typeof BrokerError>} */
const BY_CODE = new Map();

/**
 * @param {string} code
 * @param {string} name
 * @returns {typeof BrokerError}
 */
function define(code, name) {
  const cls = {
    [name]: class extends BrokerError {
      static code = code;
    },
  }[name];
  BY_CODE.set(code, cls);
  return cls;
}

export const BadFrameError = define("bad_frame", "BadFrameError");
export const TooLargeError = define("too_large", "TooLargeError");
export const UnsupportedVersionError = define("unsupported_version", "UnsupportedVersionError");
export const UnauthorizedError = define("unauthorized", "UnauthorizedError");
export const ForbiddenError = define("forbidden", "ForbiddenError");
export const UnknownOpError = define("unknown_op", "UnknownOpError");
export const BadRequestError = define("bad_request", "BadRequestError");
export const DuplicateIdError = define("duplicate_id", "DuplicateIdError");
export const InvalidNameError = define("invalid_name", "InvalidNameError");
export const NotFoundError = define("not_found", "NotFoundError");
export const ConflictError = define("conflict", "ConflictError");
export const OverflowError = define("overflow", "OverflowError");
export const LimitExceededError = define("limit_exceeded", "LimitExceededError");
export const UnknownDeliveryError = define("unknown_delivery", "UnknownDeliveryError");
export const OffsetOutOfRangeError = define("offset_out_of_range", "OffsetOutOfRangeError");
export const NoRespondersError = define("no_responders", "NoRespondersError");
export const TimeoutError = define("timeout", "TimeoutError");
export const ResponderGoneError = define("responder_gone", "ResponderGoneError");
export const ResponderError = define("responder_error", "ResponderError");
/** The answer to a request its requester withdrew (an aborted `request`): the client drops it. */
export const CancelledError = define("cancelled", "CancelledError");
export const StorageFullError = define("storage_full", "StorageFullError");
export const StorageError = define("storage_error", "StorageError");
export const ShuttingDownError = define("shutting_down", "ShuttingDownError");
export const SlowConsumerError = define("slow_consumer", "SlowConsumerError");
export const InternalError = define("internal", "InternalError");
/** Never on the wire: a call failed because the connection dropped or was closed. */
export const ConnectionClosedError = define("connection_closed", "ConnectionClosedError");
/** Never on the wire: log record bytes failed their CRC or shape check. */
export const CorruptRecordError = define("corrupt_record", "CorruptRecordError");
/** Never on the wire: the broker ended a subscription (an `end` push); `cause` says why. */
export const SubscriptionEndedError = define("subscription_ended", "SubscriptionEndedError");

/**
 * The exception for an error code from the wire.
 * @param {string} code
 * @param {string} message
 * @param {any} [details]
 * @returns {BrokerError}
 */
export function errorFromCode(code, message, details) {
  const cls = BY_CODE.get(code) ?? BrokerError;
  return new cls(message, { code, details });
}

/** Every wire code this client knows, mapped to its class. */
export const ERRORS_BY_CODE = BY_CODE;
