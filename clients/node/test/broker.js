/**
 * A real `minibroker serve` for the tests: started on port 0 as a
 * subprocess; the bound port is read from its start log line
 * ("... listening on 127.0.0.1:PORT ..."). The Python interpreter is
 * $MINIBROKER_PYTHON, else the repository's .venv.
 */

import { spawn } from "node:child_process";
import { after, before } from "node:test";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

import { connect } from "../src/index.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "..", "..", "..");

export function pythonPath() {
  if (process.env.MINIBROKER_PYTHON) return process.env.MINIBROKER_PYTHON;
  const venv = resolve(REPO, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/**
 * @param {string[]} [args] extra `serve` flags
 * @returns {Promise<{port: number, url: (ns?: string) => string, stop: () => Promise<void>, kill: () => Promise<void>, log: () => string}>}
 */
export function startBroker(args = []) {
  const proc = spawn(pythonPath(), ["-m", "minibroker", "serve", "--host", "127.0.0.1", "--port", "0", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, PYTHONUNBUFFERED: "1" },
  });
  let log = "";
  const exited = new Promise((done) => proc.once("exit", (code, signal) => done({ code, signal })));
  return new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`broker did not start within 30 s:\n${log}`));
    }, 30_000);
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (text) => {
      log += text;
      const found = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (found && timer) {
        clearTimeout(timer);
        const port = Number(found[1]);
        const stopWith = (/** @type {NodeJS.Signals} */ signal) => async () => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          await exited;
        };
        resolvePort({
          port,
          url: (ns) => `minibroker://127.0.0.1:${port}${ns === undefined ? "" : `?namespace=${ns}`}`,
          stop: stopWith("SIGTERM"),
          kill: stopWith("SIGKILL"),
          log: () => log,
        });
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`broker exited (${code ?? signal}) before listening:\n${log}`));
    });
  });
}

/** A namespace no other test uses. */
export function freshNamespace(prefix = "node") {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}

/**
 * One broker for the whole test file: started before its first test and
 * stopped after its last. Returns the broker's `url(ns)` and
 * `withClient(body)`, which runs `body` with a client in a fresh namespace
 * and closes the client however `body` ends.
 * @param {string} prefix namespace prefix of this file's clients
 */
export function brokerForFile(prefix) {
  /** @type {Awaited<ReturnType<typeof startBroker>> | undefined} */
  let broker;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    await broker?.stop();
  });
  /** @param {string} [ns] */
  const url = (ns) => {
    if (broker === undefined) throw new Error("the broker is not started yet");
    return broker.url(ns);
  };
  /** @param {(mb: import("../src/index.js").Client) => Promise<void>} body */
  const withClient = async (body) => {
    const mb = await connect(url(freshNamespace(prefix)));
    try {
      await body(mb);
    } finally {
      await mb.close();
    }
  };
  return { url, withClient };
}
