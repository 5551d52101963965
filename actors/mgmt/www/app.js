// Tern dashboard: polls the management API and renders node, cluster, metrics, clients and
// subscriptions. Credentials come from the sign-in form or the URL fragment
// (#user=NAME&password=PASS or #key=APIKEY) and stay in this tab's sessionStorage.
"use strict";

const REFRESH_MS = 3000;
let auth = sessionStorage.getItem("tern-auth") || "";
let last = null;  // previous metrics sample, for rates
let timer = null;

function $(id) { return document.getElementById(id); }

function fromFragment() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.get("key")) {
    return "Bearer " + p.get("key");
  }
  if (p.get("user")) {
    return "Basic " + btoa(p.get("user") + ":" + (p.get("password") || ""));
  }
  return "";
}

async function api(path) {
  const res = await fetch("/api/v1/" + path, { headers: { Authorization: auth } });
  if (res.status === 401) {
    throw Object.assign(new Error("unauthorized"), { unauthorized: true });
  }
  const body = await res.json();
  if (!res.ok) {
    throw new Error(body.error || ("HTTP " + res.status));
  }
  return body;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  return td;
}

function fillTable(id, rows, columns) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of columns) {
      const td = cell(typeof c === "function" ? c(r) : r[c]);
      if (typeof c === "string") {
        td.className = c;
      }
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function fillGrid(id, pairs) {
  const dl = $(id);
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = String(v);
    div.append(dt, dd);
    dl.appendChild(div);
  }
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

async function refresh() {
  try {
    const [status, nodes, metrics, clients, subs] = await Promise.all([
      api("status"), api("nodes"), api("metrics"), api("clients?limit=200"),
      api("subscriptions?limit=200"),
    ]);
    $("error").textContent = "";
    $("node-name").textContent = status.node;
    fillGrid("overview", [
      ["version", status.version], ["uptime", status.uptime], ["datetime", status.datetime],
      ["clustered", status.clustered ? "yes" : "no"], ["connections", status.stats["clients/count"]],
      ["sessions", status.stats["sessions/count"]],
    ]);
    fillTable("nodes", nodes, ["name", "status", "version", "uptime", "connections",
                               (n) => bytes(n.memory_bytes)]);
    const m = metrics.metrics;
    const now = Date.now();
    if (last) {
      const dt = (now - last.t) / 1000;
      const rate = (k) => ((m[k] - last.m[k]) / dt).toFixed(1);
      fillGrid("rates", [
        ["messages in/s", rate("messages/received")], ["messages out/s", rate("messages/sent")],
        ["bytes in/s", rate("bytes/received")], ["bytes out/s", rate("bytes/sent")],
        ["dropped/s", rate("messages/dropped")],
      ]);
    }
    last = { t: now, m };
    fillGrid("stats", Object.entries(metrics.stats).concat([
      ["messages/received", m["messages/received"]], ["messages/sent", m["messages/sent"]],
      ["messages/dropped", m["messages/dropped"]], ["messages/retained", m["messages/retained"]],
    ]));
    fillTable("clients", clients.items, ["clientid", "username", "ipaddress", "proto_name",
                                         "keepalive", "connected_at"]);
    $("clients-total").textContent = "(" + clients.total + ")";
    fillTable("subscriptions", subs.items, ["clientid", "topic", "qos"]);
    $("subscriptions-total").textContent = "(" + subs.total + ")";
    $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e.unauthorized) {
      showLogin("Sign-in failed or expired.");
      return;
    }
    $("error").textContent = "Cannot reach the node: " + e.message;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function showLogin(message) {
  clearTimeout(timer);
  sessionStorage.removeItem("tern-auth");
  auth = "";
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  refresh();
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("login-key").value;
  auth = key ? "Bearer " + key
             : "Basic " + btoa($("login-user").value + ":" + $("login-password").value);
  sessionStorage.setItem("tern-auth", auth);
  start();
});
$("logout").addEventListener("click", () => showLogin(""));

const fragment = fromFragment();
if (fragment) {
  auth = fragment;
  sessionStorage.setItem("tern-auth", auth);
  history.replaceState(null, "", location.pathname);  // keep secrets out of the address bar
}
if (auth) {
  start();
} else {
  showLogin("");
}
