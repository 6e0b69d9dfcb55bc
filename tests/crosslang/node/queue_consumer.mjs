// Consume COUNT messages from QUEUE with the Node client's consumer, ack
// them, print one JSON line per message, then {"done": n}.
// Usage: node queue_consumer.mjs URL QUEUE COUNT
import { connect } from "../../../clients/node/src/index.js";

const [url, queue, count] = process.argv.slice(2);
const mb = await connect(url, { clientName: "crosslang-consumer" });
let n = 0;
for await (const d of mb.consume(queue, { prefetch: 50, wait: 1 })) {
  const line = {
    body: d.body.toString("base64"),
    headers: d.headers,
    deliveryCount: d.deliveryCount,
    publishedAt: d.publishedAt,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  await d.ack(); // confirmed before we say we are done
  if (++n === Number(count)) break;
}
process.stdout.write(`${JSON.stringify({ done: n })}\n`);
await mb.close();
