// The connection: handshake, pipelining, errors, back-pressure, drops.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { once } from "node:events";

import {
  BadRequestError,
  Client,
  ConnectionClosedError,
  FrameReader,
  InvalidNameError,
  UnauthorizedError,
  UnknownOpError,
  connect,
} from "../src/index.js";
import { freshNamespace, startBroker } from "./broker.js";

/** @type {Awaited<ReturnType<typeof startBroker>>} */
let broker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

test("hello: the server's info, the namespace selected", async () => {
  const ns = freshNamespace();
  const mb = await connect(broker.url(ns));
  try {
    assert.equal(mb.serverInfo.server, "minibroker");
    assert.equal(mb.serverInfo.protocol, 1);
    assert.equal(mb.serverInfo.namespace, ns);
    assert.deepEqual(mb.serverInfo.features, ["queues", "topics", "logs", "request_reply"]);
    assert.equal(typeof mb.serverInfo.limits.max_frame_bytes, "number");
    assert.deepEqual(await mb.ping(), null);
    assert.equal((await mb.ping("pong")).toString(), "pong");
  } finally {
    await mb.close();
  }
});

test("namespaces isolate names", async () => {
  const a = await connect(broker.url(freshNamespace()));
  const b = await connect(broker.url(), { namespace: freshNamespace() });
  try {
    await a.declareQueue("same");
    await assert.rejects(b.put("same", "x"), { code: "not_found" });
  } finally {
    await a.close();
    await b.close();
  }
});

test("a namespace that breaks the rules is refused", async () => {
  await assert.rejects(connect(broker.url(), { namespace: "bad name!" }), InvalidNameError);
});

test("pipelined calls are matched by id, in any order of answers", async () => {
  const mb = await connect(broker.url(freshNamespace()));
  try {
    await mb.declareQueue("q");
    // A long poll parked at the broker answers after the later calls.
    const parked = mb.fetch("q", { wait: 30 });
    const pings = Array.from({ length: 500 }, (_, i) => mb.ping(String(i)));
    const echoed = await Promise.all(pings);
    assert.deepEqual(
      echoed.map((b) => b?.toString()),
      pings.map((_, i) => String(i)),
    );
    await mb.put("q", "wake");
    const [delivery] = await parked;
    assert.equal(delivery.body.toString(), "wake");
  } finally {
    await mb.close();
  }
});

test("a bad request gets its error and the connection stays usable", async () => {
  const mb = await connect(broker.url(freshNamespace()));
  try {
    const err = await mb._call("ping", { data: 42 }).catch((e) => e);
    assert.ok(err instanceof BadRequestError);
    assert.equal(err.code, "bad_request");
    assert.match(err.message, /'data'/);
    await assert.rejects(mb._call("no.such.op", {}), UnknownOpError);
    await assert.rejects(mb.declareQueue("bad name"), { code: "invalid_name" });
    await assert.rejects(mb.put("q", /** @type {any} */ (42)), TypeError);
    assert.equal((await mb.ping("still here")).toString(), "still here");
  } finally {
    await mb.close();
  }
});

test("a wrong token is refused with unauthorized", async () => {
  const secured = await startBroker(["--auth-token", "s3cret"]);
  try {
    await assert.rejects(connect(secured.url()), UnauthorizedError);
    await assert.rejects(connect(secured.url(), { token: "wrong" }), { code: "unauthorized" });
    const mb = await connect(`minibroker://s3cret@127.0.0.1:${secured.port}`);
    assert.equal((await mb.ping("ok")).toString(), "ok");
    await mb.close();
  } finally {
    await secured.stop();
  }
});

test("a dropped connection rejects every pending call at once", async () => {
  const own = await startBroker();
  const mb = await connect(own.url(freshNamespace()));
  await mb.declareQueue("q");
  await mb.createLog("l");
  const sub = mb.subscribe("t.#");
  await sub.ready;
  const pending = [
    mb.fetch("q", { wait: 600 }),
    mb.readBatch("l", { start: "latest", wait: 600 }),
    mb.fetch("q", { wait: 600 }),
  ];
  const settled = Promise.allSettled([...pending, sub.next()]);
  await mb.ping(); // the long polls are parked by now
  await own.kill();
  const results = await settled;
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert.ok(r.reason instanceof ConnectionClosedError, String(r.reason));
  }
  assert.equal(mb.isClosed, true);
  assert.ok((await mb.closed) instanceof ConnectionClosedError);
  await assert.rejects(mb.ping(), ConnectionClosedError);
});

test("graceful shutdown: the bye ends subscriptions with shutting_down", async () => {
  const own = await startBroker();
  const mb = await connect(own.url(freshNamespace()));
  const sub = mb.subscribe("t.#");
  await sub.ready;
  const stopping = own.stop();
  await assert.rejects(sub.next(), { code: "shutting_down" });
  assert.equal((await mb.closed).code, "shutting_down");
  await stopping;
});

test("back-pressure: nothing more is written after write() returns false, until 'drain'", async () => {
  // A peer that accepts but does not read until told to.
  const server = net.createServer({ pauseOnConnect: true });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const accepted = once(server, "connection");
  const socket = net.connect(/** @type {net.AddressInfo} */ (server.address()).port, "127.0.0.1");
  await once(socket, "connect");
  const [peer] = /** @type {[net.Socket]} */ (await accepted);
  const client = new Client(socket);
  const body = Buffer.alloc(64 * 1024, 7);
  let sent = 0;
  // Queue calls until the socket is full, then many more.
  while (!client.needsDrain) {
    client._call("ping", { data: body }).catch(() => {});
    sent++;
    await new Promise((r) => setImmediate(r));
  }
  const writtenAtBlock = socket.bytesWritten + socket.writableLength;
  for (let i = 0; i < 50; i++, sent++) client._call("ping", { data: body }).catch(() => {});
  await new Promise((r) => setImmediate(r));
  assert.equal(socket.bytesWritten + socket.writableLength, writtenAtBlock, "wrote while blocked");
  assert.ok(client._outbox.length > 0);
  const drained = client.drained();
  // Now read everything: every frame arrives, in order.
  const reader = new FrameReader();
  const ids = [];
  peer.on("data", (chunk) => {
    for (const frame of reader.push(chunk)) ids.push(frame.id);
  });
  peer.resume();
  await drained;
  while (ids.length < sent) await new Promise((r) => setImmediate(r));
  assert.deepEqual(ids, Array.from({ length: sent }, (_, i) => i + 1));
  await client.close().catch(() => {});
  peer.destroy();
  server.close();
});

// Regression (issue 14): a full tail paused the socket, so the answers to the
// appends on the same connection (behind the pushes) never came.
test("a full log tail is paused in the broker: its connection's calls are answered, nothing is lost", { timeout: 60_000 }, async () => {
  const mb = await connect(broker.url(freshNamespace()), { maxPending: 20 });
  try {
    await mb.createLog("load");
    const tail = mb.tail("load", { start: "earliest" });
    await tail.ready;
    const bodies = [];
    for (let start = 0; start < 3000; start += 500) {
      const batch = Array.from({ length: 500 }, (_, i) => String(start + i));
      await mb.appendMany("load", batch); // answered although nobody reads the tail
      bodies.push(...batch);
    }
    assert.ok(tail.pending >= 20);
    const got = [];
    for await (const r of tail) {
      got.push(r.body.toString());
      if (got.length === bodies.length) break;
    }
    assert.deepEqual(got, bodies);
  } finally {
    await mb.close();
  }
});

test("a refused connection reports the broker's reason", async () => {
  const own = await startBroker(["--max-connections", "1"]);
  const first = await connect(own.url());
  try {
    await assert.rejects(connect(own.url()), { code: "limit_exceeded" });
  } finally {
    await first.close();
    await own.stop();
  }
});

test("dropNamespace deletes a namespace and closes its connections", async () => {
  const ns = freshNamespace("drop");
  const inside = await connect(broker.url(ns));
  const admin = await connect(broker.url());
  try {
    await inside.declareQueue("jobs");
    assert.equal(await admin.dropNamespace(ns), true);
    const reason = await inside.closed;
    assert.match(String(reason.message), /was dropped/);
    assert.equal(await admin.dropNamespace(ns), false);
    const again = await connect(broker.url(ns));
    try {
      assert.deepEqual(await again.listQueues(), []);
    } finally {
      await again.close();
    }
  } finally {
    await inside.close();
    await admin.close();
  }
});
