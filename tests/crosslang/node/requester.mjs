// Send the requests given as JSON lines on stdin ({"subject", "body"
// (base64), "headers"?, "timeout"?}) one after another, and print each
// outcome: {"body", "headers"} or {"error": code, "message"}.
// Usage: node requester.mjs URL
import { createInterface } from "node:readline";
import { connect } from "../../../clients/node/src/index.js";

const mb = await connect(process.argv[2], { clientName: "crosslang-requester" });
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const order = JSON.parse(line);
  let outcome;
  try {
    const reply = await mb.request(order.subject, Buffer.from(order.body, "base64"), {
      headers: order.headers,
      timeout: order.timeout,
    });
    outcome = { body: reply.body.toString("base64"), headers: reply.headers };
  } catch (err) {
    outcome = { error: /** @type {any} */ (err).code, message: /** @type {Error} */ (err).message };
  }
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
}
await mb.close();
