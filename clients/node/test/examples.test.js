// The README's tour runs as shown.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

import { startBroker } from "./broker.js";

/** @type {Awaited<ReturnType<typeof startBroker>>} */
let broker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

test("examples/tour.mjs goes through the four models", async () => {
  const tour = fileURLToPath(new URL("../examples/tour.mjs", import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [tour, broker.url()], { timeout: 30_000 });
  assert.match(stdout, /queue: bill customer/);
  assert.match(stdout, /topic: orders\.created \{"id":42\}/);
  assert.match(stdout, /log: #1 .*withdraw/);
  assert.match(stdout, /request: hello, node/);
  assert.match(stdout, /no_responders once the service stopped/);
});
