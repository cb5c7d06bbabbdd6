// The micro dashboard: reads the gateway's /api and calls endpoints through the gateway.
// Views by URL fragment: #/ (overview), #/service/<name>, #/node/<service>/<node>, #/topics.

import {endpointCharts, formatRate, metricChart} from "./charts.js";
import {schemaForm} from "./form.js";

const $ = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") el.textContent = v; else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
};

const TOKEN = "micro-dashboard-token";
const REFRESH = "micro-dashboard-refresh";
let account = null;      // who is signed in, when the gateway has auth
let timers = [];         // polls of the current view, stopped when it changes
let view = 0;            // bumped on every view change: late answers of old views are dropped

function token() { return sessionStorage.getItem(TOKEN); }

function authHeaders() {
  const t = token();
  return t ? {Authorization: `Bearer ${t}`} : {};
}

class SignInNeeded extends Error {}

function keep(tokens) {
  sessionStorage.setItem(TOKEN, tokens.access_token);
  sessionStorage.setItem(REFRESH, tokens.refresh_token);
}

function forget() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(REFRESH);
}

// A new token for the refresh token, once the access token has expired; false if none.
let renewing = null;
async function renew() {
  const refresh = sessionStorage.getItem(REFRESH);
  if (!refresh) return false;
  renewing ??= (async () => {
    const resp = await fetch("api/refresh", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({refresh_token: refresh}),
    });
    if (!resp.ok) { forget(); return false; }
    keep(await resp.json());
    return true;
  })().finally(() => { renewing = null; });
  return renewing;
}

async function getJSON(url, retry = true) {
  const resp = await fetch(url, {headers: authHeaders()});
  const body = await resp.json();
  if (resp.status === 401) {
    if (retry && token() && await renew()) return getJSON(url, false);
    forget();
    throw new SignInNeeded(body.detail);
  }
  if (!resp.ok) throw new Error(`${body.code} ${body.status}: ${body.detail}`);
  return body;
}

function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}

function show(...children) {
  document.getElementById("view").replaceChildren(...children);
}

function failed(err) {
  if (err instanceof SignInNeeded) { signIn(err.message); return; }
  show($("div", {class: "panel"}, $("p", {class: "error", text: err.message})));
}

// -- sign-in -------------------------------------------------------------------------

function signIn(reason) {
  stopPolls();
  document.getElementById("services").replaceChildren();
  document.getElementById("who").replaceChildren();
  const id = $("input", {type: "text", id: "account-id", autocomplete: "username"});
  const secret = $("input", {type: "password", id: "account-secret", autocomplete: "current-password"});
  const message = $("p", {id: "signin-error", class: "error", text: reason || ""});
  const form = $("form", {class: "panel signin", id: "signin"},
    $("h1", {text: "Sign in"}),
    $("p", {class: "muted", text: "This gateway shows its services to signed-in accounts."}),
    $("label", {for: "account-id", text: "Account"}), id,
    $("label", {for: "account-secret", text: "Secret"}), secret,
    $("p", {}, $("button", {class: "primary", type: "submit", id: "signin-button", text: "Sign in"})),
    message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const resp = await fetch("api/login", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: id.value, secret: secret.value}),
    });
    const body = await resp.json();
    if (!resp.ok) { message.textContent = body.detail; return; }
    keep(body);
    start();
  });
  show(form);
}

function showAccount() {
  const who = document.getElementById("who");
  if (!account) { who.replaceChildren(); return; }
  const out = $("button", {id: "signout", text: "Sign out"});
  out.addEventListener("click", () => { forget(); account = null; start(); });
  who.replaceChildren($("span", {id: "account", text: account.id}), out);
}

// -- the services list ---------------------------------------------------------------

let services = [];

async function loadServices() {
  const list = document.getElementById("services");
  try {
    services = await getJSON("api/services");
  } catch (err) {
    if (err instanceof SignInNeeded) { signIn(err.message); return; }
    list.replaceChildren($("li", {class: "error pad", text: err.message}));
    return;
  }
  list.replaceChildren();
  if (!services.length) list.append($("li", {class: "muted pad", text: "no services registered"}));
  const current = decodeURIComponent((location.hash.split("/")[2] || ""));
  for (const s of services) {
    const link = $("a", {href: `#/service/${encodeURIComponent(s.name)}`, "data-service": s.name},
      $("span", {text: s.name}),
      $("span", {class: "count", text: `${s.nodes} node${s.nodes === 1 ? "" : "s"}`}));
    link.classList.toggle("selected", s.name === current);
    list.append($("li", {}, link));
  }
}

// -- views ---------------------------------------------------------------------------

function stopPolls() {
  for (const t of timers) clearInterval(t);
  timers = [];
  view += 1;
}

function route() {
  stopPolls();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const a of document.querySelectorAll("header .tabs a"))
    a.classList.toggle("active", a.dataset.tab === (parts[0] === "topics" ? "topics" : "services"));
  for (const a of document.querySelectorAll("aside a"))
    a.classList.toggle("selected", parts[0] === "service" && a.dataset.service === parts[1]);
  if (parts[0] === "service" && parts[1]) serviceView(parts[1]);
  else if (parts[0] === "node" && parts[1] && parts[2]) nodeView(parts[1], parts[2]);
  else if (parts[0] === "topics") topicsView();
  else overview();
}

function overview() {
  const cards = $("div", {class: "cards", id: "overview"});
  for (const s of services) {
    cards.append($("a", {class: "card", href: `#/service/${encodeURIComponent(s.name)}`},
      $("b", {text: s.name}),
      $("div", {class: "muted", text: `${s.nodes} node${s.nodes === 1 ? "" : "s"}`}),
      $("div", {class: "muted", text: `versions ${s.versions.join(", ")}`})));
  }
  if (!services.length) cards.append($("p", {class: "muted", text: "No services registered yet."}));
  show($("h1", {text: "Services"}), cards);
}

function healthBadge(status, detail) {
  return $("span", {class: `badge ${status}`, title: detail || "", text: status});
}

function duration(s) {
  if (s === undefined || s === null) return "";
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function bytes(n) {
  if (n === undefined || n === null) return "";
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

async function serviceView(name) {
  const mine = view;
  let versions;
  try {
    versions = await getJSON(`api/services/${encodeURIComponent(name)}`);
  } catch (err) { failed(err); return; }
  if (mine !== view) return;
  const nodes = $("tbody");
  const endpoints = {};
  for (const v of versions) {
    for (const n of v.nodes) {
      nodes.append($("tr", {"data-node": n.id},
        $("td", {}, $("a", {href: `#/node/${encodeURIComponent(name)}/${encodeURIComponent(n.id)}`, text: n.id})),
        $("td", {text: n.address}), $("td", {text: v.version}),
        $("td", {class: "health"}, healthBadge("checking…")),
        $("td", {class: "uptime"}), $("td", {class: "requests"}), $("td", {class: "memory"})));
    }
    for (const e of v.endpoints) if (!(e.name in endpoints)) endpoints[e.name] = e;
  }
  const names = Object.keys(endpoints).sort();
  const call = callPanel(name, endpoints);
  const cards = $("div", {class: "endpoints", id: "endpoints"});
  const chartSlots = {};
  for (const ep of names) {
    const e = endpoints[ep];
    const kind = e.metadata.kind || "unary";
    const description = (e.description || e.metadata.description || "").trim().split("\n\n")[0];
    const use = $("button", {text: "Call", "data-call": ep});
    use.addEventListener("click", () => { call.choose(ep); call.element.scrollIntoView({behavior: "smooth"}); });
    chartSlots[ep] = $("div", {class: "chart-slot"}, endpointCharts([]));
    cards.append($("div", {class: "endpoint", "data-endpoint": ep},
      $("div", {class: "title"}, $("b", {text: ep}), $("span", {class: "kind", text: kind}),
        $("span", {class: "muted totals"}), use),
      description ? $("div", {class: "description", text: description}) : "",
      chartSlots[ep],
      $("details", {},
        $("summary", {text: "schemas"}),
        $("div", {class: "muted", text: "request"}),
        $("pre", {class: "request-schema", text: schemaText(e.request)}),
        $("div", {class: "muted", text: "response"}),
        $("pre", {class: "response-schema", text: schemaText(e.response)}))));
  }
  const nodesPanel = $("div", {class: "panel"},
    $("table", {id: "nodes"}, $("thead", {}, $("tr", {},
      ...["node", "address", "version", "health", "uptime", "requests", "memory"].map((h) => $("th", {text: h})))), nodes));
  const status = $("span", {class: "muted", id: "metrics-status"});
  const overall = $("div", {class: "service-charts", id: "service-charts"}, ...serviceCharts([]));
  show($("h1", {text: name}),
    $("div", {class: "muted", text: `versions ${versions.map((v) => v.version).join(", ")}`}),
    $("h2", {text: "All endpoints"}), $("div", {class: "panel"}, overall),
    $("h2", {text: "Nodes"}), nodesPanel,
    $("h2", {}, "Endpoints ", status), cards,
    $("h2", {text: "Call"}), call.element);

  every(5000, async () => {
    try {
      const health = await getJSON(`api/health/${encodeURIComponent(name)}`);
      if (mine !== view) return;
      for (const h of health) {
        const row = nodes.querySelector(`tr[data-node="${CSS.escape(h.node)}"]`);
        if (!row) continue;
        row.querySelector(".health").replaceChildren(healthBadge(h.status, h.detail));
        row.querySelector(".uptime").textContent = duration(h.stats.uptime_s);
        row.querySelector(".requests").textContent = h.stats.requests ?? "";
        row.querySelector(".memory").textContent = bytes(h.stats.memory_rss_bytes);
      }
    } catch (err) { if (err instanceof SignInNeeded) signIn(err.message); }
  });
  every(1000, async () => {
    try {
      const metrics = await getJSON(`api/services/${encodeURIComponent(name)}/metrics`);
      if (mine !== view) return;
      const failures = Object.entries(metrics.failures || {});
      status.textContent = failures.length
        ? `· ${failures.map(([n, why]) => `${n}: ${why}`).join("; ")}`
        : `· live, ${metrics.samples} samples`;
      overall.replaceChildren(...serviceCharts(sumByTime(names.map((ep) => metrics.endpoints[ep]))));
      for (const ep of names) {
        const series = metrics.endpoints[ep];
        if (!series) continue;
        chartSlots[ep].replaceChildren(endpointCharts(series.points));
        cards.querySelector(`[data-endpoint="${CSS.escape(ep)}"] .totals`).textContent =
          `${series.requests} calls, ${series.errors} failed`;
      }
    } catch (err) { if (err instanceof SignInNeeded) signIn(err.message); }
  });
}

// The calls of several endpoints' series added up, interval by interval.
function sumByTime(allSeries) {
  const byT = new Map();
  for (const series of allSeries) {
    for (const p of (series ? series.points : [])) {
      const sum = byT.get(p.t) || {t: p.t, rate: 0, error_rate: 0};
      sum.rate += p.rate;
      sum.error_rate += p.error_rate;
      byT.set(p.t, sum);
    }
  }
  return [...byT.values()].sort((a, b) => a.t - b.t);
}

function serviceCharts(points) {
  const last = points[points.length - 1];
  const share = last && last.rate ? `${((100 * last.error_rate) / last.rate).toFixed(1)}%` : "–";
  const ratio = points.map((p) => (p.rate ? p.error_rate / p.rate : null));
  const failing = metricChart("failing", ratio.map((r) => ({r})), "r", () => share, "#e67e22");
  return [
    metricChart("requests", points, "rate", formatRate, "#3867d6"),
    metricChart("errors", points, "error_rate", formatRate, "#c0392b"),
    failing,
  ];
}

// A schema with its top-level $ref resolved, for reading.
function readable(schema) {
  const ref = schema && schema.$ref;
  if (!ref || !ref.startsWith("#/$defs/") || !schema.$defs) return schema || {};
  const name = ref.slice("#/$defs/".length);
  const {[name]: def, ...rest} = schema.$defs;
  return Object.keys(rest).length ? {...def, $defs: rest} : def;
}

function schemaText(schema) {
  return Object.keys(schema || {}).length ? JSON.stringify(readable(schema), null, 2) : "(any JSON)";
}

// -- calling -------------------------------------------------------------------------

// The call panel: an endpoint, its request as a form generated from the schema (or as
// JSON), metadata, and the answer, streamed message by message for server streams.
function callPanel(service, endpoints) {
  const choices = $("select", {id: "endpoint"});
  for (const name of Object.keys(endpoints).sort()) choices.append($("option", {value: name, text: name}));
  const formMode = $("button", {type: "button", id: "mode-form", class: "active", text: "Form"});
  const jsonMode = $("button", {type: "button", id: "mode-json", text: "JSON"});
  const formBox = $("div", {id: "request-form"});
  const json = $("textarea", {id: "request", spellcheck: "false"});
  const jsonBox = $("div", {id: "request-json", hidden: ""}, json);
  const metadata = $("input", {type: "text", id: "metadata", placeholder: "metadata: key=value, key2=value2", size: "40"});
  const send = $("button", {class: "primary", id: "call", text: "Call"});
  const problem = $("p", {class: "error", id: "form-error"});
  const response = $("div", {id: "response", class: "muted", text: "(no call yet)"});
  let form = null;
  let mode = "form";

  const setMode = (next) => {
    problem.textContent = "";
    if (next === "json" && mode === "form" && form) json.value = JSON.stringify(form.value(), null, 2);
    if (next === "form" && mode === "json" && form) {
      try { form.set(JSON.parse(json.value || "{}")); }
      catch (err) { problem.textContent = `the JSON is not valid: ${err.message}`; return; }
    }
    if (next === "form" && !form) next = "json";
    mode = next;
    formMode.classList.toggle("active", mode === "form");
    jsonMode.classList.toggle("active", mode === "json");
    formBox.hidden = mode !== "form";
    jsonBox.hidden = mode !== "json";
  };
  const choose = (name) => {
    choices.value = name;
    const e = endpoints[name];
    form = schemaForm(e.request);
    formBox.replaceChildren(form ? form.element : $("p", {class: "muted", text: "no fields: the request is any JSON"}));
    json.value = form ? JSON.stringify(form.value(), null, 2) : "{}";
    mode = form ? "json" : "form";
    setMode(form ? "form" : "json");
  };
  choices.addEventListener("change", () => choose(choices.value));
  formMode.addEventListener("click", () => setMode("form"));
  jsonMode.addEventListener("click", () => setMode("json"));
  send.addEventListener("click", () => {
    problem.textContent = "";
    let body;
    try { body = mode === "form" && form ? JSON.stringify(form.value()) : json.value; }
    catch (err) { problem.textContent = err.message; return; }
    const kind = endpoints[choices.value].metadata.kind || "unary";
    callEndpoint(service, choices.value, kind, body, metadata.value, response);
  });
  const names = Object.keys(endpoints).sort();
  if (names.length) choose(names[0]);
  const element = $("div", {class: "panel", id: "call-panel"},
    $("div", {class: "call-bar"}, choices, $("span", {class: "modes"}, formMode, jsonMode), metadata, send),
    formBox, jsonBox, problem,
    $("h2", {text: "Response"}), response);
  return {element, choose};
}

async function callEndpoint(service, endpoint, kind, body, metadata, out) {
  out.className = "muted";
  out.textContent = "calling…";
  const headers = {"Content-Type": "application/json", ...authHeaders()};
  for (const pair of metadata.split(",")) {
    const [k, ...v] = pair.split("=");
    if (k.trim()) headers[k.trim()] = v.join("=").trim();
  }
  const streaming = kind === "server_stream" || kind === "bidi_stream";
  if (streaming) headers["Accept"] = "application/x-ndjson";
  const url = `${encodeURIComponent(service)}/${encodeURIComponent(endpoint)}`;
  const started = performance.now();
  try {
    let resp = await fetch(url, {method: "POST", headers, body});
    if (resp.status === 401 && headers.Authorization === authHeaders().Authorization
        && token() && await renew()) {
      // The token had expired: again with the renewed one.
      resp = await fetch(url, {method: "POST", headers: {...headers, ...authHeaders()}, body});
    }
    if (!streaming || !resp.ok) {
      const text = await resp.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
      out.className = resp.ok ? "" : "error";
      out.replaceChildren($("pre", {id: "answer", text: resp.ok ? shown : `${resp.status}\n${shown}`}));
      return;
    }
    // Each message is shown as it arrives, with when it came.
    const list = $("ol", {class: "stream", id: "stream"});
    const state = $("div", {class: "muted", id: "stream-state", text: "streaming…"});
    out.className = "";
    out.replaceChildren(state, list);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      pending += value;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        const at = `+${Math.round(performance.now() - started)} ms`;
        const item = $("li", {class: line.startsWith('{"error"') ? "error" : "message"},
          $("span", {class: "at", text: at}), $("span", {class: "body", text: line}));
        list.append(item);
      }
    }
    state.textContent = `${list.children.length} message${list.children.length === 1 ? "" : "s"}, ended`;
  } catch (err) {
    out.className = "error";
    out.textContent = String(err);
  }
}

// -- one node ------------------------------------------------------------------------

async function nodeView(service, nodeId) {
  const mine = view;
  const title = $("h1", {}, `${nodeId} `, $("span", {class: "muted", text: `of ${service}`}));
  const facts = $("tbody");
  const stats = $("tbody");
  const charts = $("div", {class: "endpoints", id: "node-endpoints"});
  show(title, $("p", {}, $("a", {href: `#/service/${encodeURIComponent(service)}`, text: `← ${service}`})),
    $("div", {class: "panel"}, $("table", {id: "node"}, facts)),
    $("h2", {text: "Debug stats"}), $("div", {class: "panel"}, $("table", {class: "stats", id: "stats"}, stats)),
    $("h2", {text: "Calls on this node"}), charts);
  const slots = {};
  every(2000, async () => {
    let node;
    try {
      // Reading the service's metrics keeps this node's series going.
      await getJSON(`api/services/${encodeURIComponent(service)}/metrics`);
      node = await getJSON(`api/nodes/${encodeURIComponent(service)}/${encodeURIComponent(nodeId)}`);
    } catch (err) { if (mine === view) failed(err); stopPolls(); return; }
    if (mine !== view) return;
    facts.replaceChildren(
      $("tr", {}, $("td", {text: "health"}), $("td", {}, healthBadge(node.status, node.detail))),
      $("tr", {}, $("td", {text: "address"}), $("td", {text: node.address})),
      $("tr", {}, $("td", {text: "version"}), $("td", {text: node.version})),
      ...Object.entries(node.metadata).map(([k, v]) => $("tr", {}, $("td", {text: k}), $("td", {text: v}))));
    stats.replaceChildren(...Object.entries(node.stats).map(([k, v]) => {
      let shown = typeof v === "object" ? JSON.stringify(v) : String(v);
      if (k === "uptime_s") shown = `${duration(v)} (${v} s)`;
      if (k.endsWith("_bytes")) shown = `${bytes(v)} (${v})`;
      if (k === "started") shown = new Date(v * 1000).toISOString();
      return $("tr", {"data-stat": k}, $("td", {text: k}), $("td", {text: shown}));
    }));
    if (!Object.keys(node.stats).length)
      stats.append($("tr", {}, $("td", {class: "muted", text: "no stats: the node did not answer micro.Debug.Stats"})));
    for (const [ep, series] of Object.entries(node.metrics.endpoints)) {
      // The gateway's own probes of the node are not its traffic.
      if (ep.startsWith("grpc.health.v1.") || ep.startsWith("micro.Debug.")) continue;
      if (!(ep in slots)) {
        slots[ep] = $("div", {});
        charts.append($("div", {class: "endpoint", "data-endpoint": ep}, $("div", {class: "title"}, $("b", {text: ep})), slots[ep]));
      }
      slots[ep].replaceChildren(endpointCharts(series.points));
    }
  });
}

// -- topics --------------------------------------------------------------------------

async function topicsView() {
  const mine = view;
  const body = $("tbody");
  show($("h1", {text: "Topics"}),
    $("p", {class: "muted", text: "Topics with subscribers announced in the registry (the HTTP broker)."}),
    $("div", {class: "panel"}, $("table", {id: "topics"}, $("thead", {}, $("tr", {},
      $("th", {text: "topic"}), $("th", {text: "subscribers"}))), body)));
  every(5000, async () => {
    let topics;
    try { topics = await getJSON("api/topics"); }
    catch (err) { if (mine === view) failed(err); return; }
    if (mine !== view) return;
    body.replaceChildren();
    if (!topics.length) body.append($("tr", {}, $("td", {class: "muted", colspan: "2", text: "no topics"})));
    for (const t of topics) {
      const subs = $("ul", {class: "subscribers"});
      for (const s of t.subscribers) {
        const who = s.services.length
          ? s.services.map((n) => $("a", {href: `#/service/${encodeURIComponent(n)}`, text: n}))
          : [$("span", {class: "muted", text: "(unknown service)"})];
        subs.append($("li", {}, ...who, ` at ${s.address}`, s.queue ? $("span", {class: "kind", text: `queue ${s.queue}`}) : ""));
      }
      body.append($("tr", {"data-topic": t.topic}, $("td", {}, $("b", {text: t.topic})), $("td", {}, subs)));
    }
  });
}

// -- start ---------------------------------------------------------------------------

let started = false;

async function start() {
  stopPolls();
  let who;
  try { who = await getJSON("api/auth"); }
  catch (err) { failed(err); return; }
  account = who.account;
  if (who.required && !account) { signIn(""); return; }
  showAccount();
  await loadServices();
  route();
  if (!started) {
    started = true;
    window.addEventListener("hashchange", route);
    // Services come and go: the list follows the registry.
    setInterval(() => { if (!who.required || token()) loadServices(); }, 5000);
  }
}

start();
