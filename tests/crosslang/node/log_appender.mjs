// Create LOG and append COUNT records (one alone, the rest in batches of
// 100), with keys, headers and binary bodies; print {"first": o, "next": n}.
// Record i: body = bytes [i % 256, 255 - i % 256] + "record-i", key = "key-(i % 7)",
// headers {"i": "i"} on even records only. Usage: node log_appender.mjs URL LOG COUNT
import { connect } from "../../../clients/node/src/index.js";

const [url, log, count] = process.argv.slice(2);
const total = Number(count);
const mb = await connect(url, { clientName: "crosslang-appender" });
await mb.createLog(log);
const record = (/** @type {number} */ i) => ({
  body: Buffer.concat([Buffer.from([i % 256, 255 - (i % 256)]), Buffer.from(`record-${i}`)]),
  key: `key-${i % 7}`,
  headers: i % 2 === 0 ? { i: String(i) } : undefined,
});
const first = await mb.append(log, record(0).body, { key: record(0).key, headers: record(0).headers });
for (let i = 1; i < total; i += 100) {
  const batch = [];
  for (let j = i; j < Math.min(total, i + 100); j++) batch.push(record(j));
  await mb.appendMany(log, batch);
}
const { nextOffset } = await mb.readBatch(log, { start: "latest" });
process.stdout.write(`${JSON.stringify({ first, next: nextOffset })}\n`);
await mb.close();
