// The users page (admins): list, add, change role / phone / campaigns, disable, enable, reset a
// password. Everything goes through /api/users* (the same rules as `dialer users`); the
// session cookie is SameSite=Strict and the console refuses a foreign Origin. No framework.
"use strict";
const $ = (s) => document.querySelector(s);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else if (k === "value") e.value = v;
    else e.setAttribute(k, v);
  }
  e.append(...kids);
  return e;
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) showLogin();
  return { ok: r.ok, status: r.status, data };
}
function say(sel, text, ok) { const m = $(sel); m.textContent = text || ""; m.className = "msg " + (ok ? "ok" : "err"); }
const why = (r) => (r.data && r.data.error) || String(r.status);
const list = (s) => s.split(",").map((x) => x.trim()).filter((x) => x);

function showLogin(msg) {
  $("#admin").classList.add("hidden");
  $("#login").classList.remove("hidden");
  $("#login-msg").textContent = msg || "";
}
$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/api/login", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("#username").value.trim(), password: $("#password").value }) });
  $("#password").value = "";
  if (!r.ok) { $("#login-msg").textContent = "Wrong user name or password."; return; }
  start();
});
$("#logout-btn").addEventListener("click", async () => {
  await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
  showLogin();
});

function row(u) {
  const role = el("select", { class: "role" }, ...["agent", "supervisor", "admin"].map((r) => el("option", { value: r, text: r })));
  role.value = u.role;
  const iface = el("input", { class: "interface", type: "text", maxlength: "128", value: u.interface || "" });
  const camps = el("input", { class: "campaigns", type: "text", value: u.campaigns.join(", ") });
  const display = el("input", { class: "display", type: "text", maxlength: "100", value: u.display_name || "" });
  const lang = el("select", { class: "language" }, el("option", { value: "zh", text: "zh" }), el("option", { value: "en", text: "en" }));
  lang.value = u.language;
  const save = el("button", { type: "button", class: "save", text: "Save" });
  save.addEventListener("click", async () => {
    const r = await api("PATCH", "/api/users/" + encodeURIComponent(u.username), {
      role: role.value, interface: iface.value.trim() || null, campaigns: list(camps.value),
      display_name: display.value.trim() || null, language: lang.value });
    say("#users-msg", r.ok ? u.username + ": saved" : u.username + ": " + why(r), r.ok);
    if (r.ok) load();
  });
  const toggle = el("button", { type: "button", class: u.disabled ? "enable" : "disable", text: u.disabled ? "Enable" : "Disable" });
  toggle.addEventListener("click", async () => {
    const r = await api("POST", "/api/users/" + encodeURIComponent(u.username) + (u.disabled ? "/enable" : "/disable"), {});
    say("#users-msg", r.ok ? u.username + (u.disabled ? ": enabled" : ": disabled") : why(r), r.ok);
    load();
  });
  const pw = el("input", { class: "pw", type: "password", autocomplete: "new-password" });
  const reset = el("button", { type: "button", class: "reset", text: "Set" });
  reset.addEventListener("click", async () => {
    const r = await api("POST", "/api/users/" + encodeURIComponent(u.username) + "/password", { password: pw.value });
    pw.value = "";
    say("#users-msg", r.ok ? u.username + ": password set" : u.username + ": " + why(r), r.ok);
  });
  const state = u.disabled ? "disabled" : (u.locked_until ? "locked until " + u.locked_until : "active");
  return el("tr", { "data-user": u.username },
    el("td", {}, el("strong", { text: u.username })), el("td", {}, display), el("td", {}, role),
    el("td", {}, iface), el("td", {}, camps), el("td", {}, lang),
    el("td", { class: "state " + (u.disabled ? "paused" : "idle"), text: state }),
    el("td", {}, save, " ", toggle), el("td", {}, pw, " ", reset));
}

async function load() {
  const r = await api("GET", "/api/users");
  if (!r.ok) { if (r.status === 403) showLogin("This page is for admins."); return; }
  $("#users tbody").replaceChildren(...r.data.map(row));
}

$("#add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await api("POST", "/api/users", {
    username: $("#new-username").value.trim(), role: $("#new-role").value, password: $("#new-password").value,
    interface: $("#new-interface").value.trim() || null, campaigns: list($("#new-campaigns").value),
    display_name: $("#new-display").value.trim() || null, language: $("#new-language").value });
  $("#new-password").value = "";
  say("#add-msg", r.ok ? "added " + r.data.username : why(r), r.ok);
  if (r.ok) { $("#add-form").reset(); load(); }
});

async function start() {
  const r = await api("GET", "/api/session");
  if (!r.ok) { if (r.status !== 401) showLogin(); return; }
  if (r.data.role !== "admin") { showLogin("This page is for admins."); return; }
  $("#who").textContent = r.data.user ? r.data.user.username : "token";
  $("#login").classList.add("hidden");
  $("#admin").classList.remove("hidden");
  load();
}
start();
