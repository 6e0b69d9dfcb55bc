// Topics against a real broker: publish, subscribe, groups, bindings.
import { test } from "node:test";
import assert from "node:assert/strict";

import { InvalidNameError, NotFoundError, SlowConsumerError, connect } from "../src/index.js";
import { brokerForFile } from "./broker.js";

const { url, withClient } = brokerForFile("t");

/**
 * Take `n` items from an async iterator.
 * @template T
 * @param {AsyncIterator<T>} it
 * @param {number} n
 */
async function take(it, n) {
  const out = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

test("every matching subscription gets a copy, patterns with * and #", () =>
  withClient(async (mb) => {
    const star = mb.subscribe("orders.*");
    const hash = mb.subscribe("orders.#");
    const other = mb.subscribe("users.*");
    await Promise.all([star.ready, hash.ready, other.ready]);
    assert.deepEqual(await mb.publish("orders.created", "one", { headers: { k: "v" } }), { subscriptions: 2, queues: 0 });
    assert.deepEqual(await mb.publishMany("orders.eu.paid", ["two", { body: "three" }]), { subscriptions: 2, queues: 0 });
    const [m] = await take(star, 1);
    assert.deepEqual([m.topic, m.body.toString(), m.headers], ["orders.created", "one", { k: "v" }]);
    const all = await take(hash, 3);
    assert.deepEqual(
      all.map((x) => [x.topic, x.body.toString(), x.headers]),
      [
        ["orders.created", "one", { k: "v" }],
        ["orders.eu.paid", "two", null],
        ["orders.eu.paid", "three", null],
      ],
    );
    assert.equal(other.pending, 0);
    await Promise.all([star.close(), hash.close(), other.close()]);
    assert.deepEqual(await mb.publish("orders.created", "nobody"), { subscriptions: 0, queues: 0 });
  }));

test("subscribers in a group share the messages", () =>
  withClient(async (mb) => {
    const a = mb.subscribe("jobs.#", { group: "workers" });
    const b = mb.subscribe("jobs.#", { group: "workers" });
    await Promise.all([a.ready, b.ready]);
    const result = await mb.publishMany("jobs.x", Array.from({ length: 10 }, (_, i) => String(i)));
    assert.equal(result.subscriptions, 10);
    // Round robin between the two members: five each.
    const got = [...(await take(a, 5)), ...(await take(b, 5))].map((m) => Number(m.body.toString()));
    assert.deepEqual(got.sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(a.dropped === 0 && b.dropped === 0);
  }));

test("a subscription is an async iterator; break unsubscribes", () =>
  withClient(async (mb) => {
    const sub = mb.subscribe("tick");
    await sub.ready;
    await mb.publishMany("tick", ["1", "2", "3"]);
    const seen = [];
    for await (const m of sub) {
      seen.push(m.body.toString());
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, ["1", "2"]);
    assert.equal((await mb.publish("tick", "4")).subscriptions, 0);
    assert.deepEqual(await sub.next(), { value: undefined, done: true });
  }));

test("bind keeps copies in a queue for pull consumers; unbind stops it", () =>
  withClient(async (mb) => {
    await mb.declareQueue("audit");
    assert.equal(await mb.bind("audit", "orders.#"), true);
    assert.equal(await mb.bind("audit", "orders.#"), false);
    assert.deepEqual(await mb.publish("orders.created", "kept"), { subscriptions: 0, queues: 1 });
    const [d] = await mb.fetch("audit");
    assert.equal(d.body.toString(), "kept");
    assert.equal(await mb.unbind("audit", "orders.#"), true);
    assert.equal(await mb.unbind("audit", "orders.#"), false);
    assert.deepEqual(await mb.publish("orders.created", "gone"), { subscriptions: 0, queues: 0 });
    await assert.rejects(mb.bind("missing", "x"), NotFoundError);
  }));

test("a bad pattern fails the subscription: ready and iteration both reject", () =>
  withClient(async (mb) => {
    const sub = mb.subscribe("bad..pattern");
    await assert.rejects(sub.ready, InvalidNameError);
    await assert.rejects(sub.next(), { code: "invalid_name" });
  }));

test("a slow subscriber is told how many messages it lost", { timeout: 60_000 }, () =>
  withClient(async (mb) => {
    // A tiny broker-side buffer and a client that keeps 1 item: the rest are
    // dropped (by the broker or by the client) and counted either way.
    const slow = await connect(url(mb.serverInfo.namespace), { maxPending: 1 });
    try {
      const sub = slow.subscribe("flood", { buffer: 4 });
      await sub.ready;
      const body = Buffer.alloc(64 * 1024, 1);
      for (let i = 0; i < 10 && sub.dropped === 0; i++) {
        await mb.publishMany("flood", Array.from({ length: 64 }, () => body));
        await mb.ping();
        // Let the slow client read on a little: notices arrive with the next frames.
        await take(sub, Math.min(sub.pending, 1));
      }
      while (sub.dropped === 0) await take(sub, 1);
      assert.ok(sub.dropped > 0);
    } finally {
      await slow.close();
    }
  }));

/** Publish bodies "0" .. "count-1" on `mb` in batches of 1,000. */
async function publishNumbered(mb, topic, count) {
  for (let start = 0; start < count; start += 1000) {
    await mb.publishMany(topic, Array.from({ length: Math.min(1000, count - start) }, (_, i) => String(start + i)));
  }
}

// Regression: a full subscription paused the socket, so the answers to the
// same connection's publishes (queued behind the pushes) never arrived.
// Regression: `buffer` bounded only the broker; the client dropped past its
// own maxPending (10,000), so a slow subscriber with buffer 30,000 lost 20,000.
test("a subscriber loses nothing within the buffer it asked for", { timeout: 60_000 }, () =>
  withClient(async (mb) => {
    const sub = mb.subscribe("t.x", { buffer: 30_000 });
    await sub.ready;
    await publishNumbered(mb, "t.x", 30_000); // every publish answered: every push is buffered
    const got = [];
    while (got.length < 30_000) got.push(...(await sub.nextBatch(1000)).map((m) => Number(m.body.toString())));
    assert.deepEqual(got, Array.from({ length: 30_000 }, (_, i) => i));
    assert.equal(sub.dropped, 0);
    await sub.close();
  }));

test("publishing past maxPending on the subscribing connection drops the oldest, counted", { timeout: 60_000 }, () =>
  withClient(async (mb) => {
    const sub = mb.subscribe("t.x", { buffer: 30_000, maxPending: 10_000 });
    await sub.ready;
    await publishNumbered(mb, "t.x", 30_000);
    await mb.publish("t.x", "last");
    const got = [];
    while (got.at(-1) !== "last") got.push((await sub.next()).value.body.toString());
    const numbers = got.slice(0, -1).map(Number);
    assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => 30_000 - numbers.length + i));
    assert.equal(sub.dropped, 30_000 - numbers.length);
    assert.ok(sub.dropped > 0);
    await sub.close();
  }));

test("a disconnect subscription past maxPending ends with SlowConsumerError, the connection lives", { timeout: 60_000 }, () =>
  withClient(async (mb) => {
    const sub = mb.subscribe("t.x", { buffer: 30_000, maxPending: 10_000, onOverflow: "disconnect" });
    await sub.ready;
    await publishNumbered(mb, "t.x", 30_000);
    const got = [];
    await assert.rejects(async () => {
      for (;;) got.push(Number((await sub.next()).value.body.toString()));
    }, SlowConsumerError);
    assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => i));
    assert.ok(got.length > 0 && got.length < 30_000);
    // Unsubscribed before this publish: nobody is listening any more.
    assert.deepEqual(await mb.publish("t.x", "after"), { subscriptions: 0, queues: 0 });
  }));

test("bufferBytes bounds the bytes the broker keeps for a subscriber", () =>
  withClient(async (mb) => {
    const sub = mb.subscribe("sized", { bufferBytes: 2500 });
    await sub.ready;
    // One batch arrives at once: 10 messages of 1000 bytes (1045 counted
    // each, with topic and envelope) in a buffer of 2500 bytes leave the newest two.
    await mb.publishMany("sized", Array.from({ length: 10 }, (_, i) => Buffer.alloc(1000, i)));
    const got = await take(sub, 2);
    assert.deepEqual(got.map((m) => m.body[0]), [8, 9]);
    assert.equal(sub.dropped, 8);
    await sub.return();
    const bad = mb.subscribe("sized", { bufferBytes: 0 });
    await assert.rejects(bad.ready, { code: "bad_request" });
  }));
