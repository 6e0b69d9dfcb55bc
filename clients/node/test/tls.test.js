// TLS: minibrokers:// against a broker with a certificate from a test CA
// (made with Python's trustme, a test dependency of the repository).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import { connect } from "../src/index.js";
import { freshNamespace, pythonPath, startBroker } from "./broker.js";

const MAKE_CERTS = `
import sys, trustme
ca = trustme.CA()
cert = ca.issue_cert("127.0.0.1", "localhost")
d = sys.argv[1]
ca.cert_pem.write_to_path(d + "/ca.pem")
cert.private_key_pem.write_to_path(d + "/key.pem")
cert.cert_chain_pems[0].write_to_path(d + "/cert.pem")
for pem in cert.cert_chain_pems[1:]:
    pem.write_to_path(d + "/cert.pem", append=True)
`;

test("minibrokers:// speaks the same protocol inside TLS", async () => {
  const dir = await mkdtemp(join(tmpdir(), "minibroker-tls-"));
  try {
    await promisify(execFile)(pythonPath(), ["-c", MAKE_CERTS, dir], { timeout: 30_000 });
    const broker = await startBroker(["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")]);
    try {
      const ca = await readFile(join(dir, "ca.pem"));
      const mb = await connect(`minibrokers://127.0.0.1:${broker.port}`, { namespace: freshNamespace(), tls: { ca } });
      assert.equal((await mb.ping("secure")).toString(), "secure");
      await mb.declareQueue("q");
      await mb.put("q", "over tls");
      assert.equal((await mb.fetch("q"))[0].body.toString(), "over tls");
      await mb.close();
      // An unknown CA is refused during the handshake.
      await assert.rejects(connect(`minibrokers://127.0.0.1:${broker.port}`), /certificate/);
    } finally {
      await broker.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
