// Logs against a real broker: append, read, tail, consumer groups.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ConflictError, NotFoundError, OffsetOutOfRangeError } from "../src/index.js";
import { brokerForFile } from "./broker.js";

const { withClient } = brokerForFile("l");

test("append assigns dense offsets; read returns CRC-checked records", () =>
  withClient(async (mb) => {
    assert.equal(await mb.createLog("events"), true);
    assert.equal(await mb.createLog("events"), false);
    await assert.rejects(mb.createLog("events", { retentionBytes: 1000 }), ConflictError);
    assert.equal(await mb.append("events", "e0", { key: "acct-1", headers: { type: "open" } }), 0);
    assert.equal(await mb.appendMany("events", ["e1", { body: Buffer.from([0, 255]), key: Buffer.from("k") }]), 1);
    const records = await mb.read("events");
    assert.deepEqual(
      records.map((r) => [r.offset, r.key?.toString() ?? null, r.headers, r.body.toString("hex")]),
      [
        [0, "acct-1", { type: "open" }, Buffer.from("e0").toString("hex")],
        [1, null, null, Buffer.from("e1").toString("hex")],
        [2, "k", null, "00ff"],
      ],
    );
    assert.ok(records.every((r) => r.timestampMs > 1_600_000_000_000));
    const page = await mb.readBatch("events", { start: 1, maxRecords: 1 });
    assert.deepEqual([page.records.map((r) => r.offset), page.nextOffset], [[1], 2]);
    const end = await mb.readBatch("events", { start: "latest" });
    assert.deepEqual([end.records, end.nextOffset], [[], 3]);
    const byTime = await mb.read("events", { timestampMs: records[0].timestampMs });
    assert.equal(byTime[0].offset, 0);
    assert.deepEqual(await mb.listLogs(), ["events"]);
    assert.equal((await mb.logStats("events")).next_offset, 3);
    await assert.rejects(mb.read("events", { start: 99 }), OffsetOutOfRangeError);
    await assert.rejects(mb.read("missing"), NotFoundError);
  }));

test("read with wait is a long poll answered by the next append", () =>
  withClient(async (mb) => {
    await mb.createLog("events");
    const waiting = mb.read("events", { start: "latest", wait: 30 });
    await mb.ping();
    await mb.append("events", "now");
    const [r] = await waiting;
    assert.equal(r.body.toString(), "now");
  }));

test("a tail replays, then follows new appends", () =>
  withClient(async (mb) => {
    await mb.createLog("events");
    await mb.appendMany("events", ["a", "b"]);
    const tail = mb.tail("events", { start: "earliest" });
    await tail.ready;
    assert.equal(tail.startOffset, 0);
    const seen = [];
    for await (const r of tail) {
      seen.push(`${r.offset}:${r.body}`);
      if (seen.length === 2) await mb.append("events", "c");
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, ["0:a", "1:b", "2:c"]);
  }));

test("a tail with a group commits as it goes and resumes after it", () =>
  withClient(async (mb) => {
    await mb.createLog("events");
    await mb.appendMany("events", ["0", "1", "2", "3", "4"]);
    assert.equal(await mb.committed("events", "proj"), null);
    const first = mb.tail("events", { group: "proj", commitEvery: 2 });
    const seen = [];
    for await (const r of first) {
      seen.push(r.offset);
      if (r.offset === 2) break; // record 2 is being processed: not counted
    }
    assert.deepEqual(seen, [0, 1, 2]);
    assert.equal(await mb.committed("events", "proj"), 2);
    const again = mb.tail("events", { group: "proj" });
    const [next] = await again.nextBatch(1);
    assert.equal(next.offset, 2);
    await again.commit();
    assert.equal(await mb.committed("events", "proj"), 3);
    await again.close();
    // Batches count as processed when the next batch is asked for.
    const batched = mb.tail("events", { group: "proj", start: 0 });
    assert.deepEqual((await batched.nextBatch(2)).map((r) => r.offset), [0, 1]);
    assert.equal(batched.position, 2);
    const rest = await batched.nextBatch(10);
    assert.deepEqual(rest.map((r) => r.offset), [2, 3, 4]);
    await batched.close(); // commits the first batch; the last one was not asked past
    assert.equal(await mb.committed("events", "proj"), 2);
    await mb.commit("events", "proj", 0);
    assert.equal(await mb.committed("events", "proj"), 0);
    const stats = await mb.logStats("events");
    assert.deepEqual(stats.groups.proj, { committed: 0, lag: 5 });
  }));

test("deleting a log ends its tails quietly", () =>
  withClient(async (mb) => {
    await mb.createLog("events");
    const tail = mb.tail("events");
    await tail.ready;
    const ended = tail.next();
    assert.equal(await mb.deleteLog("events"), 0);
    assert.deepEqual(await ended, { value: undefined, done: true });
  }));
