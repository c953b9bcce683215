// payledger's operations dashboard. Reads only payledger's JSON APIs with the operator's
// key; every value from them is written as text (never parsed as HTML): provider names and
// failure reasons come from outside.
"use strict";

const REFRESH_MS = 30000;
// Samples of projection lag kept for the lag chart: 30 minutes at the 30 s refresh.
const LAG_SAMPLES_MAX = 60;
// A projection or the relay further behind than this is degraded, as in the alert rules.
const LAG_DEGRADED_S = 30;
const SUMMARY_DAYS = 14;
const KEY_STORAGE = "payledger.dashboard.key";
const SVG = "http://www.w3.org/2000/svg";

const state = { timer: null, loading: false, lagSamples: [], firstReadyMs: null };

class SignInError extends Error {}

function byId(id) {
  return document.getElementById(id);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function key() {
  return sessionStorage.getItem(KEY_STORAGE);
}

// One API read: the parsed body and status. A refused key throws SignInError; a network
// failure throws; any other status (a 503 health report included) is data.
async function read(path) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${key()}`, Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) {
    throw new SignInError("This key may not see the dashboard: an operator or admin key is needed.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (body === null) throw new Error(`${path} answered ${response.status} without a report`);
  return { status: response.status, body };
}

// ---- formatting ---------------------------------------------------------------------------

const STATUSES = ["healthy", "degraded", "unhealthy"];

function worst(statuses) {
  return statuses.reduce((a, b) => (STATUSES.indexOf(b) > STATUSES.indexOf(a) ? b : a), "healthy");
}

function percent(rate) {
  if (rate === null || rate === undefined) return "—";
  return `${(Number(rate) * 100).toFixed(1)} %`;
}

function ms(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} ms`;
}

function seconds(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(2)} s`;
}

function when(iso) {
  if (!iso) return "never";
  const at = new Date(iso);
  return `${at.toLocaleTimeString()} (${at.toISOString().slice(0, 10)})`;
}

function badge(status) {
  return el("span", { class: "badge", "data-status": status }, status.toUpperCase());
}

function meter(rate) {
  const share = rate === null || rate === undefined ? 0 : Math.max(0, Math.min(1, Number(rate)));
  const bar = el("div", { class: share < 0.98 ? "meter low" : "meter", role: "meter",
    "aria-valuemin": "0", "aria-valuemax": "1", "aria-valuenow": String(share) }, el("span"));
  bar.firstChild.style.width = `${(share * 100).toFixed(1)}%`;
  return bar;
}

function card(title, status, rows, extra, detail) {
  const list = el("dl");
  for (const [name, value] of rows) list.append(el("dt", {}, name), el("dd", {}, value));
  return el("article", { class: "card", "data-card": title, "data-status-of": status },
    el("h3", {}, el("span", {}, title), badge(status)), extra || null, list,
    detail ? el("p", { class: "detail" }, detail) : null);
}

// ---- services and providers ---------------------------------------------------------------

function healthStatus(report) {
  const base = { ok: "healthy", degraded: "degraded" }[report.status] || "unhealthy";
  const lagging = (report.projections || []).some(
    (p) => p.seconds_behind > LAG_DEGRADED_S || (p.dead_lettered || 0) > 0);
  const relayLagging = report.relay && report.relay.seconds_behind > LAG_DEGRADED_S;
  return worst([base, lagging || relayLagging ? "degraded" : "healthy"]);
}

function renderServices(health, database) {
  const cards = [];
  const db = database.body;
  const pool = db.pool || {};
  cards.push(card("Database", db.status || "unhealthy", [
    ["Query time", ms(db.query_ms)],
    ["Connections in use", `${pool.in_use ?? "—"} of ${pool.max ?? "—"}`],
    ["Idle", pool.idle ?? "—"],
    ["Open", pool.open ?? "—"],
    ...(db.replica ? [["Replica lag", seconds(db.replica.replication_lag_seconds)]] : []),
  ]));
  const report = health.body;
  cards.push(card("Broker", report.broker === "ok" ? "healthy" : "degraded", [
    ["RabbitMQ", report.broker],
  ]));
  const relay = report.relay;
  cards.push(card("Relay", relay ? (relay.seconds_behind > LAG_DEGRADED_S ? "degraded" : "healthy") : "unhealthy", [
    ["Events behind", relay ? relay.events_behind : "—"],
    ["Oldest waiting", relay ? seconds(relay.seconds_behind) : "—"],
    ["Published", relay ? relay.published_total : "—"],
  ]));
  for (const p of report.projections || []) {
    const bad = p.seconds_behind > LAG_DEGRADED_S || (p.dead_lettered || 0) > 0;
    cards.push(card(`Projection: ${p.projection}`, bad ? "degraded" : "healthy", [
      ["Events behind", p.events_behind],
      ["Lag", seconds(p.seconds_behind)],
      ["Dead letters", p.dead_lettered ?? "—"],
    ]));
  }
  if (report.intents) {
    const waiting = report.intents.needs_review > 0;
    cards.push(card("Open provider intents", waiting ? "degraded" : "healthy", [
      ["Needing review", report.intents.needs_review],
      ["Outcome being resolved", report.intents.provider_outcome_unknown],
    ]));
  }
  byId("services").replaceChildren(...cards);
}

function renderProviders(payments) {
  const cards = (payments.body.providers || []).map((p) => {
    const calls = p.calls || {};
    const today = p.today || {};
    const decided = ["approved_count", "declined_count", "failed_count", "expired_count"]
      .reduce((sum, k) => sum + (today[k] || 0), 0);
    return card(p.provider, p.status, [
      ["Call success (last calls)", `${percent(calls.success_rate)} of ${calls.calls || 0}`],
      ["Mean response", ms(calls.mean_response_ms)],
      ["Last success", when(calls.last_success_at)],
      ["Last failure", calls.last_failure_at
        ? `${when(calls.last_failure_at)} ${calls.last_failure_outcome || ""}` : "never"],
      ["Breaker", p.breaker],
      ["Approved today", `${today.approved_count ?? "—"} of ${decided}`],
      ["Success today", percent(today.success_rate)],
    ], meter(calls.success_rate ?? today.success_rate ?? null), p.detail);
  });
  byId("providers").replaceChildren(...(cards.length ? cards : [el("p", { class: "empty" }, "No provider configured.")]));
}

// ---- charts -------------------------------------------------------------------------------

function chart(name, ...nodes) {
  const holder = document.querySelector(`[data-chart="${name}"]`);
  holder.replaceChildren(...nodes);
}

function empty(text) {
  return el("p", { class: "empty" }, text);
}

function daysBetween(from, to) {
  const days = [];
  for (let d = new Date(`${from}T00:00:00Z`); d <= new Date(`${to}T00:00:00Z`); d.setUTCDate(d.getUTCDate() + 1)) {
    days.push(d.toISOString().slice(0, 10));
  }
  return days;
}

function legend(entries) {
  return el("div", { class: "legend" }, ...entries.map(([color, label]) => {
    const swatch = el("i");
    swatch.style.background = color;
    return el("span", {}, swatch, label);
  }));
}

// Vertical bars, one per day; `stack` is the lighter part above the main one.
function dayBars(days, main, stack, label) {
  const width = 560, height = 180, bottom = 20, top = 14;
  const max = Math.max(1, ...days.map((d) => main(d) + (stack ? stack(d) : 0)));
  const slot = width / days.length;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  days.forEach((d, i) => {
    const x = i * slot + slot * 0.15, w = slot * 0.7;
    const hMain = (main(d) / max) * (height - bottom - top);
    const hStack = stack ? (stack(d) / max) * (height - bottom - top) : 0;
    const g = svgEl("g", { "data-day": d.day, "data-value": main(d) });
    g.append(svgEl("rect", { x, y: height - bottom - hMain, width: w, height: hMain, fill: "#3b6fd8" }));
    if (stack) {
      g.append(svgEl("rect", { x, y: height - bottom - hMain - hStack, width: w, height: hStack, fill: "#c9d6f5" }));
    }
    g.append(svgEl("text", { class: "value", x: x + w / 2, y: height - bottom - hMain - hStack - 3, "text-anchor": "middle" }, label(d)));
    g.append(svgEl("text", { x: x + w / 2, y: height - 6, "text-anchor": "middle" }, d.day.slice(5)));
    svg.append(g);
  });
  return svg;
}

// Horizontal bars: [label, share 0..1, text].
function rowBars(rows) {
  const width = 560, row = 22, labelW = 200;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${rows.length * row + 4}`, role: "img" });
  rows.forEach(([label, share, text], i) => {
    const y = i * row + 2;
    const g = svgEl("g", { "data-row": label });
    g.append(svgEl("text", { x: 0, y: y + 14 }, label.length > 32 ? `${label.slice(0, 31)}…` : label));
    g.append(svgEl("rect", { x: labelW, y: y + 3, width: width - labelW - 90, height: row - 8, fill: "#eef1f8" }));
    g.append(svgEl("rect", { x: labelW, y: y + 3, width: Math.max(0, share) * (width - labelW - 90), height: row - 8, fill: "#3b6fd8" }));
    g.append(svgEl("text", { class: "value", x: width - 84, y: y + 14 }, text));
    svg.append(g);
  });
  return svg;
}

function renderAnalytics(summary) {
  byId("period").textContent = `(${summary.from} to ${summary.to}, UTC)`;
  const byDay = new Map(summary.days.map((d) => [d.day, d]));
  const days = daysBetween(summary.from, summary.to).map((day) => byDay.get(day) || {
    day, initiated_count: 0, approved_count: 0, declined_count: 0, failed_count: 0, expired_count: 0, refunded_count: 0,
  });
  const notApproved = (d) => d.declined_count + d.failed_count + d.expired_count;
  chart("daily",
    dayBars(days, (d) => d.approved_count, notApproved, (d) => d.approved_count),
    legend([["#3b6fd8", "approved"], ["#c9d6f5", "declined, failed or expired"]]));

  const currencies = [...new Set(summary.volume.map((v) => v.currency))];
  chart("volume", ...(currencies.length ? currencies.flatMap((currency) => {
    const amounts = new Map(summary.volume.filter((v) => v.currency === currency).map((v) => [v.day, Number(v.approved_amount)]));
    const totals = new Map(summary.volume.filter((v) => v.currency === currency).map((v) => [v.day, v.approved_amount]));
    const series = days.map((d) => ({ day: d.day, amount: amounts.get(d.day) || 0, text: totals.get(d.day) || "0" }));
    return [el("div", { class: "muted" }, currency), dayBars(series, (d) => d.amount, null, (d) => (d.amount ? d.text : ""))];
  }) : [empty("No approved payment in the period.")]));

  chart("success", summary.success.length
    ? rowBars(summary.success.map((s) => [`${s.provider} · ${s.payment_method_type}`,
        s.success_rate === null ? 0 : Number(s.success_rate),
        `${percent(s.success_rate)} (${s.decided_count})`]))
    : empty("Nothing decided in the period."));

  const most = Math.max(1, ...summary.failure_reasons.map((r) => r.count));
  chart("failures", summary.failure_reasons.length
    ? rowBars(summary.failure_reasons.map((r) => [r.reason, r.count / most, String(r.count)]))
    : empty("No failure in the period."));

  const money = currencies.flatMap((currency) => {
    const rows = summary.volume.filter((v) => v.currency === currency);
    const sum = (k) => rows.reduce((s, v) => s + Number(v[k]), 0);
    const approved = sum("approved_amount");
    const share = (x) => (approved > 0 ? x / approved : 0);
    const fees = sum("fee_amount"), refunds = sum("refunded_amount");
    return [
      [`${currency} fees`, share(fees), `${fees.toFixed(2)} (${percent(share(fees))})`],
      [`${currency} refunds`, share(refunds), `${refunds.toFixed(2)} (${percent(share(refunds))})`],
    ];
  });
  chart("money", money.length ? rowBars(money) : empty("No money moved in the period."));
}

function renderLag() {
  const samples = state.lagSamples;
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.lags)))];
  if (samples.length < 2 || !names.length) {
    chart("lag", empty("Drawn from the second refresh on."));
    return;
  }
  const width = 560, height = 160, pad = 24;
  const t0 = samples[0].at, t1 = samples[samples.length - 1].at;
  const max = Math.max(1, ...samples.flatMap((s) => Object.values(s.lags)));
  const colors = ["#3b6fd8", "#1b7f3b", "#b26a00", "#8e24aa", "#b3261e"];
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  svg.append(svgEl("text", { x: 0, y: 10 }, `max ${max.toFixed(2)} s`));
  names.forEach((name, i) => {
    const points = samples.filter((s) => name in s.lags).map((s) => {
      const x = pad + ((s.at - t0) / Math.max(1, t1 - t0)) * (width - 2 * pad);
      const y = height - pad - (s.lags[name] / max) * (height - 2 * pad);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    svg.append(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: colors[i % colors.length], "stroke-width": 2, "data-projection": name }));
  });
  svg.append(svgEl("text", { x: pad, y: height - 6 }, new Date(t0).toLocaleTimeString()));
  svg.append(svgEl("text", { x: width - pad, y: height - 6, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  chart("lag", svg, legend(names.map((n, i) => [colors[i % colors.length], n])));
}

// ---- refresh loop ---------------------------------------------------------------------------

function setLoading(loading) {
  state.loading = loading;
  byId("loading").hidden = !loading;
  byId("refresh").disabled = loading;
  byId("main").setAttribute("aria-busy", String(loading));
}

function showError(text) {
  const error = byId("error");
  error.textContent = text || "";
  error.hidden = !text;
}

async function refresh() {
  if (state.loading || !key()) return;
  setLoading(true);
  if (document.body.dataset.state !== "ready") document.body.dataset.state = "loading";
  try {
    const [health, database, payments, summary] = await Promise.all([
      read("/health"), read("/health/database"), read("/health/payments"),
      read(`/v1/analytics/summary?days=${SUMMARY_DAYS}`),
    ]);
    const overall = worst([healthStatus(health.body), database.body.status || "unhealthy",
      payments.body.status || "unhealthy"]);
    const top = byId("badge");
    top.textContent = overall.toUpperCase();
    top.dataset.status = overall;
    renderServices(health, database);
    renderProviders(payments);
    if (summary.status === 200) renderAnalytics(summary.body);
    state.lagSamples.push({ at: Date.now(), lags: Object.fromEntries(
      (health.body.projections || []).map((p) => [p.projection, p.seconds_behind])) });
    if (state.lagSamples.length > LAG_SAMPLES_MAX) state.lagSamples.shift();
    renderLag();
    byId("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    showError(summary.status === 200 ? null : "Analytics are unavailable right now; health is current.");
    document.body.dataset.state = "ready";
    if (state.firstReadyMs === null) {
      state.firstReadyMs = performance.now();
      document.body.dataset.firstReadyMs = state.firstReadyMs.toFixed(0);
    }
  } catch (error) {
    if (error instanceof SignInError) {
      signOut(error.message);
      return;
    }
    const top = byId("badge");
    top.textContent = "UNHEALTHY";
    top.dataset.status = "unhealthy";
    showError(`payledger could not be read: ${error.message}. Showing the last figures; retrying every ${REFRESH_MS / 1000} s.`);
    document.body.dataset.state = "error";
  } finally {
    setLoading(false);
  }
}

function signedIn() {
  byId("sign-in").hidden = true;
  byId("main").hidden = false;
  byId("controls").hidden = false;
  clearInterval(state.timer);
  state.timer = setInterval(refresh, REFRESH_MS);
  refresh();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  clearInterval(state.timer);
  state.timer = null;
  byId("main").hidden = true;
  byId("controls").hidden = true;
  byId("sign-in").hidden = false;
  const badgeEl = byId("badge");
  badgeEl.textContent = "—";
  badgeEl.dataset.status = "unknown";
  const error = byId("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
  document.body.dataset.state = "signed-out";
}

document.addEventListener("DOMContentLoaded", () => {
  byId("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = byId("key").value.trim();
    byId("key").value = "";
    if (!value) return;
    sessionStorage.setItem(KEY_STORAGE, value);
    signedIn();
  });
  byId("refresh").addEventListener("click", refresh);
  byId("sign-out").addEventListener("click", () => signOut(null));
  if (key()) signedIn();
});
