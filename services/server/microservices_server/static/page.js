// The live page: asks the server for api/status every second and shows the answer.
// No framework, no build step. Every value is written with textContent or as an attribute:
// nothing the server relays (a hostname from a User-Agent) is ever parsed as HTML.
"use strict";

const POLL_EVERY_MS = 1000;
const TIMEOUT_MS = 3000;
const PODS_SHOWN = 12;
const CHART_STEP = 5; // seconds per point of the chart
const LAST_DONE = { counter: "last incremented", poller: "last read" };
const TIER_NAMES = { data: "Data tier", app: "App tier", counter: "Counter", poller: "Poller" };

const panels = {};
for (const panel of document.querySelectorAll("[data-tier]")) {
  panels[panel.dataset.tier] = panel;
}
const field = (root, name) => root.querySelector(`[data-field="${name}"]`);
const countSection = document.querySelector("section.count");
const countText = document.querySelector('[data-testid="count"]');
const rateText = document.querySelector('[data-testid="rate"]');
const chart = document.querySelector('[data-testid="chart"]');
let rendered = false; // no announcements for the first answer, only for changes after it
const changes = []; // the tiers whose status changed with this answer, for screen readers
let countShown = false; // a count was shown once: an outage keeps it, dimmed, as the last known

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function duration(seconds) {
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// Counts go past 2^53, where JavaScript numbers lose digits: keep the number's own text.
function parse(text) {
  return JSON.parse(text, (key, value, context) =>
    key === "count" && typeof value === "number" && context ? context.source : value,
  );
}

function setTier(name, status, reason) {
  const panel = panels[name];
  const changed = panel.dataset.status !== status;
  panel.dataset.status = status;
  field(panel, "status").textContent = status;
  field(panel, "reason").textContent = reason || "";
  if (changed && rendered) changes.push(`${TIER_NAMES[name]} ${status}. ${reason || ""}`);
}

function announceChanges() {
  if (changes.length) field(document, "announce").textContent = changes.join(" ");
  changes.length = 0;
  rendered = true;
}

function setDetails(name, pairs) {
  const terms = pairs.flatMap(([term, value]) => [element("dt", term), element("dd", value)]);
  field(panels[name], "details").replaceChildren(...terms);
}

function setPods(kind, pods) {
  const items = pods.slice(0, PODS_SHOWN).map((pod) => {
    const item = element("li");
    item.dataset.status = pod.status;
    const version = pod.version ? `v${pod.version}, ` : "";
    // A retrying pod asks and fails: when it last tried, beside when it last succeeded.
    const last = [
      ...(pod.age !== undefined ? [`${LAST_DONE[kind]} ${duration(pod.age)} ago`] : []),
      ...(pod.tried !== undefined ? [`last tried ${duration(pod.tried)} ago`] : []),
    ].join(", ");
    item.append(
      element("span", pod.status, "badge"),
      " ",
      element("span", pod.host || "(no hostname)", "host"),
      element("span", `${version}${last}`, "meta"),
    );
    return item;
  });
  if (pods.length > PODS_SHOWN) items.push(element("li", `and ${pods.length - PODS_SHOWN} more`));
  field(panels[kind], "pods").replaceChildren(...items);
}

// The history comes per second; the chart shows 5-second averages, easier to read.
function drawChart(perSecond) {
  const values = [];
  for (let i = 0; i + CHART_STEP <= perSecond.length; i += CHART_STEP) {
    values.push(perSecond.slice(i, i + CHART_STEP).reduce((a, b) => a + b, 0) / CHART_STEP);
  }
  const peak = Math.max(1, ...values);
  const last = values.length - 1;
  const points = values
    .map((value, i) => `${((i / last) * 300).toFixed(1)},${(100 - (value / peak) * 95).toFixed(1)}`)
    .join(" ");
  chart.querySelector(".line").setAttribute("points", points);
  chart.querySelector(".area").setAttribute("points", `0,100 ${points} 300,100`);
  field(document, "peak").textContent = `peak ${peak.toFixed(1)} per second`;
  chart.setAttribute(
    "aria-label",
    `Counted per second over the last ${Math.round(perSecond.length / 60)} minutes, ` +
      `in ${CHART_STEP}-second steps: peak ${peak.toFixed(1)}, latest ${values[last].toFixed(1)}`,
  );
}

// The fault switches on in the pod that answered, in words: "latency 250 ms (4 min left)".
function faultsOn(switches) {
  const words = {
    liveness: (s) => `liveness ${s.mode}`,
    latency: (s) => `latency ${s.ms} ms`,
    errors: (s) => `errors ${Math.round(s.ratio * 100)}% ${s.status}`,
  };
  const on = Object.entries(switches)
    .filter(([, s]) => s.on)
    .map(([name, s]) => `${(words[name] || (() => name))(s)} (${duration(s.seconds_left)} left)`);
  return on.length ? on.join(", ") : "none";
}

// The count and the chart keep their last values, dimmed, while no fresh ones come; before
// any count came, there is none to keep, and the note says why there is none yet.
function markStale(why) {
  document.body.dataset.stale = "true";
  const note = countShown ? `(the last count known: ${why})` : `(no count yet: ${why})`;
  field(countSection, "note").textContent = note;
}

// The data tier as primary and replicas: who is primary (the sentinels' view, when there
// are sentinels), each replica and how far behind it is. A failover shows as the primary
// changing and the replicas reconnecting.
function replicationDetails(replication) {
  if (!replication) return [];
  // No role while the primary does not answer: the sentinels' view (a failover) still shows.
  const pairs = replication.role ? [["role", replication.role]] : [];
  const sentinels = replication.sentinels;
  if (sentinels && sentinels.primary) {
    const down = sentinels.replicas_down ? `, ${sentinels.replicas_down} down` : "";
    pairs.push([
      "primary",
      `${sentinels.primary} (${sentinels.flags}; ${sentinels.replicas} replica(s) up${down}; ` +
        `${sentinels.sentinels} sentinels, quorum ${sentinels.quorum})`,
    ]);
  } else if (sentinels) {
    pairs.push(["sentinels", sentinels.error]);
  }
  for (const replica of replication.replicas) {
    pairs.push(["replica", `${replica.address} ${replica.state}, ${replica.behind} B behind, acked ${replica.lag} s ago`]);
  }
  return pairs;
}

function render(status) {
  const { data, app, counter, poller } = status.tiers;
  setTier("data", data.status, data.reason);
  setDetails(
    "data",
    data.status === "up"
      ? [
          ["server", data.version],
          ["up for", duration(data.uptime)],
          ["round trip", `${data.latency_ms} ms`],
          ...replicationDetails(data.replication),
        ]
      : replicationDetails(data.replication),
  );
  setTier("app", app.status, app.draining ? "shutting down: finishing the requests in flight" : "");
  setDetails("app", [
    [app.runs_in || "pod", app.hostname],
    ["version", app.version],
    ["worker", `pid ${app.pid}`],
    ["up for", duration(app.uptime)],
    ...(app.faults ? [["faults on", faultsOn(app.faults)]] : []),
  ]);
  for (const [kind, tier] of [["counter", counter], ["poller", poller]]) {
    setTier(kind, tier.status, tier.reason);
    setPods(kind, tier.pods);
  }
  if (status.count === null) {
    markStale(
      data.status === "up"
        ? "the count in Redis is not a number, see the data tier"
        : "Redis does not answer",
    );
  } else {
    countText.textContent = BigInt(status.count).toLocaleString();
    rateText.textContent = status.rate.toFixed(1);
    drawChart(status.history);
    countShown = true;
    document.body.dataset.stale = "false";
    field(countSection, "note").textContent = "";
  }
  field(document, "updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  announceChanges();
}

function unreachable(reason) {
  setTier("app", "down", `no answer from the server: ${reason}`);
  for (const name of ["data", "counter", "poller"]) {
    setTier(name, "stale", "unknown while the server does not answer");
  }
  setDetails("data", []);
  setPods("counter", []);
  setPods("poller", []);
  markStale("the server does not answer");
  announceChanges();
}

async function poll() {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let status = null;
  try {
    const response = await fetch("api/status", {
      headers: { Accept: "application/json" },
      cache: "no-store",
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    status = parse(await response.text());
  } catch (error) {
    const timedOut = error.name === "AbortError";
    unreachable(timedOut ? `nothing within ${TIMEOUT_MS / 1000} s` : error.message);
  } finally {
    clearTimeout(timer);
    setTimeout(poll, Math.max(0, POLL_EVERY_MS - (performance.now() - started)));
  }
  if (status) render(status);
}

poll();
