// The frame limit: the client takes the broker's advertised limit from hello,
// and the broker keeps every frame within it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { DEFAULT_MAX_INBOUND_FRAME, TooLargeError, connect } from "../src/index.js";
import { freshNamespace, startBroker } from "./broker.js";

const KIB = 1024;
const MIB = 1024 * KIB;

/** @type {Awaited<ReturnType<typeof startBroker>>} a broker with 1 MiB frames */
let broker;
/** @type {Awaited<ReturnType<typeof startBroker>>} a broker with 64 KiB frames */
let small;
before(async () => {
  [broker, small] = await Promise.all([
    startBroker(["--max-frame-bytes", String(MIB)]),
    startBroker(["--max-frame-bytes", String(64 * KIB)]),
  ]);
});
after(async () => {
  await Promise.all([broker?.stop(), small?.stop()]);
});

/** @param {number} i @param {number} size */
function numbered(i, size) {
  const body = Buffer.alloc(size, 0x78);
  body.writeUInt32BE(i, 0);
  return body;
}

test("hello raises the client's frame limit to the broker's, so bigger answers arrive", async () => {
  // This client starts refusing frames above 64 KiB; the broker advertises 1 MiB.
  const mb = await connect(broker.url(freshNamespace("frames")), { maxFrameBytes: 64 * KIB });
  try {
    assert.equal(mb.serverInfo.limits.max_frame_bytes, MIB);
    assert.equal(mb.maxFrameBytes, MIB);
    await mb.createLog("big");
    const bodies = Array.from({ length: 16 }, (_, i) => numbered(i, 30 * KIB));
    await mb.appendMany("big", bodies.slice(0, 8));
    await mb.appendMany("big", bodies.slice(8));
    // One answer of about 480 KiB: above the client's own 64 KiB.
    const records = await mb.read("big", { start: 0, maxBytes: MIB });
    assert.deepEqual(
      records.map((r) => r.body.readUInt32BE(0)),
      bodies.map((_, i) => i),
    );
    assert.equal((await mb.ping("still here")).toString(), "still here");
  } finally {
    await mb.close();
  }
});

test("a broker advertising less never lowers the client's limit", async () => {
  const mb = await connect(small.url(freshNamespace("frames")));
  try {
    assert.equal(mb.serverInfo.limits.max_frame_bytes, 64 * KIB);
    assert.equal(mb.maxFrameBytes, DEFAULT_MAX_INBOUND_FRAME);
  } finally {
    await mb.close();
  }
});

test("a read asking for 10 MiB from a 64 KiB broker gets what fits, then the rest", async () => {
  // Strict: this client refuses any frame above the broker's 64 KiB.
  const mb = await connect(small.url(freshNamespace("frames")), { maxFrameBytes: 64 * KIB });
  try {
    await mb.createLog("big");
    const bodies = Array.from({ length: 60 }, (_, i) => numbered(i, 4 * KIB));
    for (let i = 0; i < bodies.length; i += 10) await mb.appendMany("big", bodies.slice(i, i + 10));
    const seen = [];
    let start = 0;
    let answers = 0;
    while (start < bodies.length) {
      const page = await mb.readBatch("big", { start, maxRecords: 10_000, maxBytes: 10 * MIB });
      assert.ok(page.records.length > 0);
      seen.push(...page.records.map((r) => r.body.readUInt32BE(0)));
      start = page.nextOffset;
      answers += 1;
    }
    assert.deepEqual(seen, bodies.map((_, i) => i));
    assert.ok(answers >= 4, `${answers} answers`);
    assert.equal((await mb.ping("ok")).toString(), "ok");
  } finally {
    await mb.close();
  }
});

test("a request above the broker's frame limit is refused unsent, and the connection carries on", async () => {
  const mb = await connect(small.url(freshNamespace("frames")));
  try {
    assert.equal(mb.sendLimit, 64 * KIB);
    await mb.declareQueue("jobs");
    for (const call of [
      () => mb.put("jobs", Buffer.alloc(64 * KIB + 1)),
      () => mb.publish("news", Buffer.alloc(64 * KIB + 1)),
      () => mb.appendMany("events", Array.from({ length: 70 }, () => Buffer.alloc(KIB))),
    ]) {
      await assert.rejects(call(), (err) => {
        assert.ok(err instanceof TooLargeError, String(err));
        assert.equal(err.details.limit, 64 * KIB);
        assert.match(err.message, /nothing was sent/);
        return true;
      });
    }
    assert.equal(mb.isClosed, false);
    assert.equal((await mb.ping("still here")).toString(), "still here");
    await mb.put("jobs", Buffer.from("small"));
    const [delivery] = await mb.fetch("jobs");
    assert.equal(delivery.body.toString(), "small");
  } finally {
    await mb.close();
  }
});
