// Publish the messages described by JSON lines on stdin ({"topic",
// "body" (base64), "headers"?}, or {"batch": [...]} for publishMany), and
// print each publish result as a JSON line. Usage: node topic_publisher.mjs URL
import { createInterface } from "node:readline";
import { connect } from "../../../clients/node/src/index.js";

const mb = await connect(process.argv[2], { clientName: "crosslang-publisher" });
const decode = (/** @type {any} */ m) => ({ body: Buffer.from(m.body, "base64"), headers: m.headers });
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const order = JSON.parse(line);
  const result = order.batch
    ? await mb.publishMany(order.topic, order.batch.map(decode))
    : await mb.publish(order.topic, Buffer.from(order.body, "base64"), { headers: order.headers });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
await mb.close();
