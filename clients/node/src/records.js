/**
 * Log records as the broker ships them: the storage record format
 * (docs/protocol.md, "Log record format"; docs/storage.md byte by byte).
 *
 *     u32 length   big-endian: bytes after this field (4 + payload length)
 *     u32 crc32    big-endian: CRC-32 of the payload
 *     payload      msgpack array [offset, timestamp_ms, key, headers, body]
 *
 * Frames are concatenated. Every CRC is checked, so corruption anywhere
 * between the broker's disk and this process is detected.
 */

import { Decoder } from "@msgpack/msgpack";
import { crc32 } from "./crc32.js";
import { CorruptRecordError } from "./errors.js";

/** Smallest valid `length` (payload `95 00 00 c0 c0 c4 00` plus the CRC). */
const MIN_LENGTH = 4 + 7;
/** Largest whole record frame (the broker's MAX_FRAME_SIZE, 256 MiB). */
const MAX_FRAME = 256 * 1024 * 1024;

const decoder = new Decoder();

/**
 * @typedef {object} LogRecord
 * @property {number} offset the record's offset in its log
 * @property {number} timestampMs broker time of the append, ms since the epoch
 * @property {Buffer | null} key the record key, or null
 * @property {Record<string, string> | null} headers headers, or null
 * @property {Buffer} body the record body
 */

/**
 * Decode a buffer of whole record frames, verifying every CRC and shape.
 * @param {Uint8Array} data
 * @returns {LogRecord[]}
 * @throws {CorruptRecordError}
 */
export function decodeRecords(data) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  /** @type {LogRecord[]} */
  const records = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf.length - pos < 8) throw new CorruptRecordError(`truncated record header at byte ${pos}`);
    const length = buf.readUInt32BE(pos);
    const crc = buf.readUInt32BE(pos + 4);
    const end = pos + 4 + length;
    if (length < MIN_LENGTH || length + 4 > MAX_FRAME || end > buf.length) {
      throw new CorruptRecordError(`bad or truncated record frame at byte ${pos}`);
    }
    const payload = buf.subarray(pos + 8, end);
    if (crc32(payload) !== crc) throw new CorruptRecordError(`CRC mismatch in the record at byte ${pos}`);
    records.push(recordOf(payload, pos));
    pos = end;
  }
  return records;
}

/**
 * @param {Buffer} payload
 * @param {number} pos
 * @returns {LogRecord}
 */
function recordOf(payload, pos) {
  let fields;
  try {
    fields = decoder.decode(payload);
  } catch (err) {
    throw new CorruptRecordError(`undecodable record payload at byte ${pos}: ${/** @type {Error} */ (err).message}`);
  }
  if (!Array.isArray(fields) || fields.length !== 5) {
    throw new CorruptRecordError(`record payload at byte ${pos} is not an array of 5`);
  }
  const [offset, timestampMs, key, headers, body] = fields;
  if (
    !isUint(offset) ||
    !isUint(timestampMs) ||
    !(key === null || key instanceof Uint8Array) ||
    !(body instanceof Uint8Array) ||
    !(headers === null || isStrMap(headers))
  ) {
    throw new CorruptRecordError(`record payload at byte ${pos} has the wrong shape`);
  }
  return { offset, timestampMs, key: key === null ? null : asBuffer(key), headers, body: asBuffer(body) };
}

/** @param {unknown} v */
function isUint(v) {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

/** @param {unknown} v */
function isStrMap(v) {
  if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof Uint8Array) return false;
  for (const value of Object.values(/** @type {object} */ (v))) if (typeof value !== "string") return false;
  return true;
}

/**
 * A Buffer view of `bytes` (no copy).
 * @param {Uint8Array} bytes
 * @returns {Buffer}
 */
export function asBuffer(bytes) {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
