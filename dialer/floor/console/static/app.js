// Dialer floor: live page fed by server-sent events (/api/events). No framework, no CDN.
// Everything that comes from the server is put in the page with textContent, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PACING_KEYS = [
  ["abandon_cap", "number", "0.001"], ["abandon_window", "text", ""], ["hold_limit_s", "number", "0.1"],
  ["ring_timeout_s", "number", "1"], ["max_lines_per_agent", "number", "0.1"], ["min_agents_predictive", "number", "1"],
  ["power_ratio", "number", "0.1"], ["channels", "number", "1"], ["calls_per_second", "number", "0.5"],
  ["wrapup_s", "number", "1"],
];
const WINDOWS = ["1m", "1h", "today", "30d"];
let source = null;
let last = null;
let pacingFor = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "width") e.style.width = v; // CSSOM, allowed by the page's CSP
    else if (k === "onclick") e.addEventListener("click", v); // no inline handlers under the CSP
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const pct = (x, d = 1) => (x * 100).toFixed(d) + "%";
const num = (x, d = 2) => Number(x).toFixed(d);
function dur(s) {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(r).padStart(2, "0");
}
function hhmm(iso) {
  const d = new Date(iso);
  return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: { "X-Actor": localStorage.getItem("actor") || "" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) showLogin();
  return { ok: r.ok, status: r.status, data };
}

// --- sign-in ----------------------------------------------------------------------------
function showLogin(msg) {
  if (source) { source.close(); source = null; }
  setConn(false);
  $("#login").classList.remove("hidden");
  $("#login-msg").textContent = msg || "";
  $("#token").focus();
}
$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  localStorage.setItem("actor", $("#actor").value.trim());
  const user = $("#username").value.trim();
  const r = await fetch("/api/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(user ? { username: user, password: $("#password").value } : { token: $("#token").value }),
  });
  $("#token").value = "";
  $("#password").value = "";
  if (!r.ok) { $("#login-msg").textContent = user ? "Wrong user name or password." : "Wrong token."; return; }
  $("#login").classList.add("hidden");
  connect();
});
$("#logout-btn").addEventListener("click", async () => {
  await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
  showLogin();
});

// --- live updates ---------------------------------------------------------------------
function setConn(on) {
  const c = $("#conn");
  c.textContent = on ? "live" : "offline";
  c.className = "conn " + (on ? "on" : "off");
}
function connect() {
  if (source) source.close();
  source = new EventSource("/api/events");
  source.addEventListener("open", () => setConn(true));
  source.addEventListener("snapshot", (e) => { setConn(true); render(JSON.parse(e.data)); });
  source.addEventListener("error", async () => {
    setConn(false); // EventSource reconnects by itself; only a lost session needs the user
    try {
      const r = await fetch("/api/session", { credentials: "same-origin" });
      if (r.status === 401) showLogin("Session ended: sign in again.");
    } catch (e) { /* server unreachable: keep retrying */ }
  });
}

let history = [];
function render(s) {
  if (s.history) history = s.history; // the stream resends the shift only when it grows
  s.history = history;
  last = s;
  $("#clock").textContent = new Date(s.at).toLocaleTimeString([], { hour12: false });
  renderCampaigns(s.campaigns);
  renderAgents(s.agents, s.calls, s.handle_times);
  renderCalls(s.calls);
  renderWorkers(s.workers || []);
  renderBanner(s.campaigns, s.reloads || [], s.health);
  drawPlot(s.history, s.campaigns);
  fillPacingSelect(s.campaigns);
  renderReloads(s.reloads || []);
}

function renderCampaigns(list) {
  const tb = $("#campaigns tbody");
  const rows = [];
  for (const c of list) {
    const tr = el("tr", { "data-campaign": c.name });
    const mode = c.effective_mode !== c.mode ? c.mode + " → " + c.effective_mode : c.mode;
    tr.append(
      el("td", {}, el("strong", { text: c.name }), el("div", { class: "small", text: mode + " · " + c.purpose })),
      el("td", { "data-field": "state" }, el("span", { class: "state " + c.state, text: c.state })),
      el("td", { "data-field": "progress" }, el("span", { class: "bar" }, el("i", { width: pct(c.progress, 0) })),
        c.contacts_done + "/" + c.contacts),
      el("td", { class: "num", "data-field": "attempts", text: String(c.attempts) }),
      el("td", { class: "num", "data-field": "calls_in_flight", text: String(c.calls_in_flight) }),
      el("td", { class: "num", "data-field": "dial_level", text: num(c.dial_level) }),
      el("td", { class: "num", "data-field": "lines_per_agent", text: num(c.lines_per_agent) }),
      el("td", { class: "num", "data-field": "answer_rate", text: pct(c.answer_rate) }),
    );
    for (const w of WINDOWS) {
      const r = c.abandon[w] || { rate: 0, abandoned: 0, live_answers: 0 };
      const st = (c.abandon_status || {})[w] || "ok";
      tr.append(el("td", {
        class: "num " + st, "data-field": "abandon_" + w,
        title: r.abandoned + " abandoned / " + r.live_answers + " live answers", text: pct(r.rate, 2),
      }));
    }
    tr.append(el("td", { class: "num", "data-field": "cap", text: pct(c.abandon_cap, 1) }));
    const reasons = Object.entries(c.hopper_reasons || {}).filter(([, n]) => n > 0).map(([k, n]) => k.replace(/_/g, " ") + " " + n);
    tr.append(el("td", { "data-field": "hopper" }, el("strong", { text: String(c.hopper_eligible) }), " ready",
      el("div", { class: "small", text: reasons.join(", ") || "—" })));
    const act = el("td", {});
    const paused = c.state === "paused";
    const btn = el("button", { type: "button", class: paused ? "resume" : "pause", text: paused ? "Resume" : "Pause" });
    btn.addEventListener("click", () => pauseResume(c.name, paused));
    const pb = el("button", { type: "button", class: "pacing", text: "Pacing" });
    pb.addEventListener("click", () => openPacing(c.name));
    act.append(btn, " ", pb);
    tr.append(act);
    rows.push(tr);
    if (c.held_reason) {
      rows.push(el("tr", { class: "error-row alarm" }, el("td", { colspan: "15", class: "err", text: "⛔ dialling held: " + c.held_reason })));
    }
    if (c.last_error) {
      rows.push(el("tr", { class: "error-row" }, el("td", { colspan: "15", class: "err", text: "⚠ " + c.last_error })));
    }
  }
  if (!rows.length) rows.push(el("tr", { class: "placeholder" }, el("td", { colspan: "15", text: "no campaigns" })));
  tb.replaceChildren(...rows);
}

function chips(target, counts) {
  target.replaceChildren(...Object.entries(counts).sort().map(([k, n]) =>
    el("span", { class: "chip state " + k, "data-state": k, text: k.replace("_", " ") + " " + n })));
}

async function force(agent, action) {
  const r = await api("POST", "/api/agents/force", { agent, action, reason: "supervisor" });
  if (!r.ok) alert((r.data && r.data.error) || r.status);
}

function ahtText(x) {
  return x && x.aht_s != null ? dur(x.aht_s) : "—";
}

function renderHandleTimes(h) {
  if (!h) return;
  $("#aht-all").textContent = ahtText(h.all) + " over " + h.all.calls + " calls";
  $("#aht-queues").replaceChildren(...[
    ...h.by_campaign.map((c) => el("span", { class: "chip", "data-campaign": c.name, text: c.name + " " + ahtText(c) })),
    ...h.by_queue.map((q) => el("span", { class: "chip", "data-queue": q.name, text: "queue " + q.name + " " + ahtText(q) })),
  ]);
}

function renderAgents(a, calls, handled) {
  renderHandleTimes(handled);
  const aht = {};
  for (const x of (handled && handled.by_agent) || []) aht[x.name] = x;
  const onCall = {};
  for (const k of (calls && calls.calls) || []) if (k.agent && k.state === "with_agent") onCall[k.agent] = k;
  chips($("#agent-counts"), a.by_state);
  const order = { talking: 0, ringing: 1, wrapup: 2, idle: 3, paused: 4, unavailable: 5, logged_out: 6 };
  const list = [...a.agents].sort((x, y) => (order[x.state] - order[y.state]) || x.name.localeCompare(y.name, undefined, { numeric: true }));
  $("#agents tbody").replaceChildren(...list.map((g) => el("tr", {},
    el("td", { text: g.name }),
    el("td", {}, el("span", { class: "state " + g.state, text: g.state + (g.pause_reason ? " (" + g.pause_reason + ")" : "") })),
    el("td", { class: "num", text: dur(g.seconds_in_state) }),
    el("td", { class: "num", text: String(g.calls_handled) }),
    el("td", { class: "num aht", title: aht[g.name] ? aht[g.name].calls + " calls: talk " + dur(aht[g.name].talk_s) + " + wrap-up " + dur(aht[g.name].wrapup_s) : "", text: ahtText(aht[g.name]) }),
    el("td", { text: onCall[g.name] ? onCall[g.name].phone_masked + " " + onCall[g.name].campaign : "" }),
    el("td", {}, ...(g.state === "logged_out" ? [] : [
      el("button", { type: "button", class: "force-pause", "data-agent": g.name, text: "pause", onclick: () => force(g.name, "pause") }),
      el("button", { type: "button", class: "force-logout", "data-agent": g.name, text: "log out", onclick: () => force(g.name, "logout") })])))));
  const sel = $("#preview-agent");
  const cur = sel.value;
  sel.replaceChildren(...a.agents.filter((g) => g.state !== "logged_out" && g.state !== "unavailable").map((g) => el("option", { value: g.name, text: g.name })));
  if (cur) sel.value = cur;
}

function renderCalls(c) {
  chips($("#call-counts"), c.by_state);
  $("#calls tbody").replaceChildren(...c.calls.map((k) => el("tr", {},
    el("td", { text: k.campaign }),
    el("td", {}, el("span", { class: "state " + k.state, text: k.state })),
    el("td", { text: k.phone_masked }),
    el("td", { text: k.agent || "" }),
    el("td", { class: "num", text: dur(k.seconds_in_state) }))));
}

// Several workers on one store: each one's heartbeat and, per switch it serves, what it reported.
function renderWorkers(list) {
  $("#workers-card").classList.toggle("hidden", !list.length);
  const counts = {};
  for (const w of list) counts[w.state] = (counts[w.state] || 0) + 1;
  chips($("#worker-counts"), counts);
  const rows = [];
  for (const w of list) {
    const sw = Object.entries((w.info || {}).switches || {});
    const cells = (name, x) => [
      el("td", { "data-field": "switch", text: name }),
      el("td", {}, x ? el("span", { class: "state " + (x.ami_ready ? "idle" : "over"), text: x.ami_ready ? "up" : "down" }) : ""),
      el("td", { class: "num", "data-field": "live_calls", text: x ? String(x.live_calls) : "" }),
      el("td", { class: "num", text: x ? String(x.originates_sent) : "" }),
      el("td", { class: "small", text: x ? Object.entries(x.agents || {}).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ") : "" }),
    ];
    const head = [
      el("td", {}, el("strong", { text: w.id }), el("div", { class: "small", text: w.host + " · pid " + w.pid })),
      el("td", {}, el("span", { class: "state " + (w.state === "alive" ? "running" : w.state === "dead" ? "over" : "paused"), text: w.state })),
      el("td", { class: "num", text: dur(w.heartbeat_age_s) }),
    ];
    const shown = w.state === "alive" ? sw : [];
    if (!shown.length) rows.push(el("tr", { "data-worker": w.id }, ...head, ...cells("—", null)));
    shown.forEach(([name, x], i) => rows.push(el("tr", { "data-worker": w.id },
      ...(i ? [el("td", {}), el("td", {}), el("td", {})] : head), ...cells(name, x))));
  }
  $("#workers tbody").replaceChildren(...rows);
}

function renderBanner(list, reloads, health) {
  const b = $("#banner");
  const msgs = [];
  let over = false;
  if (health) {
    for (const [name, d] of Object.entries(health.dependencies || {})) {
      if (!d.up) { over = true; msgs.push("⛔ " + name + " DOWN" + (d.detail ? ": " + d.detail : "")); }
    }
    for (const a of health.alarms || []) {
      if (a.kind === "abandon_near" || a.kind === "abandon_over" || a.kind.endsWith("_down")) continue; // said above / below
      over = true;
      msgs.push("⛔ " + a.subject + ": " + a.message);
    }
  }
  for (const c of list) {
    const r = (c.abandon.cap_window || { rate: 0 }).rate;
    if (c.cap_status === "over") { over = true; msgs.push(c.name + ": abandon rate " + pct(r, 2) + " is OVER the cap " + pct(c.abandon_cap, 1)); }
    else if (c.cap_status === "near") msgs.push(c.name + ": abandon rate " + pct(r, 2) + " is nearing the cap " + pct(c.abandon_cap, 1));
  }
  const lastReload = reloads.length ? reloads[reloads.length - 1] : null;
  if (lastReload && !lastReload.ok) msgs.push("Reload refused: " + lastReload.error);
  b.textContent = msgs.join("  ·  ");
  b.className = "banner" + (over ? " over" : "") + (msgs.length ? "" : " hidden");
}

function renderReloads(reloads) {
  const box = $("#reloads");
  if (!reloads.length) { box.replaceChildren(); return; }
  box.replaceChildren(el("h3", { text: "Recent reloads" }), ...reloads.slice(-5).reverse().map((r) =>
    el("div", { class: "msg " + (r.ok ? "ok" : "err"),
      text: hhmm(r.at) + " " + r.actor + ": " + (r.ok ? (r.changed.length ? "applied " + r.changed.join(", ") : "no change") : r.error) })));
}

// --- the plot: occupancy (left axis, 0-100 %) and abandon rate (right axis) over the shift ---
function drawPlot(hist, camps) {
  const cv = $("#plot");
  const dpr = window.devicePixelRatio || 1;
  const W = cv.clientWidth || 560, H = cv.clientHeight || 220;
  if (cv.width !== Math.round(W * dpr)) { cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr); }
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  const L = 42, R = 48, T = 10, B = 24, pw = W - L - R, ph = H - T - B;
  const cap = camps.length ? Math.max(...camps.map((c) => c.abandon_cap)) : 0.03;
  const maxA = Math.max(cap * 2, ...hist.map((h) => h.abandon_rate * 1.15));
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#e2e5ea"; g.fillStyle = "#667085"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = T + ph - (ph * i) / 4;
    g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
    g.textAlign = "right"; g.fillText((25 * i) + "%", L - 4, y + 4);
    g.textAlign = "left"; g.fillText(pct((maxA * i) / 4, 1), L + pw + 4, y + 4);
  }
  if (hist.length < 2) {
    g.textAlign = "center"; g.fillText("collecting the shift…", L + pw / 2, T + ph / 2);
    return;
  }
  const t0 = Date.parse(hist[0].at), t1 = Date.parse(hist[hist.length - 1].at);
  const X = (iso) => L + (pw * (Date.parse(iso) - t0)) / Math.max(1, t1 - t0);
  g.textAlign = "center";
  for (let i = 0; i <= 4; i++) {
    const t = new Date(t0 + ((t1 - t0) * i) / 4);
    g.fillText(hhmm(t.toISOString()), L + (pw * i) / 4, H - 6);
  }
  const yA = (v) => T + ph - (ph * v) / maxA;
  g.setLineDash([5, 4]); g.strokeStyle = "#d92d20"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(L, yA(cap)); g.lineTo(L + pw, yA(cap)); g.stroke();
  g.setLineDash([]);
  const line = (color, yf) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    hist.forEach((h, i) => { const x = X(h.at), y = yf(h); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
    g.stroke();
  };
  line("#2563eb", (h) => T + ph - ph * Math.min(1, h.occupancy));
  line("#d92d20", (h) => yA(h.abandon_rate));
}

// --- actions --------------------------------------------------------------------------
async function pauseResume(name, paused) {
  const r = await api("POST", "/api/campaigns/" + encodeURIComponent(name) + (paused ? "/resume" : "/pause"));
  if (!r.ok) alertMsg((r.data && r.data.error) || "failed");
}
function alertMsg(text) { const b = $("#banner"); b.textContent = text; b.className = "banner over"; }

function fillPacingSelect(list) {
  const sel = $("#pacing-campaign");
  const names = list.map((c) => c.name);
  const have = [...sel.options].map((o) => o.value);
  if (names.join("\n") !== have.join("\n")) {
    sel.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (pacingFor && names.includes(pacingFor)) sel.value = pacingFor;
  }
  if (!pacingFor && names.length) buildPacing(names[0]);
}
function openPacing(name) {
  $("#pacing-campaign").value = name;
  buildPacing(name);
  $("#pacing-card").scrollIntoView({ behavior: "smooth" });
}
$("#pacing-campaign").addEventListener("change", (e) => buildPacing(e.target.value));

function buildPacing(name) {
  pacingFor = name;
  const c = last && last.campaigns.find((x) => x.name === name);
  if (!c) return;
  const box = $("#pacing-fields");
  box.replaceChildren(...PACING_KEYS.filter(([k]) => k in c.pacing).map(([k, type, step]) => {
    const inp = el("input", { name: k, type, value: String(c.pacing[k]), "data-orig": String(c.pacing[k]) });
    if (step) inp.setAttribute("step", "any");
    return el("label", {}, k.replace(/_/g, " "), inp);
  }));
  $("#pacing-msg").textContent = "";
  $("#preview").classList.toggle("hidden", c.mode !== "preview");
}
$("#pacing-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const changes = {};
  for (const inp of $("#pacing-fields").querySelectorAll("input")) {
    if (inp.value === inp.dataset.orig) continue;
    changes[inp.name] = inp.type === "number" && inp.value.trim() !== "" && !isNaN(Number(inp.value)) ? Number(inp.value) : inp.value;
  }
  const msg = $("#pacing-msg");
  if (!Object.keys(changes).length) { msg.className = "msg"; msg.textContent = "nothing changed"; return; }
  const r = await api("PATCH", "/api/campaigns/" + encodeURIComponent(pacingFor) + "/pacing", changes);
  msg.className = "msg " + (r.ok ? "ok" : "err");
  msg.textContent = r.ok ? "applied: " + Object.keys(changes).join(", ") : (r.data && r.data.error) || "refused";
  if (r.ok) for (const inp of $("#pacing-fields").querySelectorAll("input")) {
    if (inp.name in r.data.pacing) { inp.value = String(r.data.pacing[inp.name]); inp.dataset.orig = inp.value; }
  }
});
$("#preview-btn").addEventListener("click", async () => {
  const r = await api("POST", "/api/campaigns/" + encodeURIComponent(pacingFor) + "/preview-next", { agent: $("#preview-agent").value });
  const flat = (o, pre) => Object.entries(o).flatMap(([k, v]) =>
    v && typeof v === "object" ? flat(v, pre + k + ".") : [pre + k + ": " + v]);
  $("#preview-out").textContent = !r.ok ? (r.data && r.data.error) || "failed"
    : r.data.contact ? flat(r.data.contact, "").join("\n") : "no contact ready";
});
$("#reload-btn").addEventListener("click", async () => { await api("POST", "/api/reload"); });

// --- SMS and e-mail: counts by channel and state, free-text replies for agents ----------
async function loadMessages() {
  const r = await api("GET", "/api/messages");
  if (!r.ok || !r.data) return;
  const counts = {};
  for (const [ch, states] of Object.entries(r.data.channels)) {
    for (const [st, n] of Object.entries(states)) counts[ch + " " + st] = n;
  }
  chips($("#message-counts"), counts);
  const rows = r.data.replies.map((x) => {
    const done = el("button", { type: "button", class: "small", text: "Done" });
    done.addEventListener("click", async () => {
      await api("POST", "/api/replies/" + x.id + "/handled");
      loadMessages();
    });
    return el("tr", { "data-reply": String(x.id) },
      el("td", { text: hhmm(x.received_at) }),
      el("td", { text: x.channel }),
      el("td", { text: x.from }),
      el("td", { text: x.text }),
      el("td", {}, done));
  });
  $("#replies tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", { class: "placeholder" }, el("td", { colspan: "5", text: "no replies waiting" }))]));
}
setInterval(() => { if (last) loadMessages(); }, 5000);

// --- alerts from the bank's systems: open ones with stage and age; past deadline = alarm --
async function loadAlerts() {
  const r = await api("GET", "/api/v1/alerts");
  const card = $("#alerts-card");
  if (!r.ok || !r.data) { card.classList.add("hidden"); return; }  // 404: none configured
  card.classList.remove("hidden");
  const list = r.data.alerts;
  const open = list.filter((a) => a.state === "open").length;
  chips($("#alert-counts"), { open: open, "past deadline": r.data.overdue });
  const rows = list.map((a) => el("tr", { "data-alert": String(a.id), class: a.overdue ? "over" : "" },
    el("td", { text: a.type }),
    el("td", { text: Object.entries(a.target).map(([k, v]) => k + " " + v).join("") }),
    el("td", { text: String(a.priority) }),
    el("td", { "data-field": "state", text: a.overdue ? a.state + " (past deadline)" : a.state }),
    el("td", { "data-field": "stage", text: Math.min(a.stage + 1, a.steps) + "/" + a.steps }),
    el("td", { text: a.next ? a.next.act + " " + a.next.who : "" }),
    el("td", { class: "num", text: dur(a.age_s) }),
    el("td", { text: hhmm(a.deadline_at) })));
  $("#alerts tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", { class: "placeholder" }, el("td", { colspan: "8", text: "no open alerts" }))]));
  if (r.data.overdue) alertMsg(r.data.overdue + " alert(s) past their deadline unacknowledged");
}
setInterval(() => { if (last) loadAlerts(); }, 3000);

// --- start ----------------------------------------------------------------------------
(async () => {
  const r = await fetch("/api/session", { credentials: "same-origin" });
  if (r.ok) connect(); else showLogin();
})();
