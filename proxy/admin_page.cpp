#include "proxy/admin_page.hpp"

namespace egressd::proxy {

namespace {

// The page. Placeholders: @NONCE@, @PAGE_TOKEN@, @TOKEN_REQUIRED@. Rows are keyed by
// question id and updated in place, so a choice made in a row's menus survives the
// next poll. Everything the daemon returns is inserted as text (textContent), never
// as HTML: host names come from clients.
constexpr std::string_view page_template = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="egressd-page-token" content="@PAGE_TOKEN@">
<meta name="egressd-token-required" content="@TOKEN_REQUIRED@">
<link rel="icon" href="data:,">
<title>egressd: destinations waiting for an answer</title>
<style nonce="@NONCE@">
  :root { color-scheme: light dark; --accent: #0b63c5; --deny: #b3261e; --muted: #666; --line: #ccc; }
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem 1.5rem 3rem; }
  h1 { font-size: 1.35rem; margin: .5rem 0 0; }
  h2 { font-size: 1.1rem; margin: 2rem 0 .5rem; }
  p.sub { color: var(--muted); margin: .2rem 0 1rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
  th { font-weight: 600; font-size: .85rem; color: var(--muted); }
  td.host { font-family: ui-monospace, monospace; font-weight: 600; }
  .empty { color: var(--muted); font-style: italic; }
  button { font: inherit; padding: .25rem .8rem; border-radius: .3rem; border: 1px solid var(--line); cursor: pointer; }
  button.allow { background: var(--accent); color: #fff; border-color: var(--accent); }
  button.deny { background: var(--deny); color: #fff; border-color: var(--deny); }
  button:focus-visible, select:focus-visible { outline: 3px solid #f5b400; outline-offset: 1px; }
  select { font: inherit; padding: .15rem; }
  label { font-size: .85rem; color: var(--muted); margin-right: .3rem; }
  .choices { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; }
  #status { min-height: 1.5rem; margin: .5rem 0; }
  #status.error { color: var(--deny); }
  #token-form { border: 1px solid var(--line); padding: 1rem; border-radius: .4rem; margin: 1rem 0; }
  #token-form[hidden], table[hidden], p[hidden] { display: none; }
  .decision-allow { color: var(--accent); font-weight: 600; }
  .decision-deny { color: var(--deny); font-weight: 600; }
</style>
</head>
<body>
<header>
  <h1>egressd: destinations waiting for an answer</h1>
  <p class="sub">Requests to destinations no rule names wait here until you allow or deny them. This page updates every second.</p>
</header>
<form id="token-form" hidden>
  <label for="token">Admin token (admin.token_file)</label>
  <input id="token" type="password" autocomplete="off" required>
  <button type="submit">Use token</button>
</form>
<div id="status" role="status" aria-live="polite"></div>
<main>
<section aria-labelledby="pending-title">
  <h2 id="pending-title">Waiting for an answer</h2>
  <table id="pending">
    <thead><tr><th scope="col">Destination</th><th scope="col">Protocol</th><th scope="col">Client</th>
      <th scope="col">Requests waiting</th><th scope="col">Time left</th><th scope="col">Answer</th></tr></thead>
    <tbody></tbody>
  </table>
  <p class="empty" id="pending-empty">Nothing is waiting.</p>
</section>
<section aria-labelledby="denials-title">
  <h2 id="denials-title">Recent denials</h2>
  <table id="denials">
    <thead><tr><th scope="col">Destination</th><th scope="col">Reason</th><th scope="col">When</th></tr></thead>
    <tbody></tbody>
  </table>
  <p class="empty" id="denials-empty">No recent denials.</p>
</section>
<section aria-labelledby="decisions-title">
  <h2 id="decisions-title">Remembered answers</h2>
  <table id="decisions">
    <thead><tr><th scope="col">Name</th><th scope="col">Covers</th><th scope="col">Answer</th>
      <th scope="col">Until</th><th scope="col">Answered by</th><th scope="col">Reason</th><th scope="col"></th></tr></thead>
    <tbody></tbody>
  </table>
  <p class="empty" id="decisions-empty">Nothing is remembered.</p>
</section>
</main>
<script nonce="@NONCE@">
"use strict";
const pageToken = document.querySelector('meta[name="egressd-page-token"]').content;
const tokenKey = "egressd-admin-token";
let needToken = document.querySelector('meta[name="egressd-token-required"]').content === "yes" &&
                !sessionStorage.getItem(tokenKey);
const $ = (id) => document.getElementById(id);

function headers(json) {
  const h = { "X-Egressd-Page-Token": pageToken };
  const bearer = sessionStorage.getItem(tokenKey);
  if (bearer) h["Authorization"] = "Bearer " + bearer;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

class Unauthorized extends Error {}

async function call(method, path, body) {
  const r = await fetch(path, { method, headers: headers(body !== undefined), cache: "no-store",
                                credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) throw new Unauthorized();
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || data.error || ("HTTP " + r.status));
  return data;
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function hostPort(host, port) { return (host.includes(":") ? "[" + host + "]" : host) + ":" + port; }

function when(iso) {
  if (!iso) return "forgotten by hand";
  const d = new Date(iso);
  return d.toLocaleString();
}

function select(id, label, options) {
  const wrap = document.createElement("span");
  const l = document.createElement("label");
  l.htmlFor = id;
  l.textContent = label;
  const s = document.createElement("select");
  s.id = id;
  for (const [value, text] of options) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    s.appendChild(o);
  }
  wrap.append(l, s);
  return [wrap, s];
}

async function answer(q, decision, row) {
  const remember = row.querySelector("select.remember").value;
  const scope = row.querySelector("select.scope").value;
  const body = { id: q.id, decision, scope, answered_by: "page" };
  if (remember === "hour") { body.remember = "ttl"; body.ttl_seconds = 3600; }
  else body.remember = remember;
  for (const b of row.querySelectorAll("button")) b.disabled = true;
  try {
    const r = await call("POST", "/v1/decisions", body);
    say((decision === "allow" ? "Allowed " : "Denied ") + hostPort(q.host, q.port) + ": " +
        r.requests_released + " request(s) released" + (r.remembered ? ", remembered." : "."));
  } catch (e) {
    say("Could not answer " + hostPort(q.host, q.port) + ": " + e.message, true);
    for (const b of row.querySelectorAll("button")) b.disabled = false;
  }
  refresh();
}

function pendingRow(q) {
  const row = document.createElement("tr");
  row.dataset.id = q.id;
  row.dataset.host = q.host;
  cell(row, hostPort(q.host, q.port), "host");
  cell(row, q.protocol);
  cell(row, q.client);
  cell(row, "", "waiting");
  cell(row, "", "left");
  const td = cell(row, "");
  const box = document.createElement("div");
  box.className = "choices";
  const [rw, rs] = select("remember-" + q.id, "Remember",
                          [["once", "once"], ["hour", "for an hour"], ["always", "always"]]);
  rs.className = "remember";
  const scopes = [["host", "this host"], ["host_port", "this host, port " + q.port]];
  if (q.registrable_domain) scopes.push(["domain", "whole domain " + q.registrable_domain]);
  const [sw, ss] = select("scope-" + q.id, "For", scopes);
  ss.className = "scope";
  const allow = document.createElement("button");
  allow.type = "button";
  allow.className = "allow";
  allow.textContent = "Allow";
  allow.setAttribute("aria-label", "Allow " + hostPort(q.host, q.port));
  allow.addEventListener("click", () => answer(q, "allow", row));
  const deny = document.createElement("button");
  deny.type = "button";
  deny.className = "deny";
  deny.textContent = "Deny";
  deny.setAttribute("aria-label", "Deny " + hostPort(q.host, q.port));
  deny.addEventListener("click", () => answer(q, "deny", row));
  box.append(rw, sw, allow, deny);
  td.appendChild(box);
  return row;
}

function showPending(list) {
  const body = $("pending").tBodies[0];
  const seen = new Set();
  for (const q of list) {
    seen.add(String(q.id));
    let row = body.querySelector('tr[data-id="' + q.id + '"]');
    if (!row) { row = pendingRow(q); body.appendChild(row); }
    row.querySelector(".waiting").textContent = String(q.waiting);
    row.querySelector(".left").textContent = q.seconds_left + " s";
  }
  for (const row of [...body.rows]) if (!seen.has(row.dataset.id)) row.remove();
  $("pending-empty").hidden = list.length > 0;
  $("pending").hidden = list.length === 0;
}

function showDenials(list) {
  const body = $("denials").tBodies[0];
  body.replaceChildren();
  for (const d of list.slice(0, 20)) {
    const row = document.createElement("tr");
    cell(row, hostPort(d.host, d.port), "host");
    cell(row, d.reason);
    cell(row, when(d.at));
    body.appendChild(row);
  }
  $("denials-empty").hidden = list.length > 0;
  $("denials").hidden = list.length === 0;
}

function covers(e) {
  if (e.scope === "domain") return e.name + " and its subdomains";
  if (e.scope === "host_port") return "port " + e.port + " only";
  return "any port";
}

function showDecisions(list) {
  const body = $("decisions").tBodies[0];
  const key = JSON.stringify(list);
  if (body.dataset.key === key) return;  // unchanged: keep focus on a Forget button
  body.dataset.key = key;
  body.replaceChildren();
  for (const e of list) {
    const row = document.createElement("tr");
    row.dataset.name = e.name;
    cell(row, e.name, "host");
    cell(row, covers(e));
    cell(row, e.decision, "decision-" + e.decision);
    cell(row, e.lifetime === "always" ? "always" : when(e.expires));
    cell(row, e.answered_by);
    cell(row, e.reason);
    const td = cell(row, "");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Forget";
    b.setAttribute("aria-label", "Forget " + e.name);
    b.addEventListener("click", async () => {
      try {
        const r = await call("DELETE", "/v1/decisions/" + encodeURIComponent(e.name));
        say("Forgot " + r.forgotten + " answer(s) for " + e.name + ".");
      } catch (err) { say("Could not forget " + e.name + ": " + err.message, true); }
      refresh();
    });
    td.appendChild(b);
    body.appendChild(row);
  }
  $("decisions-empty").hidden = list.length > 0;
  $("decisions").hidden = list.length === 0;
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  if (needToken) { $("token-form").hidden = false; return; }
  try {
    const [pending, denials, decisions] = await Promise.all(
        [call("GET", "/v1/pending"), call("GET", "/v1/denials"), call("GET", "/v1/decisions")]);
    showPending(pending);
    showDenials(denials);
    showDecisions(decisions);
    if ($("status").className === "error" && $("status").dataset.poll) { say(""); delete $("status").dataset.poll; }
  } catch (e) {
    if (e instanceof Unauthorized) {
      sessionStorage.removeItem(tokenKey);
      needToken = true;
      $("token-form").hidden = false;
      say("This endpoint needs the admin token.", true);
      return;
    }
    say("Cannot reach egressd: " + e.message, true);
    $("status").dataset.poll = "1";
  }
  timer = setTimeout(refresh, 1000);
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(tokenKey, $("token").value.trim());
  $("token").value = "";
  $("token-form").hidden = true;
  needToken = false;
  say("");
  refresh();
});

refresh();
</script>
</body>
</html>
)html";

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

}  // namespace

std::string admin_page_html(std::string_view nonce, std::string_view page_token, bool token_required) {
  std::string out(page_template);
  replace_all(out, "@NONCE@", nonce);
  replace_all(out, "@PAGE_TOKEN@", page_token);
  replace_all(out, "@TOKEN_REQUIRED@", token_required ? "yes" : "no");
  return out;
}

}  // namespace egressd::proxy
