// The dashboard's page: the overview of every stack's canary services, and one service's
// rollout (chart, verdict, history, actions), both redrawn from server-sent events.
// Text from the server is only ever set as textContent, never parsed as HTML.
"use strict";

const main = document.getElementById("main");
let config = {allowActions: false, actions: []};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key === "cls") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function replace(id, node) {
  const old = document.getElementById(id);
  node.id = id;
  if (old) old.replaceWith(node);
  return node;
}

function weightBar(primary, canary) {
  return el("span", {cls: "bar", "aria-hidden": "true"},
    el("span", {cls: "primary", style: `width:${primary}%`}),
    el("span", {cls: "canary", style: `width:${canary}%`}));
}

function liveWeight(live) {
  if (!live) return el("span", {cls: "live-weight dim", "data-canary": "", text: "not deployed or unreadable"});
  return el("span", {cls: "live-weight", "data-canary": String(live.canary)},
    weightBar(live.primary, live.canary),
    `primary ${live.primary}% / canary ${live.canary}%`);
}

function rolloutCell(rollout) {
  if (!rollout) return el("span", {cls: "dim", text: "none yet"});
  const step = rollout.total_steps ? ` step ${rollout.step}/${rollout.total_steps}` : "";
  return el("span", {},
    el("span", {cls: `phase ${rollout.phase}`, text: rollout.phase}),
    `${step} · ${rollout.candidate} (stable ${rollout.stable})`);
}

function setConnection(state) {
  const node = document.getElementById("connection");
  node.textContent = {live: "● live", once: "as of " + new Date().toLocaleTimeString()}[state]
    || "● reconnecting…";
  node.className = `connection ${state}`;
}

// `?once` draws the page from one read of each view and does not stay connected: for a
// screenshot (`rollout demo` takes one), which waits for the page to go quiet.
const once = new URLSearchParams(location.search).has("once");

async function readOnce(reads, handlers) {
  for (const [name, url] of Object.entries(reads)) {
    const response = await fetch(url);
    const data = await response.json();
    if (response.ok) handlers[name](data);
    else showMessage(data, true);
  }
  setConnection("once");
}

function listen(url, handlers, reads) {
  if (once) return readOnce(reads, handlers);
  const source = new EventSource(url);
  source.onopen = () => setConnection("live");
  // EventSource reconnects by itself after an error.
  source.onerror = () => setConnection("lost");
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
  }
  source.addEventListener("problem", (event) => showMessage(JSON.parse(event.data), true));
  return source;
}

function showMessage(data, isError) {
  const node = document.getElementById("message");
  if (!node) return;
  node.textContent = data.hint ? `${data.error || data.message} (${data.hint})` : (data.error || data.message);
  node.className = isError ? "error" : "";
}

// -- the overview ------------------------------------------------------------------------

function overview() {
  document.title = "canary-rollout: stacks";
  main.replaceChildren(el("h1", {text: "Stacks"}), el("table", {id: "overview"}));
  listen("/api/events", {overview: drawOverview}, {overview: "/api/overview"});
}

function drawOverview(rows) {
  const head = el("tr", {}, ...["stack", "service", "stable", "running", "rollout",
    "live weight", "last outcome", ""].map((h) => el("th", {text: h})));
  const lines = rows.map((row) => {
    const link = el("a", {href: `/stacks/${encodeURIComponent(row.stack)}/${encodeURIComponent(row.service)}`, text: row.stack});
    return el("tr", {"data-stack": row.stack, "data-service": row.service},
      el("td", {}, link), el("td", {text: row.service}),
      el("td", {text: row.stableVersion || "-"}), el("td", {text: row.runningVersion || "-"}),
      el("td", {}, rolloutCell(row.rollout)), el("td", {}, liveWeight(row.live)),
      el("td", {cls: row.lastOutcome || "", text: row.lastOutcome || "-"}),
      el("td", {cls: "problem", text: row.problems.join("; ")}));
  });
  if (!lines.length) lines.push(el("tr", {}, el("td", {colspan: "8", text: "no stack declares a canary service"})));
  replace("overview", el("table", {}, head, ...lines));
}

// -- one service -------------------------------------------------------------------------

function servicePage(stack, service) {
  document.title = `canary-rollout: ${service} on ${stack}`;
  main.replaceChildren(
    el("p", {}, el("a", {href: "/", text: "← all stacks"})),
    el("h1", {text: `${service} on ${stack}`}),
    el("div", {id: "cards"}), el("div", {id: "actions"}), el("p", {id: "message"}),
    el("h2", {text: "Last verdict"}), el("div", {id: "verdict"}),
    el("h2", {text: "Timeline"}), el("div", {id: "notes"}), el("div", {id: "chart"}),
    el("h2", {text: "History"}), el("table", {id: "history"}));
  const base = `/api/stacks/${encodeURIComponent(stack)}/${encodeURIComponent(service)}`;
  listen(`${base}/events`, {
    service: (data) => drawService(stack, service, data),
    timeline: drawTimeline,
  }, {service: base, timeline: `${base}/timeline`});
}

function card(label, value, id) {
  return el("div", {cls: "card", id},
    el("div", {cls: "label", text: label}),
    typeof value === "string" ? el("div", {cls: "value", text: value}) : el("div", {cls: "value"}, value));
}

function drawService(stack, service, data) {
  const view = data.view;
  const r = view.rollout;
  const cards = [
    card("stable version", view.stableVersion || "-"),
    card("running (primary)", view.runningVersion || "-"),
    card("live weight", liveWeight(view.live), "card-live"),
  ];
  if (r) {
    const step = r.total_steps ? `step ${r.step}/${r.total_steps}` : "";
    cards.push(card(r.running ? "rollout" : "last rollout",
      el("span", {}, el("span", {cls: `phase ${r.phase}`, id: "phase", text: r.phase}), ` ${step}`)));
    cards.push(card("candidate", `${r.candidate} (stable ${r.stable})`));
    cards.push(card("failed checks", r.threshold ? `${r.failed_checks} of ${r.threshold}` : String(r.failed_checks)));
    if (r.running) {
      const left = r.time_left === null ? "-" : `~${r.time_left}${r.open_ended ? " + manual" : ""}`;
      cards.push(card("time left", left));
      cards.push(card(r.waiting ? "waiting for" : "next", r.waiting || r.next_stop || "-", "card-next"));
    } else {
      cards.push(card("outcome", r.outcome || "-"));
    }
  }
  const problems = view.problems.map((p) => el("p", {cls: "problem", text: p}));
  replace("cards", el("div", {cls: "cards"}, ...cards, ...problems));
  drawActions(stack, service, r);
  drawVerdict(r);
  drawHistory(data.history);
}

let actionsFor = null;

function drawActions(stack, service, rollout) {
  // Drawn again only when the rollout they act on changes: a button is never swapped
  // under the pointer by a redraw.
  const key = rollout && rollout.running ? rollout.rollout_id : "";
  if (key === actionsFor) return;
  actionsFor = key;
  // Without --allow-actions there are no buttons at all (and the endpoints answer 403).
  const box = el("div", {cls: "actions"});
  if (config.allowActions && rollout && rollout.running) {
    for (const action of config.actions) {
      const button = el("button", {type: "button", cls: action, id: `action-${action}`, text: action});
      button.addEventListener("click", () => act(stack, service, action, rollout));
      box.append(button);
    }
  }
  replace("actions", box);
}

async function act(stack, service, action, rollout) {
  const question = `${action} the rollout of ${rollout.candidate} on ${stack} (${service})?`;
  if (!window.confirm(question)) return;
  const body = action === "abort" ? {reason: "aborted from the dashboard"} : {};
  const response = await fetch(`/api/stacks/${encodeURIComponent(stack)}/${encodeURIComponent(service)}/${action}`, {
    method: "POST", headers: {"Content-Type": "application/json", "X-Rollout-Dashboard": "1"},
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  showMessage(answer, !response.ok);
}

function drawVerdict(r) {
  if (!r || !r.verdict) {
    replace("verdict", el("p", {cls: "dim", text: "no analysis yet"}));
    return;
  }
  const head = el("p", {},
    el("span", {cls: r.verdict.toLowerCase(), id: "verdict-word", text: r.verdict}),
    ` at ${r.verdict_weight}%: ${r.verdict_reason}`);
  const rows = r.metrics.map((m) => el("tr", {},
    el("td", {text: m.metric}), el("td", {cls: "num", text: m.canary || "-"}),
    el("td", {cls: "num", text: m.primary || "-"}), el("td", {text: m.threshold || "-"}),
    el("td", {cls: m.result, text: m.result})));
  const table = el("table", {},
    el("tr", {}, ...["metric", "canary", "primary", "threshold", "result"].map((h) => el("th", {text: h}))),
    ...rows);
  replace("verdict", el("div", {}, head, r.metrics.length ? table : null));
}

function drawTimeline(data) {
  replace("notes", el("div", {}, ...(data.notes || []).map((n) => el("p", {cls: "note", text: n}))));
  const chart = document.getElementById("chart");
  if (!data.figure) {
    chart.replaceChildren();
    return;
  }
  Plotly.react(chart, data.figure.data, data.figure.layout, {responsive: true, displaylogo: false});
}

function drawHistory(history) {
  const head = el("tr", {}, ...["started", "version", "outcome", "reason", "duration", "report"]
    .map((h) => el("th", {text: h})));
  const rows = history.map((h) => el("tr", {},
    el("td", {text: new Date(h.started_at * 1000).toLocaleString()}),
    el("td", {text: h.candidate}),
    el("td", {cls: h.outcome || "", text: h.outcome || h.phase}),
    el("td", {text: h.reason}),
    el("td", {cls: "num", text: h.took}),
    el("td", {}, h.report ? el("a", {href: `/reports/${encodeURIComponent(h.report)}`, text: "report"}) : "-")));
  if (!rows.length) rows.push(el("tr", {}, el("td", {colspan: "6", text: "no finished rollout yet"})));
  replace("history", el("table", {}, head, ...rows));
}

// -- start -------------------------------------------------------------------------------

async function start() {
  config = await (await fetch("/api/config")).json();
  document.getElementById("project").textContent = config.project;
  const mode = document.getElementById("mode");
  mode.textContent = config.allowActions ? "actions allowed" : "read-only";
  mode.className = config.allowActions ? "mode actions" : "mode";
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "stacks" && parts.length === 3) servicePage(parts[1], parts[2]);
  else overview();
}

start();
