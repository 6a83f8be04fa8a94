// natter's admin console: one page, no build step. It speaks only the admin
// API (/admin/api, docs/ADMIN.md): the session is an HttpOnly cookie, and
// every change carries the session's CSRF token. All text is put in the page
// with textContent, never as HTML.

const state = { me: null, csrf: "", streams: [] };

// ---- the API

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-csrf-token"] = state.csrf;
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    if (r.status === 401 && path !== "/admin/api/login") showLogin();
    throw new ApiError(r.status, data);
  }
  return data;
}

// ---- small DOM helpers (text only)

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k === "class") e.className = v;
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

let ids = 0;
function field(label, input) {
  const id = input.id || `f${++ids}`;
  input.id = id;
  return el("label", { for: id }, label, input);
}

function when(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toLocaleString();
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

function failed(e) {
  toast(`Failed: ${e.message}`);
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
}

function view(title, ...content) {
  const v = document.getElementById("view");
  v.replaceChildren(el("h2", {}, title), ...content);
  return v;
}

function stopStreams() {
  for (const s of state.streams) s.close();
  state.streams = [];
}

// ---- session

function showLogin() {
  stopStreams();
  state.me = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("login-view").hidden = false;
  document.getElementById("login-name").focus();
}

function loggedIn(me) {
  state.me = me;
  state.csrf = me.csrf;
  document.getElementById("login-view").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = `${me.name} (${me.role})`;
  route();
}

const canChange = () => state.me && state.me.role === "admin";

// ---- dashboard: live from the server's own metrics, over SSE

function spark(values) {
  const max = Math.max(1, ...values);
  const n = Math.max(values.length - 1, 1);
  const pts = values.map((v, i) => `${(i / n) * 100},${40 - (v / max) * 38}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts);
  svg.append(line);
  return svg;
}

const TILES = [
  ["users_online", "Users online", (v) => v],
  ["connections", "Connections", (v) => v],
  ["messages_in_per_sec", "Messages in /s", (v) => v.toFixed(1)],
  ["pushes_out_per_sec", "Pushes out /s", (v) => v.toFixed(1)],
  ["delivery_p99_ms", "Delivery p99 (ms)", (v) => v.toFixed(1)],
  ["commit_p99_ms", "Store commit p99 (ms)", (v) => v.toFixed(2)],
  ["batch_size_avg", "Store batch size", (v) => v.toFixed(1)],
  ["errors_per_sec", "Errors /s", (v) => v.toFixed(2)],
  ["logins_per_sec", "Logins /s", (v) => v.toFixed(1)],
  ["http_connections", "HTTP connections", (v) => v],
  ["rss_mib", "Memory (MiB)", (v) => v.toFixed(0)],
  ["overload_stage", "Overload stage", (v) => v],
];

function dashboard() {
  const history = {};
  const tiles = {};
  const grid = el("div", { class: "tiles", id: "tiles" });
  for (const [key, label] of TILES) {
    const value = el("div", { class: "value", "data-key": key }, "…");
    const chart = el("div", { class: "chart" });
    tiles[key] = { value, chart };
    history[key] = [];
    grid.append(el("div", { class: "tile" }, el("div", { class: "label" }, label), value, chart));
  }
  const nodes = el("div", { id: "nodes" });
  const status = el("p", { class: "muted", id: "dash-status" }, "connecting…");
  view("Dashboard", status, grid, nodes);
  const es = new EventSource("/admin/api/dashboard");
  state.streams.push(es);
  es.addEventListener("stats", (ev) => {
    const s = JSON.parse(ev.data);
    status.textContent = `live · ${new Date(s.at_ms).toLocaleTimeString()}`;
    for (const [key, , fmt] of TILES) {
      const v = s[key];
      if (v === undefined || v === null) continue;
      tiles[key].value.textContent = fmt(v);
      const h = history[key];
      h.push(Number(v));
      if (h.length > 60) h.shift();
      tiles[key].chart.replaceChildren(spark(h));
    }
    if (Array.isArray(s.nodes) && s.nodes.length) {
      nodes.replaceChildren(el("h3", {}, "Nodes"), table(
        ["Node", "State", "Connections", "Messages /s", "CPU"],
        s.nodes.map((n) => el("tr", {},
          el("td", {}, n.node_id), el("td", {}, n.state),
          el("td", { class: "num" }, n.connections),
          el("td", { class: "num" }, Number(n.messages_per_sec || 0).toFixed(0)),
          el("td", { class: "num" }, `${Math.round((n.cpu || 0) * 100)}%`)))));
    }
  });
  es.onerror = () => { status.textContent = "reconnecting…"; };
}

// ---- users

async function users(params) {
  const q = params.get("q") || "";
  const after = params.get("after") || "0";
  const search = el("input", { type: "search", name: "q", value: q });
  const form = el("form", { class: "inline", role: "search", on: { submit: (e) => {
    e.preventDefault();
    location.hash = `#/users?q=${encodeURIComponent(search.value)}`;
  } } }, field("Name or email contains", search), el("button", { type: "submit" }, "Search"));
  const v = view("Users", form);
  try {
    const page = await api("GET", `/admin/api/users?q=${encodeURIComponent(q)}&after=${after}&limit=50`);
    const rows = page.users.map((u) => {
      const state = u.disabled ? (u.banned_until_ms ? `banned until ${when(u.banned_until_ms)}` : "disabled") : "active";
      return el("tr", {},
        el("td", { class: "num" }, u.id),
        el("td", {}, el("a", { href: `#/users/${u.id}` }, u.username)),
        el("td", {}, u.email || ""),
        el("td", { class: u.disabled ? "bad" : "ok" }, state),
        el("td", {}, when(u.created_at_ms)));
    });
    v.append(table(["Id", "Username", "Email", "State", "Created"], rows));
    const pager = el("div", { class: "pager" });
    if (after !== "0") pager.append(el("a", { href: `#/users?q=${encodeURIComponent(q)}` }, "First page"));
    if (page.next_after) pager.append(el("a", { href: `#/users?q=${encodeURIComponent(q)}&after=${page.next_after}` }, "Next page"));
    v.append(pager);
  } catch (e) { failed(e); }
}

async function user(id) {
  const v = view(`User ${id}`);
  let u;
  try { u = await api("GET", `/admin/api/users/${id}`); } catch (e) { failed(e); return; }
  v.querySelector("h2").textContent = `User ${u.username}`;
  const stateText = u.disabled ? (u.banned_until_ms ? `banned until ${when(u.banned_until_ms)}` : "disabled") : "active";
  v.append(el("dl", {},
    el("dt", {}, "Id"), el("dd", {}, u.id),
    el("dt", {}, "State"), el("dd", { id: "user-state", class: u.disabled ? "bad" : "ok" }, stateText),
    el("dt", {}, "Reason"), el("dd", {}, u.reason || "—"),
    el("dt", {}, "Email"), el("dd", {}, u.email || "—"),
    el("dt", {}, "Online"), el("dd", { id: "user-online" }, u.online === null || u.online === undefined ? "unknown" : (u.online ? "yes" : "no")),
    el("dt", {}, "Created"), el("dd", {}, when(u.created_at_ms)),
    el("dt", {}, "Last login"), el("dd", {}, when(u.last_login_ms)),
    el("dt", {}, "Friends"), el("dd", {}, u.friends)));
  const act = (label, cls, run) => el("button", { type: "button", class: cls, disabled: !canChange(), on: { click: async () => {
    try { const msg = await run(); toast(msg); user(id); } catch (e) { failed(e); }
  } } }, label);
  const reason = el("input", { name: "reason", maxlength: "500" });
  const banFor = el("select", { name: "ban-for" },
    ...[["1 hour", 3600], ["1 day", 86400], ["7 days", 604800], ["30 days", 2592000]].map(([l, s]) => el("option", { value: s }, l)));
  v.append(el("h3", {}, "Actions"),
    el("form", { class: "inline", on: { submit: (e) => e.preventDefault() } },
      field("Reason", reason), field("Ban for", banFor)),
    el("div", { class: "actions" },
      u.disabled
        ? act("Enable", "", async () => { await api("POST", `/admin/api/users/${id}/enable`, {}); return "Enabled"; })
        : act("Disable", "danger", async () => { await api("POST", `/admin/api/users/${id}/disable`, { reason: reason.value }); return "Disabled: its sessions were ended"; }),
      act("Ban", "danger", async () => {
        const r = await api("POST", `/admin/api/users/${id}/ban`, { seconds: Number(banFor.value), reason: reason.value });
        return `Banned until ${when(r.banned_until_ms)}`;
      }),
      act("Force logout", "secondary", async () => {
        const r = await api("POST", `/admin/api/users/${id}/logout`, {});
        return `${r.sessions} sessions ended`;
      }),
      act("Reset password", "secondary", async () => {
        const r = await api("POST", `/admin/api/users/${id}/password`, {});
        return `New password: ${r.password}`;
      }),
      act("Delete account", "danger", async () => {
        if (!confirm(`Delete ${u.username} and its data? There is no undo.`)) return "Not deleted";
        const r = await api("DELETE", `/admin/api/users/${id}`);
        return `Deleted: ${r.sessions} sessions ended, ${r.uploads} uploads deleted`;
      })));
  v.append(el("h3", {}, "Sessions"), table(["Id", "Device", "Since", "Expires"],
    u.sessions.map((s) => el("tr", {}, el("td", { class: "num" }, s.id), el("td", {}, s.device_id),
      el("td", {}, when(s.created_at_ms)), el("td", {}, when(s.expires_at_ms))))));
  v.append(el("h3", {}, "Groups"), table(["Id", "Name", "Role"],
    u.groups.map((g) => el("tr", {}, el("td", { class: "num" }, g.id),
      el("td", {}, el("a", { href: `#/groups/${g.id}` }, g.name)), el("td", {}, g.role)))));
}

// ---- groups

async function groups(params) {
  const q = params.get("q") || "";
  const after = params.get("after") || "0";
  const search = el("input", { type: "search", name: "q", value: q });
  const v = view("Groups and rooms", el("form", { class: "inline", role: "search", on: { submit: (e) => {
    e.preventDefault();
    location.hash = `#/groups?q=${encodeURIComponent(search.value)}`;
  } } }, field("Name contains", search), el("button", { type: "submit" }, "Search")));
  try {
    const page = await api("GET", `/admin/api/groups?q=${encodeURIComponent(q)}&after=${after}&limit=50`);
    v.append(table(["Id", "Name", "Kind", "Members", "State"], (page.groups || []).map((g) => el("tr", {},
      el("td", { class: "num" }, g.id),
      el("td", {}, el("a", { href: `#/groups/${g.id}` }, g.name)),
      el("td", {}, g.kind || ""),
      el("td", { class: "num" }, g.member_count ?? ""),
      el("td", {}, g.dismissed ? "dismissed" : "active")))));
    if (page.next_after) v.append(el("div", { class: "pager" }, el("a", { href: `#/groups?q=${encodeURIComponent(q)}&after=${page.next_after}` }, "Next page")));
  } catch (e) { failed(e); }
}

async function group(id) {
  const v = view(`Group ${id}`);
  let g;
  try { g = await api("GET", `/admin/api/groups/${id}`); } catch (e) { failed(e); return; }
  v.querySelector("h2").textContent = `${g.kind === "room" ? "Room" : "Group"} ${g.name}`;
  const facts = el("dl", {});
  for (const k of ["id", "kind", "owner_id", "member_count", "dismissed", "notice", "created_at_ms"]) {
    if (g[k] === undefined) continue;
    facts.append(el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, k.endsWith("_ms") ? when(g[k]) : String(g[k])));
  }
  v.append(facts);
  const reason = el("input", { name: "reason", maxlength: "500" });
  v.append(el("form", { class: "inline", on: { submit: async (e) => {
    e.preventDefault();
    try { await api("POST", `/admin/api/groups/${id}/dismiss`, { reason: reason.value }); toast("Dismissed"); group(id); } catch (err) { failed(err); }
  } } }, field("Reason", reason), el("button", { type: "submit", class: "danger", disabled: !canChange() || g.dismissed }, "Dismiss")));
  v.append(el("h3", {}, "Members"), table(["User", "Role", ""], (g.members || []).map((m) => el("tr", {},
    el("td", {}, el("a", { href: `#/users/${m.user_id}` }, m.username || m.user_id)),
    el("td", {}, m.role),
    el("td", {}, el("button", { type: "button", class: "secondary", disabled: !canChange(), on: { click: async () => {
      try { await api("POST", `/admin/api/groups/${id}/members/${m.user_id}/remove`, {}); toast("Removed"); group(id); } catch (e) { failed(e); }
    } } }, `Remove ${m.username || m.user_id}`))))));
}

// ---- logs: the server's in-memory ring, live over SSE

const LEVELS = ["error", "warn", "info", "debug", "trace"];

function logLine(l) {
  const t = new Date(l.ts_ms).toISOString().slice(11, 23);
  const fields = l.fields ? ` ${l.fields}` : "";
  return el("div", { class: `l-${l.level}` }, `${t} ${l.level.toUpperCase().padEnd(5)} ${l.target}: ${l.message}${fields}`);
}

async function logs(params) {
  const level = el("select", { name: "level" }, LEVELS.map((x) => el("option", { value: x, selected: x === (params.get("level") || "info") }, x)));
  const text = el("input", { type: "search", name: "q", value: params.get("q") || "" });
  const box = el("div", { class: "logs", id: "log-lines", tabindex: "0", role: "log", "aria-label": "Log lines" });
  const live = el("input", { type: "checkbox", name: "live", checked: true });
  const exportLink = el("a", { id: "log-export", download: "natter.log" }, "Export");
  const serverLevel = el("input", { name: "server-level" });
  const traceUser = el("input", { name: "trace-user", inputmode: "numeric" });
  const traceMin = el("input", { name: "trace-minutes", type: "number", min: "1", max: "10", value: "5" });
  const traces = el("div", { id: "traces" });
  const filter = () => `level=${level.value}&q=${encodeURIComponent(text.value)}`;
  const v = view("Logs",
    el("form", { class: "inline", on: { submit: async (e) => {
      e.preventDefault();
      try { const r = await api("PUT", "/admin/api/logs/level", { level: serverLevel.value }); serverLevel.value = r.level; toast(`Log level is now ${r.level}`); } catch (err) { failed(err); }
    } } }, field("Server log level", serverLevel), el("button", { type: "submit", disabled: !canChange() }, "Set level")),
    el("form", { class: "inline", role: "search", on: { submit: (e) => { e.preventDefault(); load(); } } },
      field("Level at least", level), field("Text", text), field("Live", live),
      el("button", { type: "submit" }, "Filter"), exportLink),
    box,
    el("h3", {}, "Trace one user"),
    el("form", { class: "inline", on: { submit: async (e) => {
      e.preventDefault();
      try {
        await api("POST", "/admin/api/traces", { user_id: Number(traceUser.value), minutes: Number(traceMin.value) });
        toast("Tracing"); showTraces();
      } catch (err) { failed(err); }
    } } }, field("User id", traceUser), field("Minutes", traceMin), el("button", { type: "submit", disabled: !canChange() }, "Start trace")),
    traces);
  try { serverLevel.value = (await api("GET", "/admin/api/logs/level")).level; } catch (e) { failed(e); }
  async function showTraces() {
    try {
      const t = await api("GET", "/admin/api/traces");
      traces.replaceChildren(table(["User", "Until", "Lines", ""], (t.traces || []).map((x) => el("tr", {},
        el("td", {}, x.user_id), el("td", {}, when(x.until_ms)), el("td", { class: "num" }, x.lines),
        el("td", {}, el("a", { href: `/admin/api/traces/${x.user_id}`, download: `trace-${x.user_id}.ndjson` }, "Download"))))));
    } catch (e) { failed(e); }
  }
  async function load() {
    stopStreams();
    exportLink.href = `/admin/api/logs/export?${filter()}`;
    try {
      const r = await api("GET", `/admin/api/logs?${filter()}&limit=500`);
      box.replaceChildren(...r.lines.map(logLine));
      box.scrollTop = box.scrollHeight;
      if (!live.checked) return;
      const last = r.lines.length ? r.lines[r.lines.length - 1].seq : 0;
      const es = new EventSource(`/admin/api/logs/stream?${filter()}&after=${last}`);
      state.streams.push(es);
      es.addEventListener("line", (ev) => {
        const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
        box.append(logLine(JSON.parse(ev.data)));
        while (box.childElementCount > 2000) box.firstElementChild.remove();
        if (atEnd) box.scrollTop = box.scrollHeight;
      });
    } catch (e) { failed(e); }
  }
  load();
  showTraces();
  return v;
}

// ---- configuration

async function config() {
  const v = view("Configuration", el("p", { class: "muted" }, "The configuration in effect, each key with where it came from. Secrets are not shown."));
  try {
    const c = await api("GET", "/admin/api/config");
    v.append(table(["Key", "Value", "Source", "Change"], c.keys.map((k) => el("tr", {},
      el("td", {}, el("code", {}, k.key)),
      el("td", {}, el("code", {}, typeof k.value === "string" ? k.value : JSON.stringify(k.value))),
      el("td", {}, k.source),
      el("td", {}, k.live ? "live" : (k.note || "restart"))))));
  } catch (e) { failed(e); }
}

// ---- audit log

async function audit(params) {
  const before = params.get("before") || "0";
  const v = view("Audit log");
  try {
    const r = await api("GET", `/admin/api/audit?before=${before}&limit=100`);
    v.append(table(["When", "Who", "From", "Action", "Target", "Result", "Detail"], r.lines.map((l) => el("tr", {},
      el("td", {}, when(l.at_ms)), el("td", {}, l.actor), el("td", {}, l.address),
      el("td", {}, l.action), el("td", {}, l.target),
      el("td", { class: l.ok ? "ok" : "bad" }, l.ok ? "done" : "refused"),
      el("td", {}, l.detail)))));
    if (r.lines.length === 100) {
      v.append(el("div", { class: "pager" }, el("a", { href: `#/audit?before=${r.lines[99].id}` }, "Older")));
    }
  } catch (e) { failed(e); }
}

// ---- routing

function route() {
  if (!state.me) return;
  stopStreams();
  const [path, query] = (location.hash.slice(1) || "/dashboard").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#/${parts[0]}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  switch (parts[0]) {
    case "users": parts[1] ? user(parts[1]) : users(params); break;
    case "groups": parts[1] ? group(parts[1]) : groups(params); break;
    case "logs": logs(params); break;
    case "config": config(); break;
    case "audit": audit(params); break;
    default: dashboard();
  }
  document.getElementById("main").focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);

document.getElementById("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = document.getElementById("login-error");
  err.textContent = "";
  try {
    const r = await api("POST", "/admin/api/login", {
      name: document.getElementById("login-name").value,
      password: document.getElementById("login-password").value,
    });
    document.getElementById("login-password").value = "";
    loggedIn(r);
  } catch (ex) {
    err.textContent = ex.message;
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("POST", "/admin/api/logout", {}); } catch { /* the session is gone either way */ }
  showLogin();
});

(async () => {
  try { loggedIn(await api("GET", "/admin/api/me")); } catch { showLogin(); }
})();
