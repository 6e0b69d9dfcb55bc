// Queues against a real broker: declare, put, fetch, ack/nack, consume.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ConflictError, Delivery, OverflowError, UnknownDeliveryError, connect } from "../src/index.js";
import { brokerForFile } from "./broker.js";

const { url, withClient } = brokerForFile("q");

test("declare is idempotent with the same options, a conflict with others", () =>
  withClient(async (mb) => {
    assert.equal(await mb.declareQueue("jobs", { visibilityTimeout: 10, maxDeliveries: 3 }), true);
    assert.equal(await mb.declareQueue("jobs", { visibilityTimeout: 10, maxDeliveries: 3 }), false);
    const err = await mb.declareQueue("jobs", { visibilityTimeout: 11 }).catch((e) => e);
    assert.ok(err instanceof ConflictError);
    assert.equal(err.code, "conflict");
    const [listed] = await mb.listQueues();
    assert.equal(listed.queue, "jobs");
    assert.equal((await mb.queueStats("jobs")).options.max_deliveries, 3);
  }));

test("put, fetch and ack: bodies, headers, counts and times", () =>
  withClient(async (mb) => {
    await mb.declareQueue("jobs");
    assert.equal(await mb.put("jobs", Buffer.from([0, 1, 2, 255]), { headers: { kind: "bin" } }), 1);
    assert.equal(await mb.putMany("jobs", ["b", { body: "c", headers: { k: "v" } }]), 2);
    const before = Date.now();
    const batch = await mb.fetch("jobs", { maxMessages: 10 });
    assert.deepEqual(
      batch.map((d) => [d.body.toString("hex"), d.headers, d.deliveryCount]),
      [
        ["000102ff", { kind: "bin" }, 1],
        [Buffer.from("b").toString("hex"), null, 1],
        [Buffer.from("c").toString("hex"), { k: "v" }, 1],
      ],
    );
    assert.ok(batch.every((d) => d instanceof Delivery && d.queue === "jobs"));
    assert.ok(Math.abs(batch[0].publishedAt - before) < 60_000);
    assert.equal(await mb.ack(batch), 3);
    assert.deepEqual(await mb.fetch("jobs"), []);
    assert.equal((await mb.queueStats("jobs")).acked, 3);
  }));

test("nack requeues to the front with a raised count; requeue false dead-letters", () =>
  withClient(async (mb) => {
    await mb.declareQueue("dead");
    await mb.declareQueue("jobs", { deadLetterQueue: "dead" });
    await mb.putMany("jobs", ["first", "second"]);
    const [first] = await mb.fetch("jobs");
    await first.nack();
    const again = await mb.fetch("jobs", { maxMessages: 2 });
    assert.deepEqual(
      again.map((d) => [d.body.toString(), d.deliveryCount]),
      [
        ["first", 2],
        ["second", 1],
      ],
    );
    assert.equal(await mb.nack(again, { requeue: false }), 2);
    const dead = await mb.fetch("dead", { maxMessages: 10 });
    assert.deepEqual(dead.map((d) => d.body.toString()), ["first", "second"]);
    // By queue name and ids as well.
    assert.equal(await mb.ack("dead", dead.map((d) => d.deliveryId)), 2);
  }));

test("ack of an unknown delivery fails with its code and ids; the others still settle", () =>
  withClient(async (mb) => {
    await mb.declareQueue("jobs");
    await mb.putMany("jobs", ["a", "b"]);
    const [a, b] = await mb.fetch("jobs", { maxMessages: 2 });
    const err = await mb.ack("jobs", [a.deliveryId, 999999]).catch((e) => e);
    assert.ok(err instanceof UnknownDeliveryError);
    assert.deepEqual(err.details.deliveries, [999999]);
    // Batched acks: the bad id fails alone, the good one is retried and settles.
    const fake = new Delivery(mb, "jobs", { delivery_id: 999998, body: new Uint8Array(0), delivery_count: 1, published_at: 0 });
    const results = await Promise.allSettled([a.ack(), b.ack(), fake.ack()]);
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled", "rejected"]);
    assert.equal((await mb.queueStats("jobs")).acked, 2);
  }));

test("a long-poll fetch is answered by a put from another client", () =>
  withClient(async (mb) => {
    await mb.declareQueue("jobs");
    const producer = await connect(url(mb.serverInfo.namespace));
    try {
      const waiting = mb.fetch("jobs", { wait: 30, maxMessages: 5 });
      await mb.ping();
      await producer.put("jobs", "late");
      const [d] = await waiting;
      assert.equal(d.body.toString(), "late");
    } finally {
      await producer.close();
    }
  }));

test("overflow: a full reject_publish queue refuses the whole batch", () =>
  withClient(async (mb) => {
    await mb.declareQueue("small", { maxLength: 2 });
    await mb.putMany("small", ["a", "b"]);
    await assert.rejects(mb.put("small", "c"), OverflowError);
    assert.equal((await mb.inspectQueue("small")).ready.length, 2);
  }));

test("overflow: a byte limit refuses a put past maxLengthBytes, drop_head trims to it", () =>
  withClient(async (mb) => {
    await mb.declareQueue("bytes", { maxLengthBytes: 10 });
    await mb.putMany("bytes", ["12345", "67890"]);
    await assert.rejects(mb.put("bytes", "x"), OverflowError);
    await mb.declareQueue("trimmed", { maxLengthBytes: 10, overflow: "drop_head" });
    await mb.putMany("trimmed", ["12345", "67890", "abc"]);
    const ready = (await mb.inspectQueue("trimmed")).ready.map((m) => Buffer.from(m.body).toString());
    assert.deepEqual(ready, ["67890", "abc"]);
    assert.equal((await mb.queueStats("trimmed")).options.max_length_bytes, 10);
  }));

test("consume: every message once, in order, never more than prefetch unsettled", () =>
  withClient(async (mb) => {
    await mb.declareQueue("jobs");
    const bodies = Array.from({ length: 1000 }, (_, i) => `m${i}`);
    await mb.putMany("jobs", bodies);
    const consumer = mb.consume("jobs", { prefetch: 64, wait: 0.05 });
    const got = [];
    let maxUnsettled = 0;
    for await (const d of consumer) {
      maxUnsettled = Math.max(maxUnsettled, consumer.unsettled);
      got.push(d.body.toString());
      d.ack();
      if (got.length === bodies.length) break;
    }
    assert.deepEqual(got, bodies);
    assert.ok(maxUnsettled <= 64, `unsettled reached ${maxUnsettled}`);
    await mb.ping();
    const stats = await mb.queueStats("jobs");
    assert.equal(stats.acked, 1000);
    assert.ok(stats.delivered === 1000, `delivered ${stats.delivered}`);
  }));

test("consume: leaving the loop gives the fetched, unyielded messages back at once", () =>
  withClient(async (mb) => {
    await mb.declareQueue("jobs");
    await mb.putMany("jobs", ["a", "b", "c", "d"]);
    for await (const d of mb.consume("jobs", { prefetch: 4 })) {
      await d.ack();
      break; // b, c and d were fetched with a: they go back
    }
    const rest = await mb.fetch("jobs", { maxMessages: 10 });
    assert.deepEqual(rest.map((d) => d.body.toString()), ["b", "c", "d"]);
  }));

test("consume: closing withdraws the parked long poll; later messages are first deliveries", () =>
  withClient(async (mb) => {
    await mb.declareQueue("jobs.dead");
    await mb.declareQueue("jobs", { maxDeliveries: 2, deadLetterQueue: "jobs.dead" });
    for (let round = 0; round < 3; round++) {
      const consumer = mb.consume("jobs", { prefetch: 5, wait: 600 });
      const next = consumer.next();
      await mb.ping(); // the fetch is parked on the broker
      assert.equal((await mb.queueStats("jobs")).waiting_fetches, 1);
      await consumer.close();
      assert.deepEqual(await next, { value: undefined, done: true }); // at once, not in 600 s
      assert.equal((await mb.queueStats("jobs")).waiting_fetches, 0);
    }
    await mb.putMany("jobs", ["a", "b"]);
    const got = await mb.fetch("jobs", { maxMessages: 10 });
    assert.deepEqual(got.map((d) => [d.body.toString(), d.deliveryCount]), [["a", 1], ["b", 1]]);
    const stats = await mb.queueStats("jobs");
    assert.equal(stats.requeued, 0);
  }));

test("consume: waits for room when the application holds prefetch deliveries", () =>
  withClient(async (mb) => {
    await mb.declareQueue("jobs");
    await mb.putMany("jobs", ["a", "b", "c"]);
    const consumer = mb.consume("jobs", { prefetch: 2, wait: 0.05 });
    const first = await consumer.next();
    const second = await consumer.next();
    const third = consumer.next();
    let settled = false;
    third.then(() => (settled = true));
    await mb.ping();
    await mb.ping();
    assert.equal(settled, false, "a third delivery beyond prefetch");
    first.value?.ack();
    assert.equal((await third).value?.body.toString(), "c");
    second.value?.ack();
    await consumer.close();
  }));
