// The agent's desktop: sign in, queues, ready/pause, screen-pop, disposition. No framework.
"use strict";
const $ = (s) => document.querySelector(s);
const T = {
  zh: { title: "坐席工作台", signout: "退出", phone: "我的电话", queues_in: "登录队列", queues_out: "退出队列",
    ready: "就绪", pause: "暂停", dial: "拨号", queues: "队列", next: "下一位客户", customer: "客户", no_call: "暂无通话",
    campaign: "活动", call: "通话", fields: "客户资料", ivr: "语音导航记录", history: "历史", script: "话术",
    disposition: "处理结果", callback_at: "回拨时间 (客户当地)", notes: "备注", save: "保存", signin: "坐席登录",
    username: "用户名", password: "密码", signin_btn: "登录", saved: "已保存", none: "没有可拨打的客户",
    idle: "就绪", paused: "暂停", ringing: "振铃", talking: "通话中", wrapup: "话后整理", logged_out: "未登录",
    skip: "跳过", skipped: "已跳过", dialling: "正在拨号", unavailable: "不可用", break: "休息", lunch: "午餐", training: "培训", meeting: "会议", coaching: "辅导", system: "系统" },
  en: { title: "Agent desktop", signout: "Sign out", phone: "My phone", queues_in: "Log in to queues",
    queues_out: "Log out of queues", ready: "Ready", pause: "Pause", dial: "Dial", queues: "Queues", next: "Next customer",
    customer: "Customer", no_call: "No call", campaign: "Campaign", call: "Call", fields: "Customer data",
    ivr: "What the IVR recorded", history: "History", script: "Script", disposition: "Disposition",
    callback_at: "Call back at (customer's time)", notes: "Notes", save: "Save", signin: "Agent sign-in",
    username: "User name", password: "Password", signin_btn: "Sign in", saved: "Saved", none: "No contact to call",
    idle: "Ready", paused: "Paused", ringing: "Ringing", talking: "On a call", wrapup: "Wrap-up", logged_out: "Logged out",
    skip: "Skip", skipped: "Skipped", dialling: "Dialling", unavailable: "Unavailable", break: "Break", lunch: "Lunch", training: "Training", meeting: "Meeting", coaching: "Coaching", system: "System" },
};
let lang = localStorage.getItem("desk-lang") || "zh";
let me = null;
let pop = null;
let source = null;
const t = (k) => (T[lang] && T[lang][k]) || k;

function applyLang() {
  document.documentElement.lang = lang;
  $("#lang").value = lang;
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  if (me) render(me);
}
$("#lang").addEventListener("change", () => { lang = $("#lang").value; localStorage.setItem("desk-lang", lang); applyLang(); });

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) showLogin();
  return { ok: r.ok, status: r.status, data };
}
function say(sel, text, ok) { const el = $(sel); el.textContent = text || ""; el.className = "msg " + (ok ? "ok" : "err"); }

// --- sign-in ---------------------------------------------------------------------------------
function showLogin(msg) {
  if (source) { source.close(); source = null; }
  $("#desk").classList.add("hidden");
  $("#login").classList.remove("hidden");
  $("#login-msg").textContent = msg || "";
}
$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/api/login", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("#username").value.trim(), password: $("#password").value }) });
  $("#password").value = "";
  let data = null; try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) { $("#login-msg").textContent = (data && data.error) || "refused"; return; }
  if (data.user && data.user.language && !localStorage.getItem("desk-lang")) { lang = data.user.language; }
  await start();
});
$("#signout-btn").addEventListener("click", async () => { await api("POST", "/api/logout"); showLogin(); });

// --- the desk --------------------------------------------------------------------------------
async function start() {
  const r = await api("GET", "/api/desk");
  if (!r.ok) { if (r.status !== 401) showLogin((r.data && r.data.error) || ""); return; }
  me = r.data;
  $("#login").classList.add("hidden");
  $("#desk").classList.remove("hidden");
  const reasons = $("#pause-reason");
  reasons.innerHTML = "";
  for (const code of me.pause_reasons) { const o = document.createElement("option"); o.value = code; o.textContent = t(code); reasons.appendChild(o); }
  const previews = me.campaigns.filter((c) => c.mode === "preview");
  $("#preview-row").classList.toggle("hidden", previews.length === 0);
  $("#preview-campaign").innerHTML = "";
  for (const c of previews) { const o = document.createElement("option"); o.value = c.name; o.textContent = c.name; $("#preview-campaign").appendChild(o); }
  $("#manual-campaign").innerHTML = "";
  for (const c of me.campaigns) { const o = document.createElement("option"); o.value = c.name; o.textContent = c.name; $("#manual-campaign").appendChild(o); }
  applyLang();
  if (me.pop) showPop(me.pop);
  connect();
}
function render(d) {
  $("#who").textContent = (d.user.display_name || d.user.username) + " · " + d.user.interface;
  showState(d.agent);
}
function showState(a) {
  const el = $("#state");
  el.textContent = t(a.state) + (a.pause_reason && a.state === "paused" ? " · " + t(a.pause_reason) : "");
  el.className = "badge " + a.state;
  el.dataset.state = a.state;
  el.dataset.reason = a.pause_reason || "";
  $("#state-time").textContent = a.seconds + "s";
  $("#queues").textContent = (a.queues || []).join(", ") || "-";
}
function connect() {
  if (source) source.close();
  source = new EventSource("/api/desk/events");
  source.addEventListener("state", (ev) => { const a = JSON.parse(ev.data); if (me) me.agent = a; showState(a); });
  source.addEventListener("pop", (ev) => showPop(JSON.parse(ev.data)));
  source.onerror = () => { api("GET", "/api/session"); };
}

function cell(tr, text, tag) { const c = document.createElement(tag || "td"); c.textContent = text == null ? "" : String(text); tr.appendChild(c); }
function showPop(p) {
  pop = p;
  $("#pop-empty").classList.add("hidden");
  $("#pop").classList.remove("hidden");
  $("#pop-card").dataset.attempt = p.attempt_id;
  $("#pop-name").textContent = (p.customer && p.customer.name) || "";
  $("#pop-phone").textContent = (p.customer && p.customer.phone) || "";
  $("#pop-campaign").textContent = p.campaign || "";
  $("#pop-attempt").textContent = p.attempt_id;
  const ft = $("#pop-fields"); ft.innerHTML = "";
  for (const [k, v] of Object.entries(p.fields || {})) { const tr = document.createElement("tr"); cell(tr, k, "th"); cell(tr, v); ft.appendChild(tr); }
  const ivr = $("#pop-ivr"); ivr.innerHTML = "";
  for (const s of p.ivr || []) {
    const li = document.createElement("li");
    li.textContent = s.flow + ": " + (s.result || s.status) + " — " + (s.steps || []).map((x) => x.node + "=" + (x.outcome || "")).join(", ");
    ivr.appendChild(li);
  }
  const ht = $("#pop-history"); ht.innerHTML = "";
  for (const h of p.history || []) { const tr = document.createElement("tr"); cell(tr, h.at); cell(tr, h.outcome); cell(tr, h.disposition || h.result); cell(tr, h.notes); ht.appendChild(tr); }
  $("#script").textContent = p.script || "";
  fillDispositions(p.campaign);
  say("#dispo-msg", "");
}
function campaignOf(name) { return (me && me.campaigns.find((c) => c.name === name)) || null; }
function fillDispositions(name) {
  const c = campaignOf(name);
  const sel = $("#dispo-code"); sel.innerHTML = "";
  for (const [code, d] of Object.entries((c && c.dispositions) || {})) { const o = document.createElement("option"); o.value = code; o.textContent = d.label; sel.appendChild(o); }
  renderForm();
}
function renderForm() {
  const c = pop && campaignOf(pop.campaign);
  const d = c && c.dispositions[$("#dispo-code").value];
  const box = $("#dispo-fields"); box.innerHTML = "";
  $("#callback-row").classList.toggle("hidden", !(d && d.then === "callback"));
  if (!d) return;
  for (const [name, type] of Object.entries(d.fields)) {
    const label = document.createElement("label");
    label.textContent = name + " ";
    if (type === "fields") {
      for (const f of c.fields) {
        const cb = document.createElement("input"); cb.type = "checkbox"; cb.value = f; cb.dataset.group = name;
        label.appendChild(cb); label.appendChild(document.createTextNode(f + " "));
      }
    } else {
      const input = document.createElement("input");
      input.id = "f-" + name; input.dataset.field = name;
      input.type = type === "date" ? "date" : (type === "decimal" || type === "integer") ? "number" : "text";
      if (type === "decimal") input.step = "0.01";
      label.appendChild(input);
    }
    box.appendChild(label);
  }
}
$("#dispo-code").addEventListener("change", renderForm);
$("#dispo-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!pop) return;
  const fields = {};
  document.querySelectorAll("#dispo-fields input[data-field]").forEach((i) => { if (i.value !== "") fields[i.dataset.field] = i.value; });
  document.querySelectorAll("#dispo-fields input[data-group]").forEach((i) => {
    fields[i.dataset.group] = fields[i.dataset.group] || [];
    if (i.checked) fields[i.dataset.group].push(i.value);
  });
  const body = { attempt_id: pop.attempt_id, code: $("#dispo-code").value, fields, notes: $("#notes").value };
  if ($("#callback-at").value) body.callback_at = $("#callback-at").value;
  const r = await api("POST", "/api/desk/disposition", body);
  if (r.ok) { $("#notes").value = ""; }
  say("#dispo-msg", r.ok ? t("saved") : (r.data && r.data.error) || String(r.status), r.ok);
});

async function act(path, body) {
  const r = await api("POST", path, body);
  say("#desk-msg", r.ok ? "" : (r.data && r.data.error) || String(r.status), r.ok);
  return r;
}
$("#queues-in").addEventListener("click", () => act("/api/desk/queues", { action: "login" }));
$("#queues-out").addEventListener("click", () => act("/api/desk/queues", { action: "logout" }));
$("#ready-btn").addEventListener("click", () => act("/api/desk/state", { state: "ready" }));
$("#pause-btn").addEventListener("click", () => act("/api/desk/state", { state: "pause", reason: $("#pause-reason").value }));
// --- preview: the contact offered, then dial or skip with a reason ----------------------------
let offered = null;
function cells(table, rows) {
  table.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    for (const v of r) { const td = document.createElement("td"); td.textContent = v == null ? "" : String(v); tr.appendChild(td); }
    return tr;
  }));
}
function showOffer(o) {
  offered = o;
  $("#offer").classList.toggle("hidden", !o);
  $("#next-out").textContent = o ? "" : t("none");
  if (!o) return;
  $("#offer-name").textContent = o.customer.name || "";
  $("#offer-phone").textContent = o.customer.phone || "";
  $("#offer-id").textContent = String(o.contact_id);
  $("#offer").dataset.contact = String(o.contact_id);
  cells($("#offer-fields"), Object.entries(o.fields || {}));
  cells($("#offer-history"), (o.history || []).map((h) => [h.at, h.skipped ? t("skipped") + ": " + h.skipped : (h.outcome || ""), h.disposition || ""]));
  const camp = (me.campaigns || []).find((c) => c.name === o.campaign);
  $("#skip-reason").replaceChildren(...Object.entries((camp && camp.skip_reasons) || {}).map(([code, label]) => {
    const opt = document.createElement("option"); opt.value = code; opt.textContent = label; return opt;
  }));
  if (o.script) $("#script").textContent = o.script;
  say("#offer-msg", "", true);
}
$("#next-btn").addEventListener("click", async () => {
  const r = await act("/api/desk/next", { campaign: $("#preview-campaign").value });
  if (r.ok) showOffer(r.data.contact);
});
$("#offer-dial").addEventListener("click", async () => {
  if (!offered) return;
  const r = await api("POST", "/api/desk/preview/dial", { campaign: offered.campaign, contact_id: offered.contact_id });
  say("#offer-msg", r.ok ? t("dialling") + " " + r.data.phone : (r.data && r.data.error) || String(r.status), r.ok);
  if (r.ok) { offered = null; $("#offer").dataset.dialled = String(r.data.attempt_id); }
});
$("#offer-skip").addEventListener("click", async () => {
  if (!offered) return;
  const r = await api("POST", "/api/desk/preview/skip", { campaign: offered.campaign, contact_id: offered.contact_id, reason: $("#skip-reason").value });
  say("#offer-msg", r.ok ? t("skipped") : (r.data && r.data.error) || String(r.status), r.ok);
  if (r.ok) offered = null;
});

$("#manual-btn").addEventListener("click", async () => {
  const r = await act("/api/desk/manual", { campaign: $("#manual-campaign").value, number: $("#manual-number").value });
  $("#manual-out").textContent = r.ok ? r.data.phone : "";
});

applyLang();
start();
