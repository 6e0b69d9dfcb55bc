// The live dashboard: reads /events (server-sent events, one JSON snapshot
// per second) with fetch, so a bearer token can go in a header, and redraws
// plain tables. Rates are the difference of two snapshots' counters.
"use strict";

const main = document.getElementById("main");
const statusLine = document.getElementById("status");
let previous = null;

function token() {
  return sessionStorage.getItem("minibroker-token");
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

function table(id, columns, rows) {
  if (!rows.length) return el("p", { class: "empty", id }, "none");
  const head = el("tr", {}, ...columns.map(([title]) => el("th", {}, title)));
  const body = rows.map((row) =>
    el("tr", {}, ...columns.map(([, get], i) =>
      el("td", i ? { class: "num" } : {}, get(row)))));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body));
}

function rate(key, field, now, value) {
  if (!previous) return "–";
  const before = previous.counters[key + "/" + field];
  if (before === undefined) return "–";
  const seconds = now - previous.at;
  return seconds > 0 ? ((value - before) / seconds).toFixed(1) : "–";
}

function render(snapshot) {
  const now = snapshot.at;
  const counters = {};
  const sections = [];
  for (const ns of snapshot.namespaces) {
    const label = ns.namespace === "" ? "(default namespace)" : "namespace " + ns.namespace;
    const key = (kind, name) => ns.namespace + "/" + kind + "/" + name;
    for (const q of ns.queues) {
      counters[key("queue", q.queue) + "/published"] = q.published;
      counters[key("queue", q.queue) + "/acked"] = q.acked;
    }
    sections.push(el("h2", {}, label));
    sections.push(el("h3", {}, "Queues"));
    sections.push(table("queues-" + ns.namespace, [
      ["queue", (q) => q.queue],
      ["ready", (q) => q.ready],
      ["in flight", (q) => q.in_flight],
      ["delayed", (q) => q.delayed],
      ["consumers", (q) => q.consumers],
      ["published", (q) => q.published],
      ["put/s", (q) => rate(key("queue", q.queue), "published", now, q.published)],
      ["ack/s", (q) => rate(key("queue", q.queue), "acked", now, q.acked)],
      ["dead-lettered", (q) => q.dead_lettered],
    ], ns.queues));
    sections.push(el("h3", {}, "Topics and subscriptions: " + ns.topics.published + " published, " +
      ns.topics.delivered + " delivered, " + ns.topics.dropped + " dropped"));
    sections.push(table("subscriptions-" + ns.namespace, [
      ["pattern", (s) => s.pattern],
      ["group", (s) => s.group || ""],
      ["connection", (s) => s.connection],
      ["buffered", (s) => s.buffered + " / " + s.buffer],
      ["dropped", (s) => s.dropped],
    ], ns.subscriptions));
    if (ns.bindings.length) {
      sections.push(table("bindings-" + ns.namespace, [
        ["bound queue", (b) => b.queue], ["pattern", (b) => b.pattern]], ns.bindings));
    }
    sections.push(el("h3", {}, "Logs"));
    sections.push(table("logs-" + ns.namespace, [
      ["log", (l) => l.log],
      ["first", (l) => l.first_offset],
      ["next", (l) => l.next_offset],
      ["bytes", (l) => l.bytes],
      ["segments", (l) => l.segments],
      ["groups (lag)", (l) => Object.entries(l.groups)
        .map(([g, s]) => g + " (" + s.lag + ")").join(", ")],
    ], ns.logs));
    sections.push(el("h3", {}, "Request/reply: " + ns.rpc.responders + " responders on " +
      ns.rpc.subjects + " subjects, " + ns.rpc.pending + " pending requests"));
    sections.push(table("rpc-" + ns.namespace, [
      ["subject", (s) => s.subject],
      ["responders", (s) => s.responders],
      ["groups", (s) => s.groups.join(", ")],
      ["queued", (s) => s.queued],
      ["awaiting reply", (s) => s.held],
      ["oldest pending", (s) => s.queued + s.held ? s.oldest_seconds.toFixed(1) + " s" : ""],
    ], ns.rpc.by_subject));
  }
  for (const c of snapshot.connections) {
    counters["connection/" + c.connection + "/in"] = c.bytes_in;
    counters["connection/" + c.connection + "/out"] = c.bytes_out;
  }
  sections.push(el("h2", {}, "Connections"));
  sections.push(table("connections", [
    ["connection", (c) => c.connection],
    ["client", (c) => c.client],
    ["address", (c) => c.address],
    ["protocol", (c) => c.protocol],
    ["bytes in", (c) => c.bytes_in],
    ["bytes out", (c) => c.bytes_out],
    ["in B/s", (c) => rate("connection/" + c.connection, "in", now, c.bytes_in)],
    ["out B/s", (c) => rate("connection/" + c.connection, "out", now, c.bytes_out)],
  ], snapshot.connections));
  main.replaceChildren(...sections);
  previous = { at: now, counters };
}

async function follow() {
  const headers = token() ? { authorization: "Bearer " + token() } : {};
  const response = await fetch("/events", { headers });
  if (response.status === 401) {
    const given = prompt("This broker needs a token:");
    if (given) sessionStorage.setItem("minibroker-token", given);
    throw new Error("unauthorized");
  }
  if (!response.ok) throw new Error("HTTP " + response.status);
  statusLine.textContent = "live";
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("stream ended");
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6)).join("\n");
      if (data) render(JSON.parse(data));
    }
  }
}

async function run() {
  for (;;) {
    try {
      await follow();
    } catch (error) {
      statusLine.textContent = "reconnecting (" + error.message + ")…";
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

// ------------------------------------------------------------------ x-ray
// Traces come from /v1/xray (polled while tracing is on); choosing one draws
// its steps as a timeline, each with the path::symbol of the code that ran.

const xray = { on: false, traces: [], chosen: null };

async function xrayCall(method, query, body) {
  const headers = { "content-type": "application/json" };
  if (token()) headers.authorization = "Bearer " + token();
  const options = { method, headers };
  if (body) options.body = JSON.stringify(body);
  const response = await fetch("/v1/xray" + (query || ""), options);
  return response.json();
}

function drawTimeline(trace) {
  const end = Math.max(...trace.steps.map((s) => s.at_us + s.took_us), 1);
  const rows = [];
  for (const step of trace.steps) {
    const bar = el("div", { class: "bar" });
    bar.style.left = (100 * step.at_us / end) + "%";
    bar.style.width = (100 * step.took_us / end) + "%";
    rows.push(el("div", { class: "step" },
      el("span", {}, step.step + " " + step.took_us.toFixed(1) + " µs"),
      el("div", { class: "lane" }, bar),
      el("span", { class: "source" }, step.source)));
    rows.push(el("div", { class: "detail" }, JSON.stringify(step.detail)));
  }
  document.getElementById("xray-timeline").replaceChildren(
    el("h3", {}, "#" + trace.id + " " + trace.op + " " + trace.name), ...rows);
}

function drawTraces() {
  const items = xray.traces.slice(-20).map((t) => {
    const item = el("li", { "data-id": t.id }, t.op + " " + t.name + " (" + t.steps.length +
      " steps)");
    if (xray.chosen === t.id) item.className = "chosen";
    item.addEventListener("click", () => { xray.chosen = t.id; drawTraces(); drawTimeline(t); });
    return item;
  });
  document.getElementById("xray-traces").replaceChildren(...items);
}

async function pollXray() {
  if (xray.on) {
    const state = await xrayCall("GET", "?after=0");
    xray.traces = state.traces;
    drawTraces();
  }
  setTimeout(pollXray, 1000);
}

document.getElementById("xray-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  xray.on = !xray.on;
  if (xray.on) {
    await xrayCall("PUT", "", { pattern: document.getElementById("xray-pattern").value });
  } else {
    await xrayCall("DELETE");
  }
  document.getElementById("xray-toggle").textContent = xray.on ? "stop" : "start";
});

run();
pollXray();
