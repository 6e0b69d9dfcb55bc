/**
 * Framing: a 4-byte big-endian length, then one msgpack map (docs/protocol.md,
 * "Framing"). Sans-I/O: bytes in, values out, so it can be tested without a
 * socket.
 *
 * Decoded `bin` values are views into the received chunk (no copy); chunks
 * are never reused or overwritten, so the views stay valid for as long as
 * anyone holds them.
 */

import { Decoder, Encoder } from "@msgpack/msgpack";
import { BadFrameError } from "./errors.js";

/** Largest frame this client accepts from a server unless told otherwise (256 MiB). */
export const DEFAULT_MAX_INBOUND_FRAME = 256 * 1024 * 1024;

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

/**
 * One frame's bytes: the length prefix and the msgpack map of `value`.
 * Fields set to `undefined` are left out (absent, the same as nil).
 * @param {Record<string, unknown>} value
 * @returns {Buffer}
 */
export function encodeFrame(value) {
  const body = encoder.encodeSharedRef(value);
  const frame = Buffer.allocUnsafe(4 + body.byteLength);
  frame.writeUInt32BE(body.byteLength, 0);
  frame.set(body, 4);
  return frame;
}

/**
 * Turn a byte stream into frames: feed chunks with `push`, get every complete
 * frame's decoded map back.
 */
export class FrameReader {
  /** @param {number} [maxFrameBytes] */
  constructor(maxFrameBytes = DEFAULT_MAX_INBOUND_FRAME) {
    this.maxFrameBytes = maxFrameBytes;
    /** @type {Buffer[]} bytes of an incomplete frame, waiting for more */
    this._parts = [];
    this._partsLength = 0;
    /** Bytes the incomplete frame needs in all (0 while its length is not known yet). */
    this._need = 0;
  }

  /**
   * Add received bytes; return the values of every frame completed by them.
   * @param {Buffer} chunk
   * @returns {any[]}
   * @throws {BadFrameError} on an oversized, empty or undecodable frame
   */
  push(chunk) {
    let buf = chunk;
    if (this._partsLength) {
      this._parts.push(chunk);
      this._partsLength += chunk.length;
      // A big frame arrives in many chunks: join them once, when it is
      // complete, not at every chunk (that would copy quadratically).
      if (this._partsLength < this._need) return [];
      buf = Buffer.concat(this._parts, this._partsLength);
      this._parts = [];
      this._partsLength = 0;
    }
    const frames = [];
    let pos = 0;
    const end = buf.length;
    while (end - pos >= 4) {
      const length = buf.readUInt32BE(pos);
      if (length === 0 || length > this.maxFrameBytes) {
        throw new BadFrameError(
          length === 0
            ? "the server sent an empty frame"
            : `the server sent a frame of ${length} bytes, above this client's limit of ${this.maxFrameBytes}`,
        );
      }
      if (end - pos - 4 < length) break;
      frames.push(decodeBody(buf.subarray(pos + 4, pos + 4 + length)));
      pos += 4 + length;
    }
    if (pos < end) {
      // A view, not a copy: chunks are never reused.
      const rest = buf.subarray(pos);
      this._parts.push(rest);
      this._partsLength = rest.length;
      this._need = rest.length >= 4 ? 4 + rest.readUInt32BE(0) : 0;
    }
    return frames;
  }

  /** Bytes held for a frame not yet complete. */
  get pendingBytes() {
    return this._partsLength;
  }
}

/**
 * @param {Uint8Array} body
 * @returns {any}
 */
function decodeBody(body) {
  let value;
  try {
    value = decoder.decode(body);
  } catch (err) {
    throw new BadFrameError(`the server sent an undecodable frame: ${/** @type {Error} */ (err).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) {
    throw new BadFrameError("the server sent a frame that is not a map");
  }
  return value;
}
