// Request/reply against a real broker: request, respond, serve.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  NoRespondersError,
  ResponderError,
  ResponderGoneError,
  TimeoutError,
  connect,
} from "../src/index.js";
import { brokerForFile, freshNamespace } from "./broker.js";

const { url } = brokerForFile("r");

/** @param {(mb: import("../src/index.js").Client, other: import("../src/index.js").Client) => Promise<void>} body */
async function withClients(body) {
  const ns = freshNamespace("r");
  const mb = await connect(url(ns));
  const other = await connect(url(ns));
  try {
    await body(mb, other);
  } finally {
    await mb.close();
    await other.close();
  }
}

test("serve answers requests with the handler's result, headers included", () =>
  withClients(async (mb, other) => {
    const service = other.serve("svc.echo", async (req) => {
      if (req.headers?.mode === "headers") return { body: req.body, headers: { seen: req.subject } };
      return Buffer.concat([Buffer.from("re:"), req.body]);
    });
    await service.ready;
    const reply = await mb.request("svc.echo", "hi", { timeout: 5 });
    assert.equal(reply.body.toString(), "re:hi");
    assert.equal(reply.headers, null);
    const withHeaders = await mb.request("svc.echo", "x", { headers: { mode: "headers" } });
    assert.deepEqual([withHeaders.body.toString(), withHeaders.headers], ["x", { seen: "svc.echo" }]);
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => mb.request("svc.echo", String(i))));
    assert.deepEqual(many.map((r) => r.body.toString()), Array.from({ length: 200 }, (_, i) => `re:${i}`));
    await service.stop();
    await assert.rejects(mb.request("svc.echo", "gone"), NoRespondersError);
  }));

test("a handler that throws fails the request with responder_error", () =>
  withClients(async (mb, other) => {
    const errors = [];
    const service = other.serve(
      "svc.fail",
      (req) => {
        if (req.body.toString() === "plain") throw new ResponderError("just this");
        throw new RangeError("out of range");
      },
      { onError: (err) => errors.push(err) },
    );
    await service.ready;
    const err = await mb.request("svc.fail", "boom").catch((e) => e);
    assert.ok(err instanceof ResponderError);
    assert.equal(err.code, "responder_error");
    assert.equal(err.message, "RangeError: out of range");
    await assert.rejects(mb.request("svc.fail", "plain"), { code: "responder_error", message: "just this" });
    assert.equal(errors.length, 1);
    await service.stop();
  }));

test("no responders at once; a timeout when nobody replies in time", () =>
  withClients(async (mb, other) => {
    await assert.rejects(mb.request("svc.none", "x"), NoRespondersError);
    const requests = other.respond("svc.slow");
    await requests.ready;
    const err = await mb.request("svc.slow", "x", { timeout: 0.2 }).catch((e) => e);
    assert.ok(err instanceof TimeoutError, String(err));
    const [late] = await requests.nextBatch(1);
    assert.equal(late.subject, "svc.slow");
    assert.ok(late.timeout > 0 && late.timeout <= 0.2);
    assert.equal(await late.reply("too late"), false);
    await requests.close();
  }));

test("respond: iterate requests and answer them; unsubscribing fails held ones", () =>
  withClients(async (mb, other) => {
    const requests = other.respond("svc.manual", { group: "pool" });
    await requests.ready;
    const answered = mb.request("svc.manual", "one");
    const held = mb.request("svc.manual", "two");
    const [first, second] = await requests.nextBatch(2).then(async (b) => (b.length === 2 ? b : [...b, ...(await requests.nextBatch(1))]));
    assert.equal(await first.reply(Buffer.from("1")), true);
    assert.equal((await answered).body.toString(), "1");
    await assert.rejects(first.reply("again"), /already answered/);
    assert.equal(second.body.toString(), "two");
    const heldFails = assert.rejects(held, ResponderGoneError); // handled before it rejects
    await requests.close();
    await heldFails;
  }));

test("fail() sends an error reply", () =>
  withClients(async (mb, other) => {
    const requests = other.respond("svc.f");
    await requests.ready;
    const pending = mb.request("svc.f");
    const [req] = await requests.nextBatch(1);
    assert.equal(req.body.length, 0);
    const failed = assert.rejects(pending, { code: "responder_error", message: "nope" });
    assert.equal(await req.fail("nope"), true);
    await failed;
    await requests.close();
  }));

test("serve runs at most `concurrency` handlers at once", () =>
  withClients(async (mb, other) => {
    let running = 0;
    let peak = 0;
    /** @type {Array<() => void>} */
    const gates = [];
    const service = other.serve(
      "svc.c",
      async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((resolve) => gates.push(() => resolve(undefined)));
        running--;
        return "done";
      },
      { concurrency: 3 },
    );
    await service.ready;
    const calls = Array.from({ length: 10 }, () => mb.request("svc.c", "x"));
    let released = 0;
    while (released < 10) {
      while (gates.length === 0) await new Promise((r) => setImmediate(r));
      assert.ok(running <= 3);
      /** @type {() => void} */ (gates.shift())();
      released++;
    }
    assert.deepEqual((await Promise.all(calls)).map((r) => r.body.toString()), Array(10).fill("done"));
    assert.equal(peak, 3);
    await service.stop();
  }));

test("an aborted request is withdrawn: the broker forgets it, the responder's reply is late", { timeout: 30_000 }, () =>
  withClients(async (mb, other) => {
    assert.ok(mb.serverInfo.extensions.includes("request.cancel"));
    const requests = other.respond("svc.abort");
    await requests.ready;
    const controller = new AbortController();
    const asking = mb.request("svc.abort", "q", { timeout: 30, signal: controller.signal });
    const [held] = await requests.nextBatch(1);
    controller.abort();
    await assert.rejects(asking, { name: "AbortError" });
    await mb.ping(); // the broker has read the withdrawal
    assert.equal(await held.reply("nobody waits"), false);
    assert.equal(mb._pending.size, 0); // both answers were read and dropped
    // Aborted before it starts: nothing is sent.
    await assert.rejects(mb.request("svc.abort", "x", { signal: AbortSignal.abort() }), { name: "AbortError" });
    // Not aborted: an ordinary request.
    const again = mb.request("svc.abort", "again", { signal: new AbortController().signal });
    const [next] = await requests.nextBatch(1);
    await next.reply(next.body);
    assert.equal((await again).body.toString(), "again");
    await requests.close();
  }));

test("serve's maxPending pauses the responder in the broker while its handlers are busy", { timeout: 30_000 }, () =>
  withClients(async (mb, other) => {
    const posted = [];
    /** @type {() => void} */
    let paused = () => {};
    const pausedOnce = new Promise((resolve) => {
      paused = () => resolve(undefined);
    });
    const post = other._post.bind(other);
    other._post = (op, fields) => {
      posted.push(op);
      if (op === "pause") paused();
      post(op, fields);
    };
    /** @type {() => void} */
    let open = () => {};
    const gate = new Promise((resolve) => {
      open = () => resolve(undefined);
    });
    const service = other.serve(
      "svc.bounded",
      async (req) => {
        await gate;
        return req.body;
      },
      { concurrency: 1, maxPending: 2 },
    );
    await service.ready;
    const bodies = Array.from({ length: 20 }, (_, i) => String(i));
    const replies = bodies.map((b) => mb.request("svc.bounded", b, { timeout: 25 }));
    await pausedOnce; // one handler busy, two waiting in the client: the rest wait in the broker
    open();
    assert.deepEqual((await Promise.all(replies)).map((r) => r.body.toString()), bodies);
    assert.ok(posted.includes("resume"));
    await service.stop();
  }));
