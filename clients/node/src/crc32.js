/**
 * CRC-32/ISO-HDLC (the zip/PNG/zlib CRC), used by log records.
 *
 * Node's zlib has a native `crc32` from 20.15/22.2 on; older Node 20 releases
 * get the classic table-driven version below (reflected polynomial
 * 0xEDB88320, initial value and final XOR 0xFFFFFFFF). Both give
 * crc32("123456789") === 0xCBF43926.
 */

import * as zlib from "node:zlib";

/** @type {Uint32Array | undefined} */
let table;

function makeTable() {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

/**
 * The table-driven CRC-32, in plain JavaScript (exported for tests).
 * @param {Uint8Array} data
 * @returns {number} unsigned 32-bit CRC
 */
export function crc32Js(data) {
  const t = (table ??= makeTable());
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = t[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const native = /** @type {((data: Uint8Array) => number) | undefined} */ (
  /** @type {any} */ (zlib).crc32
);

/**
 * CRC-32 of `data` (native when this Node has it).
 * @type {(data: Uint8Array) => number}
 */
export const crc32 = native ? (data) => native(data) >>> 0 : crc32Js;
