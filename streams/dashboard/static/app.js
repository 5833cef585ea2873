// streamrec dashboard: polls the worker's JSON endpoints and draws everything by hand (no libraries, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const STATS_MS = 1000;
const USER_MS = 1500;
let currentUser = new URLSearchParams(location.search).get("user") || "";
let activeRec = null; // rank of the hovered recommendation

// The learner's gate numbers of a version (model.gate.GateResult.metrics), when it has them.
function gateLine(m) {
  if (m["gate_points"] === undefined) return [];
  const f = (k) => (m[k] === undefined ? "-" : m[k].toFixed(4));
  const text = `gate: ndcg@10 ${f("ndcg@10")} vs serving ${f("serving_ndcg@10")} / anchor ${f("anchor_ndcg@10")}, ` +
    `diff ${f("gate_diff_mean")} [${f("gate_diff_low")}, ${f("gate_diff_high")}] on ${m["gate_points"]} targets`;
  return [el("div", { class: "muted gate" }, text)];
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
const ms = (n) => (n === null || n === undefined ? "–" : `${Number(n).toFixed(1)} ms`);

// ---- charts: a line chart on a canvas, several series, shared y axis from 0 ----
function lineChart(canvas, points, series) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 44, r: 8, t: 8, b: 18 };
  const values = points.flatMap((p) => series.map((s) => s.get(p)).filter((v) => v !== null && v !== undefined));
  const max = Math.max(1e-9, ...values) * 1.1;
  const x = (i) => pad.l + (points.length < 2 ? 0 : (i / (points.length - 1)) * (w - pad.l - pad.r));
  const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  ctx.strokeStyle = "#2a3541"; ctx.fillStyle = "#8494a3"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = (max / 4) * k, yy = y(v);
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    ctx.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(1), 4, yy + 4);
  }
  if (points.length) {
    const secs = Math.round(points[points.length - 1].t - points[0].t);
    ctx.fillText(`last ${secs} s`, w - pad.r - 60, h - 4);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    points.forEach((p, i) => {
      const v = s.get(p);
      if (v === null || v === undefined) { pen = false; return; }
      if (pen) ctx.lineTo(x(i), y(v)); else { ctx.moveTo(x(i), y(v)); pen = true; }
    });
    ctx.stroke();
    ctx.fillStyle = s.color; // dots too, so a lone point between idle seconds still shows
    points.forEach((p, i) => {
      const v = s.get(p);
      if (v !== null && v !== undefined) { ctx.beginPath(); ctx.arc(x(i), y(v), 2, 0, 2 * Math.PI); ctx.fill(); }
    });
  }
}

// ---- stats ----
async function pollStats() {
  try {
    const r = await fetch("/api/dashboard/stats", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const s = await r.json();
    renderStats(s);
    $("status").textContent = `live · ${new Date().toLocaleTimeString()}`;
    $("status").className = "status ok";
  } catch (e) {
    $("status").textContent = `worker unreachable (${e.message})`;
    $("status").className = "status err";
  }
}

function renderStats(s) {
  $("total-events").textContent = fmt(s.totals.events);
  $("total-recs").textContent = fmt(s.totals.recommendations);
  $("total-dead").textContent = fmt(s.totals.dead_letters);
  $("model").textContent = s.model_version;
  const css = getComputedStyle(document.documentElement);
  const c = (name) => css.getPropertyValue(name).trim();
  lineChart($("chart-throughput"), s.series, [
    { color: c("--ev"), get: (p) => p.events_per_s },
    { color: c("--rec"), get: (p) => p.recs_per_s },
  ]);
  lineChart($("chart-latency"), s.series, [
    { color: c("--p50"), get: (p) => p.latency_ms.p50 },
    { color: c("--p95"), get: (p) => p.latency_ms.p95 },
    { color: c("--p99"), get: (p) => p.latency_ms.p99 },
  ]);
  const body = el("tbody");
  const reasons = Object.entries(s.dead_letters).sort((a, b) => b[1] - a[1]);
  if (!reasons.length) body.append(el("tr", {}, el("td", { class: "muted" }, "none")));
  for (const [reason, n] of reasons) body.append(el("tr", {}, el("td", {}, reason), el("td", { class: "n" }, fmt(n))));
  $("dead-letters").replaceChildren(body);
  $("models").replaceChildren(...s.models.map((m, i) => el("li",
    { class: i === s.models.length - 1 ? "current" : "" },
    `${m.version} `, el("span", { class: "muted" }, `since ${new Date(m.t * 1000).toLocaleTimeString()}`),
    ...gateLine(m.metrics || {}))));
  $("recent-users").replaceChildren(...s.recent_users.map((u) => {
    const b = el("button", { class: u === currentUser ? "chip sel" : "chip", type: "button" }, u);
    b.addEventListener("click", () => selectUser(u));
    return b;
  }));
}

// ---- per-user view ----
function selectUser(u) {
  currentUser = u.trim();
  const url = new URL(location.href);
  url.searchParams.set("user", currentUser);
  history.replaceState(null, "", url);
  $("user-input").value = currentUser;
  pollUser();
}

async function pollUser() {
  if (!currentUser) return;
  try {
    const r = await fetch(`/api/dashboard/users/${encodeURIComponent(currentUser)}`, { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    renderUser(await r.json());
  } catch (e) {
    $("user-empty").textContent = `could not load user ${currentUser}: ${e.message}`;
  }
}

function itemLabel(titles, id) {
  return titles[id] ? `${titles[id]}` : id;
}

function renderUser(u) {
  const rec = u.recommendation;
  $("user-empty").hidden = !!rec;
  $("user-view").hidden = !rec;
  if (!rec) {
    $("user-empty").textContent = u.events.length ? `no recommendation yet for ${u.user_id}` : `no events for user ${u.user_id} yet`;
    return;
  }
  const titles = u.titles;
  const byId = Object.fromEntries(u.events.map((e) => [e.event_id, e]));
  const trig = byId[rec.trigger_event_id];
  $("user-id").textContent = u.user_id;
  $("trigger").textContent = trig ? `${trig.type} ${trig.query ? `'${trig.query}'` : itemLabel(titles, trig.item_id)}` : rec.trigger_event_id;
  $("trigger").dataset.eventId = rec.trigger_event_id;
  $("rec-model").textContent = rec.model_version;
  $("rec-latency").textContent = u.source === "stream" ? ms(rec.latency_ms) : "on demand";
  $("rec-source").textContent = u.source === "stream" ? "last sent on the stream" : "computed now (another worker served this user)";
  $("updated").textContent = new Date(rec.generated_at).toLocaleTimeString();
  const evidenceOf = new Map(rec.items.map((it) => [it.rank, new Set(it.explanation.evidence.map((x) => x.event_id))]));
  const allEvidence = new Set([...evidenceOf.values()].flatMap((s) => [...s]));
  $("recs").replaceChildren(...rec.items.map((it) => {
    const ex = it.explanation;
    const li = el("li", { class: `rec${activeRec === it.rank ? " active" : ""}`, "data-rank": it.rank },
      el("div", {}, el("span", { class: "rec-title" }, itemLabel(titles, it.item_id)), el("span", { class: "rec-id" }, `${it.item_id} · score ${it.score.toFixed(3)}`)),
      el("div", { class: "why" }, ex.text),
      el("div", { class: "reasons" }, ...ex.reasons.map((r) => el("span", { class: "reason", title: `weight ${r.weight.toFixed(3)}` }, r.detail ? `${r.kind.replaceAll("_", " ")}: ${r.detail}` : r.kind.replaceAll("_", " ")))),
      el("div", { class: "evidence" }, ex.evidence.length ? "evidence: " + ex.evidence.map((x) => `${x.type} ${x.item_id ? itemLabel(titles, x.item_id) : "search"} (${x.weight >= 0 ? "+" : ""}${x.weight.toFixed(2)})`).join(" · ") : "no personal evidence"));
    li.addEventListener("mouseenter", () => { activeRec = it.rank; highlight(evidenceOf, allEvidence); });
    li.addEventListener("mouseleave", () => { activeRec = null; highlight(evidenceOf, allEvidence); });
    return li;
  }));
  $("history").replaceChildren(...u.events.map((e) => el("li", { "data-event-id": e.event_id },
    el("span", { class: `etype ${e.type}` }, e.type.replaceAll("_", " ")),
    e.query ? `'${e.query}'` : itemLabel(titles, e.item_id),
    el("span", { class: "muted" }, ` · ${new Date(e.ts * 1000).toISOString().slice(0, 16).replace("T", " ")}`))));
  highlight(evidenceOf, allEvidence);
}

function highlight(evidenceOf, allEvidence) {
  const active = activeRec === null ? null : evidenceOf.get(activeRec);
  for (const li of $("history").children) {
    const id = li.dataset.eventId;
    li.classList.toggle("is-evidence", allEvidence.has(id));
    li.classList.toggle("evidence-active", !!active && active.has(id));
  }
  for (const li of $("recs").children) li.classList.toggle("active", Number(li.dataset.rank) === activeRec);
}

$("user-form").addEventListener("submit", (ev) => { ev.preventDefault(); selectUser($("user-input").value); });
if (currentUser) $("user-input").value = currentUser;
pollStats(); pollUser();
setInterval(pollStats, STATS_MS);
setInterval(pollUser, USER_MS);
