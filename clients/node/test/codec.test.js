// Sans-I/O pieces: framing, records and CRC, URLs, errors. No broker needed.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  BrokerError,
  CorruptRecordError,
  FrameReader,
  NotFoundError,
  TimeoutError,
  crc32,
  decodeRecords,
  encodeFrame,
  errorFromCode,
  parseUrl,
} from "../src/index.js";
import { crc32Js } from "../src/crc32.js";

/** Hex with spaces and comments, as in docs/protocol.md. */
const hex = (/** @type {string} */ s) =>
  Buffer.from(
    s
      .split("\n")
      .map((l) => l.split("#")[0])
      .join("")
      .replace(/\s+/g, ""),
    "hex",
  );

// The hello example of docs/protocol.md ("The handshake").
const HELLO = hex(`
00 00 00 23
84
  a2 6f 70 a5 68 65 6c 6c 6f
  a2 69 64 01
  a7 76 65 72 73 69 6f 6e 01
  a6 63 6c 69 65 6e 74 a4 64 65 6d 6f
`);

test("encodeFrame produces the documented hello bytes", () => {
  assert.deepEqual(encodeFrame({ op: "hello", id: 1, version: 1, client: "demo" }), HELLO);
});

test("encodeFrame leaves undefined fields out and sends bodies as bin", () => {
  const frame = encodeFrame({ op: "ping", id: 2, data: Buffer.from("hi"), absent: undefined });
  assert.deepEqual(frame, hex("00 00 00 16 83 a2 6f 70 a4 70 69 6e 67 a2 69 64 02 a4 64 61 74 61 c4 02 68 69"));
});

test("FrameReader reassembles frames split at every byte", () => {
  const frames = Buffer.concat([
    encodeFrame({ op: "ok", id: 1, result: null }),
    encodeFrame({ op: "msg", sub: 3, messages: [{ topic: "a.b", body: Buffer.from("xyz") }] }),
  ]);
  for (let cut = 0; cut <= frames.length; cut++) {
    const reader = new FrameReader();
    const got = [...reader.push(frames.subarray(0, cut)), ...reader.push(frames.subarray(cut))];
    assert.equal(got.length, 2);
    assert.deepEqual(got[0], { op: "ok", id: 1, result: null });
    assert.equal(Buffer.from(got[1].messages[0].body).toString(), "xyz");
    assert.equal(reader.pendingBytes, 0);
  }
});

test("FrameReader refuses oversized, empty and non-map frames", () => {
  assert.throws(() => new FrameReader(10).push(hex("00 00 00 0b")), { code: "bad_frame" });
  assert.throws(() => new FrameReader().push(hex("00 00 00 00")), { code: "bad_frame" });
  assert.throws(() => new FrameReader().push(hex("00 00 00 01 01")), { code: "bad_frame" });
  assert.throws(() => new FrameReader().push(hex("00 00 00 01 c1")), { code: "bad_frame" });
});

test("crc32 matches the CRC-32/ISO-HDLC check value, native and in JS", () => {
  const check = Buffer.from("123456789");
  assert.equal(crc32(check), 0xcbf43926);
  assert.equal(crc32Js(check), 0xcbf43926);
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 31) & 0xff));
  assert.equal(crc32Js(data), crc32(data));
  assert.equal(crc32Js(new Uint8Array(0)), 0);
});

// The two first frames of the segment example in docs/storage.md.
const RECORDS = hex(`
00 00 00 1f 58 17 46 46
95 00 cf 00 00 01 8b cf e5 68 00 c4 02 6b 31 81 a1 68 a1 76 c4 05 68 65 6c 6c 6f
00 00 00 19 85 da 00 e9
95 01 cf 00 00 01 8b cf e5 68 fa c0 c0 c4 06 62 6f 64 79 2d 31
`);

test("decodeRecords reads the documented record frames", () => {
  const [first, second] = decodeRecords(RECORDS);
  assert.equal(first.offset, 0);
  assert.equal(first.timestampMs, 1700000000000);
  assert.equal(first.key?.toString(), "k1");
  assert.deepEqual(first.headers, { h: "v" });
  assert.equal(first.body.toString(), "hello");
  assert.equal(second.offset, 1);
  assert.equal(second.timestampMs, 1700000000250);
  assert.equal(second.key, null);
  assert.equal(second.headers, null);
  assert.equal(second.body.toString(), "body-1");
  assert.deepEqual(decodeRecords(new Uint8Array(0)), []);
});

test("decodeRecords detects every flipped byte and every truncation", () => {
  for (let i = 0; i < RECORDS.length; i++) {
    const bad = Buffer.from(RECORDS);
    bad[i] ^= 0x40;
    assert.throws(() => decodeRecords(bad), CorruptRecordError, `flip at ${i}`);
  }
  for (let cut = 1; cut < RECORDS.length; cut++) {
    if (cut === 35) continue; // the boundary between the two frames: a valid prefix
    assert.throws(() => decodeRecords(RECORDS.subarray(0, cut)), CorruptRecordError, `cut at ${cut}`);
  }
  assert.equal(decodeRecords(RECORDS.subarray(0, 35)).length, 1);
});

test("parseUrl understands token, port, namespace and TLS", () => {
  assert.deepEqual(parseUrl("minibroker://s%40cret@example.com:7000?namespace=a.b"), {
    host: "example.com",
    port: 7000,
    tls: false,
    token: "s@cret",
    namespace: "a.b",
  });
  assert.equal(parseUrl("minibrokers://h").tls, true);
  assert.equal(parseUrl("minibrokers://h").port, 7878);
  assert.equal(parseUrl("localhost:80").port, 80);
  assert.throws(() => parseUrl("http://h"), TypeError);
});

test("parseUrl refuses unknown options, naming the known ones, and never shows the token", () => {
  assert.throws(
    () => parseUrl("minibroker://sk_live_secret@h:1?namespce=a"),
    (err) => {
      assert.ok(err instanceof TypeError);
      assert.match(err.message, /unknown URL option 'namespce'.*the known options are: namespace/);
      assert.doesNotMatch(err.message, /sk_live_secret/);
      return true;
    },
  );
  assert.doesNotMatch(String(assertThrown(() => parseUrl("http://sk_live_secret@h"))), /sk_live_secret/);
});

/** @param {() => unknown} fn */
function assertThrown(fn) {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

test("errors carry their wire code, unknown codes included", () => {
  const err = errorFromCode("not_found", "queue 'x' does not exist", { queue: "x" });
  assert.ok(err instanceof NotFoundError && err instanceof BrokerError && err instanceof Error);
  assert.equal(err.code, "not_found");
  assert.equal(err.name, "NotFoundError");
  assert.deepEqual(err.details, { queue: "x" });
  assert.equal(new TimeoutError("late").code, "timeout");
  const future = errorFromCode("brand_new", "from a newer server");
  assert.equal(future.constructor, BrokerError);
  assert.equal(future.code, "brand_new");
});
