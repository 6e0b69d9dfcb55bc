// Serve SUBJECT until stdin closes: "upper" headers mode upper-cases the
// body; a body "fail" throws an Error; a body "explain" throws a
// ResponderError; anything else is echoed with headers {"served-by": "node"}.
// Prints {"ready": true} once registered and {"served": n} at the end.
// Usage: node responder.mjs URL SUBJECT
import { ResponderError, connect } from "../../../clients/node/src/index.js";

const [url, subject] = process.argv.slice(2);
const mb = await connect(url, { clientName: "crosslang-responder" });
let served = 0;
const service = mb.serve(subject, async (req) => {
  served++;
  const text = req.body.toString();
  if (text === "fail") throw new Error("the node handler failed");
  if (text === "explain") throw new ResponderError("explained by node");
  if (req.headers?.mode === "upper") return { body: text.toUpperCase(), headers: { "served-by": "node" } };
  return { body: req.body, headers: { "served-by": "node", subject: req.subject } };
});
await service.ready;
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.stdin.resume();
await new Promise((resolve) => process.stdin.once("end", resolve));
await service.stop();
process.stdout.write(`${JSON.stringify({ served })}\n`);
await mb.close();
