// A tour of the four models on one connection.
// Usage: node examples/tour.mjs [minibroker://127.0.0.1:7878]
import { connect, NoRespondersError } from "../src/index.js";

const mb = await connect(process.argv[2] ?? "minibroker://127.0.0.1:7878", { namespace: "tour" });
console.log(`connected to minibroker ${mb.serverInfo.version} (namespace "${mb.serverInfo.namespace}")`);

// Queues: put, then consume with batched acks.
await mb.declareQueue("jobs");
await mb.putMany("jobs", ["resize photo", "send email", "bill customer"]);
let done = 0;
for await (const job of mb.consume("jobs", { prefetch: 10, wait: 1 })) {
  console.log(`queue: ${job.body} (delivery ${job.deliveryCount})`);
  job.ack();
  if (++done === 3) break;
}

// Topics: a live subscription sees what is published from now on.
const orders = mb.subscribe("orders.*");
await orders.ready;
await mb.publish("orders.created", JSON.stringify({ id: 42 }), { headers: { source: "tour" } });
for await (const m of orders) {
  console.log(`topic: ${m.topic} ${m.body} ${JSON.stringify(m.headers)}`);
  break;
}

// Logs: append, replay from the start.
await mb.createLog("ledger");
await mb.appendMany("ledger", ['{"deposit": 10}', '{"withdraw": 3}'].map((body) => ({ body, key: "acct-1" })));
for (const r of await mb.read("ledger", { start: "earliest" })) {
  console.log(`log: #${r.offset} at ${new Date(r.timestampMs).toISOString()} ${r.key}: ${r.body}`);
}

// Request/reply: a service and a caller on the same connection.
const service = mb.serve("svc.greet", (req) => `hello, ${req.body}`);
await service.ready;
console.log(`request: ${(await mb.request("svc.greet", "node", { timeout: 1 })).body}`);
await service.stop();
try {
  await mb.request("svc.greet", "anyone?");
} catch (err) {
  if (err instanceof NoRespondersError) console.log(`request: ${err.code} once the service stopped`);
}

await mb.close();
