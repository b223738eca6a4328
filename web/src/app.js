// affluent's dashboard: a small single-page app over the JSON API (/api/docs).
// No build step: plain modern JavaScript, ECharts for charts. The URL carries the filter
// state, so a view can be shared.
"use strict";

const app = document.getElementById("app");
let session = null; // GET /api/session
let live = null; // EventSource
let charts = []; // ECharts instances of the current page
const options = new WeakMap(); // each chart's option, to redraw it in the other theme

// ---------------------------------------------------------------------------------------------
// API

/** Text as HTML text: `<b>` shows as `<b>`, never as markup. */
function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function api(method, path, body, retried) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = session ? session.csrf : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (res.status === 403 && method !== "GET" && !retried) {
    // The CSRF token may be stale (server restarted): take a fresh one and retry once.
    session = await (await fetch("/api/session", { credentials: "same-origin" })).json();
    return api(method, path, body, true);
  }
  if (res.status === 401 && !location.pathname.startsWith("/login")) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("not logged in");
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) {
    const err = new Error(data.error || res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

async function loadSession() {
  session = await (await fetch("/api/session", { credentials: "same-origin" })).json();
  return session;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function locale() {
  return (session && session.locale) || "en-GB";
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const STAMP = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})/;

function fmtDate(text) {
  const m = DATE.exec(text);
  if (!m) return text;
  return new Intl.DateTimeFormat(locale(), { timeZone: "UTC" }).format(
    new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])),
  );
}

function fmtValue(v, kind) {
  if (v === null || v === undefined) return "";
  if (kind === "date" && typeof v === "string") return fmtDate(v);
  if (kind === "timestamp" && typeof v === "string" && STAMP.test(v)) {
    const d = new Date(v.endsWith("Z") || /[+-]\d{2}:?\d{2}$/.test(v) ? v : v + "Z");
    return new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "short", timeZone: "UTC" }).format(d);
  }
  if (typeof v === "number") return new Intl.NumberFormat(locale(), { maximumFractionDigits: 2 }).format(v);
  return String(v);
}

function fmtInstant(text) {
  const d = new Date(text);
  if (isNaN(d)) return text;
  return new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "medium" }).format(d);
}

function dark() {
  return document.documentElement.dataset.theme === "dark";
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("affluent-theme", theme);
}

function params() {
  return new URLSearchParams(location.search);
}

/** The project's colours (`[dashboard.theme]`), over both themes; a dark background takes the
 * dark theme (charts included) and hides the theme switch. */
function applyProjectTheme() {
  const t = (session && session.theme) || {};
  if (!Object.keys(t).length) return;
  const root = document.documentElement.style;
  const set = (name, value) => value && root.setProperty(name, value);
  set("--accent", t.primary);
  set("--bg", t.background);
  set("--card", t.surface || t.background);
  set("--fg", t.text);
  set("--muted", t.muted || (t.text ? `color-mix(in srgb, ${t.text} 70%, transparent)` : null));
  if (t.text) set("--line", `color-mix(in srgb, ${t.text} 25%, transparent)`);
  if (t.background) {
    const hex = t.background.replace("#", "");
    const full = hex.length === 3 ? [...hex].map((c) => c + c).join("") : hex;
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(full.slice(i, i + 2), 16));
    const luminance = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    document.documentElement.dataset.theme = luminance < 0.5 ? "dark" : "light";
    document.getElementById("theme").hidden = true;
  }
}

/** The user's lists (`[dashboard.lists]`): list name → Set of values. */
let myLists = new Map();

async function loadLists() {
  myLists = new Map();
  if (!session || !session.user || !(session.lists || []).length) return;
  const lists = await api("GET", "/api/lists");
  for (const [name, values] of Object.entries(lists)) myLists.set(name, new Set(values));
}

function listLabel(name) {
  const l = (session.lists || []).find((x) => x.name === name);
  return l ? l.label : name;
}

/** A URL a cell may link to: http(s), or a path of the dashboard itself (parsed as the browser
 * would, so `/\t/host`, `//host` or `/\\host` cannot name another origin). */
function safeLink(v) {
  if (typeof v !== "string" || /[\u0000-\u001f\u007f\\]/.test(v)) return null;
  try {
    const u = new URL(v, location.origin);
    if (v.startsWith("/")) return u.origin === location.origin ? u.pathname + u.search + u.hash : null;
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
  } catch {
    return null;
  }
}

function initials(text) {
  return String(text || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join("");
}

/** An image cell: the picture, or the row's initials when it does not load (offline). */
function imageCell(url, alt) {
  const fallback = el("span", { class: "avatar", "aria-label": alt }, initials(alt));
  const src = safeLink(url);
  if (!src || src.startsWith("/")) return fallback;
  const img = el("img", { class: "thumb", src, alt: alt || "", loading: "lazy", referrerpolicy: "no-referrer" });
  img.addEventListener("error", () => img.replaceWith(fallback));
  return img;
}

function linkCell(url, label) {
  const href = safeLink(url);
  if (!href) return url === null || url === undefined ? "" : String(url);
  const inside = href.startsWith("/");
  return el("a", { href, class: "cell-link", target: inside ? null : "_blank", rel: inside ? null : "noopener noreferrer" }, label);
}

/** A cell as its column's format (`formats` of the panel) says. */
function cell(spec, col, v, row, cols) {
  const f = (spec.formats || {})[col.name];
  if (f === "image") return imageCell(v, titleOf(spec, row, cols));
  if (f === "link") return linkCell(v, col.name.replaceAll("_", " "));
  return fmtValue(v, col.kind);
}

/** The title of a row: its first column that is neither an image, a link nor a toggle key
 * shown elsewhere. */
function titleIndex(spec, cols) {
  const formats = spec.formats || {};
  const i = cols.findIndex((c) => !formats[c.name] && !(spec.toggle && spec.toggle.key === c.name));
  return i >= 0 ? i : 0;
}

function titleOf(spec, row, cols) {
  return row[titleIndex(spec, cols)];
}

/** The checkbox of a row in a panel's `toggle` list. */
function toggleBox(spec, row, cols, onChange) {
  const t = spec.toggle;
  if (!t || !session.user) return null;
  const ki = cols.findIndex((c) => c.name === t.key);
  if (ki < 0) return null;
  const value = String(row[ki]);
  const set = myLists.get(t.list) || new Set();
  const box = el("input", { type: "checkbox", class: "toggle", "data-list": t.list, "data-item": value, checked: set.has(value) });
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      if (box.checked) await api("POST", `/api/lists/${encodeURIComponent(t.list)}/items`, { item: value });
      else await api("DELETE", `/api/lists/${encodeURIComponent(t.list)}/items/${encodeURIComponent(value)}`);
      if (!myLists.has(t.list)) myLists.set(t.list, new Set());
      if (box.checked) myLists.get(t.list).add(value);
      else myLists.get(t.list).delete(value);
      // Every checkbox of this value on the page follows.
      for (const other of document.querySelectorAll("input.toggle")) {
        if (other.dataset.list === t.list && other.dataset.item === value) other.checked = box.checked;
      }
      await onChange(t.list);
    } catch (e) {
      box.checked = !box.checked;
      alert(e.message);
    } finally {
      box.disabled = false;
    }
  });
  return el("label", { class: "toggle-label", title: listLabel(t.list) }, box, " ", listLabel(t.list));
}

// ---------------------------------------------------------------------------------------------
// Header

function header() {
  const nav = document.getElementById("nav");
  nav.replaceChildren();
  document.getElementById("brand").textContent = (session && session.title) || "affluent";
  document.title = (session && session.title) || "affluent";
  const logout = document.getElementById("logout");
  const who = document.getElementById("who");
  if (!session || !session.user) {
    logout.hidden = true;
    who.textContent = "";
    for (const p of (session && session.pages) || []) {
      nav.append(el("a", { href: "/pages/" + p.name, class: location.pathname === "/pages/" + p.name ? "active" : "" }, p.title));
    }
    if (location.pathname !== "/login") nav.append(el("a", { href: "/login?next=" + encodeURIComponent(location.pathname) }, "Log in"));
    return;
  }
  for (const p of session.pages) {
    const badge = pageAlerts(p).length ? el("span", { class: "badge", "data-badge": p.name, hidden: true }) : null;
    nav.append(
      el("a", { href: "/pages/" + p.name, class: location.pathname === "/pages/" + p.name ? "active" : "" }, p.title, badge),
    );
  }
  refreshBadges();
  nav.append(el("a", { href: "/favourites", class: location.pathname === "/favourites" ? "active" : "" }, "★ My favourites"));
  nav.append(el("a", { href: "/pipeline", class: location.pathname === "/pipeline" ? "active" : "" }, "Pipeline"));
  if (session.role === "admin") nav.append(el("a", { href: "/admin", class: location.pathname === "/admin" ? "active" : "" }, "Users"));
  nav.append(el("a", { href: "/api/docs" }, "API"));
  who.textContent = session.user + (session.role === "admin" ? " (admin)" : "");
  logout.hidden = false;
}

/** The alerts the alerts panels of a page list. */
function pageAlerts(page) {
  return [...new Set(page.panels.filter((p) => p.kind === "alerts").flatMap((p) => p.alerts))];
}

/** The count of unseen alert firings beside each page that lists them. */
async function refreshBadges() {
  const badges = document.querySelectorAll("#nav .badge");
  if (!badges.length) return;
  let counts;
  try {
    counts = await api("GET", "/api/alerts/unseen");
  } catch (e) {
    return;
  }
  for (const b of badges) {
    const page = session.pages.find((p) => p.name === b.dataset.badge);
    const n = pageAlerts(page).reduce((sum, a) => sum + (counts.alerts[a] || 0), 0);
    b.textContent = String(n);
    b.title = `${n} unseen alert${n === 1 ? "" : "s"}`;
    b.hidden = n === 0;
  }
}

document.getElementById("theme").addEventListener("click", () => {
  setTheme(dark() ? "light" : "dark");
  // Charts take the new theme in place; nothing is fetched again.
  charts = charts.map((c) => {
    const dom = c.getDom();
    const option = options.get(c);
    c.dispose();
    const next = echarts.init(dom, dark() ? "dark" : null, { renderer: "canvas" });
    next.setOption(option);
    options.set(next, option);
    return next;
  });
});

document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/api/logout");
  location.href = "/login";
});

// ---------------------------------------------------------------------------------------------
// Login and setup

// Where to go after logging in: a path of this origin only. Parsed as a URL, so that
// `//evil.example`, `/\\evil.example`, tabs and newlines cannot name another host.
function safeNext(raw) {
  if (!raw) return "/";
  try {
    const target = new URL(raw, location.origin);
    if (target.origin !== location.origin) return "/";
    return target.pathname + target.search + target.hash;
  } catch {
    return "/";
  }
}

function loginView() {
  const next = safeNext(params().get("next"));
  const error = el("p", { class: "error", id: "login-error", role: "alert" });
  const form = el(
    "form",
    { class: "card narrow", id: "login-form" },
    el("h1", {}, "Log in"),
    session.setup_required
      ? el(
          "p",
          { class: "muted" },
          "No user exists yet. Open the one-time setup link printed by the server, or run `affluent user add NAME --role admin`.",
        )
      : null,
    el("label", {}, "User name", el("input", { name: "name", autocomplete: "username", required: true, autofocus: true })),
    el("label", {}, "Password", el("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    el("button", { type: "submit" }, "Log in"),
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    try {
      await api("POST", "/api/login", { name: data.get("name"), password: data.get("password") });
      location.href = next;
    } catch (e) {
      error.textContent = e.message;
    }
  });
  app.replaceChildren(form);
}

function setupView() {
  const token = params().get("token") || "";
  const error = el("p", { class: "error", role: "alert" });
  const form = el(
    "form",
    { class: "card narrow" },
    el("h1", {}, "Create the first admin"),
    el("label", {}, "User name", el("input", { name: "name", required: true, autofocus: true })),
    el("label", {}, "Password (8 characters or more)", el("input", { name: "password", type: "password", minlength: 8, required: true })),
    el("button", { type: "submit" }, "Create and log in"),
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    try {
      await api("POST", "/api/setup", { token, name: data.get("name"), password: data.get("password") });
      location.href = "/";
    } catch (e) {
      error.textContent = e.message;
    }
  });
  app.replaceChildren(form);
}

// ---------------------------------------------------------------------------------------------
// Pages

async function pageView(name) {
  const page = session.pages.find((p) => p.name === name);
  if (!page) {
    app.replaceChildren(el("p", { class: "error" }, `No page "${name}".`));
    return;
  }
  const filtersBar = el("div", { class: "filters", id: "filters" });
  const stamp = el("span", { class: "muted", id: "updated" });
  const star = page.favourite.length > 0 && session.user ? el("button", { type: "button", id: "star", class: "star", title: "Add to my favourites" }, "☆ Star") : null;
  const grid = el("div", { class: "grid", id: "panels" });
  app.replaceChildren(
    el("div", { class: "page-head" }, el("h1", {}, page.title), star, stamp),
    page.description ? el("p", { class: "muted" }, page.description) : null,
    filtersBar,
    grid,
  );

  let filters = [];
  const panelEls = new Map();
  for (const p of page.panels) {
    const body = el("div", { class: "panel-body" });
    const csv = p.kind === "text" ? null : el("a", { class: "csv", href: "#", download: `${name}-${p.name}.csv`, title: "Export as CSV" }, "CSV");
    const box = el(
      "section",
      { class: `panel kind-${p.kind} w${p.width}`, id: `panel-${p.name}`, "data-panel": p.name },
      el("div", { class: "panel-head" }, el("h2", {}, p.title), csv),
      body,
      p.note ? el("p", { class: "panel-note muted" }, p.note) : null,
    );
    panelEls.set(p.name, { box, body, csv, spec: p, view: { sort: null, dir: "asc", offset: 0 } });
    grid.append(box);
  }

  async function refreshFilters() {
    try {
      filters = await api("GET", `/api/pages/${name}/filters?${params()}`);
    } catch (e) {
      filtersBar.replaceChildren(el("p", { class: "error" }, e.message));
      return false;
    }
    filtersBar.replaceChildren(...filters.map(filterControl));
    await refreshStar();
    return true;
  }

  function setParam(key, values) {
    const q = params();
    q.delete(key);
    for (const v of values) q.append(key, v);
    history.replaceState(null, "", `${location.pathname}?${q}`);
  }

  function filterControl(f) {
    const id = `filter-${f.name}`;
    const onChange = async (values) => {
      setParam(f.name, values);
      if (await refreshFilters()) await refreshPanels();
    };
    if (f.kind === "period") {
      const preset = el(
        "select",
        { id, name: f.name },
        f.presets.map((p) => el("option", { value: p, selected: p === f.value[0] }, p.replaceAll("_", " "))),
        el("option", { value: "custom", selected: f.value[0].includes("..") }, "custom…"),
      );
      const from = el("input", { type: "date", value: f.start, id: `${id}-from`, "aria-label": "from" });
      const to = el("input", { type: "date", value: f.end, id: `${id}-to`, "aria-label": "to" });
      const custom = () => onChange([`${from.value}..${to.value}`]);
      preset.addEventListener("change", () => (preset.value === "custom" ? custom() : onChange([preset.value])));
      from.addEventListener("change", custom);
      to.addEventListener("change", custom);
      return el("label", { class: "filter" }, f.label, el("span", { class: "period" }, preset, from, "–", to));
    }
    if (f.kind === "multi") {
      const sel = el(
        "select",
        { id, name: f.name, multiple: true, size: Math.min(6, f.options.length || 1) },
        f.options.map((o) => el("option", { value: o.value, selected: f.value.includes(o.value) }, o.label)),
      );
      sel.addEventListener("change", () => onChange([...sel.selectedOptions].map((o) => o.value)));
      return el("label", { class: "filter" }, f.label, sel);
    }
    const options = [];
    if (f.all) options.push(el("option", { value: "*", selected: f.value[0] === "*" }, "All"));
    for (const o of f.options) options.push(el("option", { value: o.value, selected: o.value === f.value[0] }, o.label));
    const sel = el("select", { id, name: f.name }, options);
    sel.addEventListener("change", () => onChange([sel.value]));
    const parts = [f.label];
    if (f.options.length > 8) {
      // Entity select with search: typing narrows the list.
      const search = el("input", { type: "search", placeholder: "search…", id: `${id}-search`, "aria-label": `search ${f.label}` });
      search.addEventListener("input", () => {
        const needle = search.value.toLowerCase();
        for (const o of sel.options) o.hidden = needle !== "" && o.value !== "*" && !o.textContent.toLowerCase().includes(needle);
        const first = [...sel.options].find((o) => !o.hidden && o.value !== "*");
        if (needle && first && sel.selectedOptions[0] && sel.selectedOptions[0].hidden) {
          sel.value = first.value;
          onChange([first.value]);
        }
      });
      parts.push(search);
    }
    parts.push(sel);
    return el("label", { class: "filter" }, ...parts);
  }

  function favParams() {
    const out = {};
    for (const key of page.favourite) {
      const f = filters.find((x) => x.name === key);
      out[key] = f ? f.value[0] : null;
    }
    return out;
  }

  async function refreshStar() {
    if (!star) return;
    const favs = await api("GET", "/api/favourites");
    const mine = JSON.stringify(favParams());
    const found = favs.find((f) => f.page === name && JSON.stringify(sortKeys(f.params)) === JSON.stringify(sortKeys(JSON.parse(mine))));
    star.textContent = found ? "★ Starred" : "☆ Star";
    star.dataset.id = found ? found.id : "";
    star.classList.toggle("on", !!found);
  }

  if (star) {
    star.addEventListener("click", async () => {
      if (star.dataset.id) await api("DELETE", `/api/favourites/${star.dataset.id}`);
      else {
        const p = favParams();
        const label = page.favourite
          .map((k) => {
            const f = filters.find((x) => x.name === k);
            const v = p[k];
            const o = f && f.options.find((o) => o.value === v);
            return v === "*" ? `all ${f ? f.label : k}` : `${f ? f.label : k} ${o ? o.label : v}`;
          })
          .join(" · ");
        await api("POST", "/api/favourites", { page: name, params: p, label: `${page.title}: ${label}` });
      }
      await refreshStar();
    });
  }

  async function refreshPanel(p) {
    const entry = panelEls.get(p.name);
    const q = params();
    if (entry.view.sort) {
      q.set("_sort", entry.view.sort);
      q.set("_dir", entry.view.dir);
    }
    if (entry.csv) entry.csv.href = `/api/pages/${name}/panels/${p.name}/csv?${q}`;
    if (entry.view.offset) q.set("_offset", entry.view.offset);
    entry.box.classList.add("loading");
    try {
      const data = await api("GET", `/api/pages/${name}/panels/${p.name}?${q}`);
      await renderPanel(entry, data, () => refreshPanel(p));
    } catch (e) {
      entry.body.replaceChildren(el("p", { class: "error" }, e.message));
    } finally {
      entry.box.classList.remove("loading");
    }
  }

  async function refreshPanels(only, list) {
    await Promise.all(
      page.panels
        .filter((p) => !only || p.tables.some((t) => only.includes(t)))
        .filter((p) => !list || (p.lists || []).includes(list))
        .map(refreshPanel),
    );
  }

  // A ticked box changes a list: the panels reading it are shown again.
  entryListChanged = async (list) => {
    await refreshPanels(null, list);
  };
  await loadLists();
  if (await refreshFilters()) await refreshPanels();

  // Live refresh: the server says which tables changed; panels reading them reload.
  if (live) live.close();
  if (!session.user) return;
  live = new EventSource("/api/events");
  live.addEventListener("hello", (ev) => {
    stamp.textContent = "Last updated " + fmtInstant(JSON.parse(ev.data).updated);
  });
  live.addEventListener("change", async (ev) => {
    const change = JSON.parse(ev.data);
    stamp.textContent = "Last updated " + fmtInstant(change.at);
    await refreshFilters();
    await refreshPanels(change.tables);
    if (change.tables.includes("alert_firings")) await refreshBadges();
  });
}

/** What a toggle calls after changing a list (the current page's refresh). */
let entryListChanged = async () => {};

function sortKeys(o) {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function emptyMessage() {
  return el("p", { class: "empty" }, "No data for these filters.");
}

/** A cards panel: one card per row (image, title, lines, link buttons, the toggle), paged. */
function renderCards(entry, data, reload) {
  const { body, spec } = entry;
  const cols = data.columns;
  const formats = spec.formats || {};
  const ti = titleIndex(spec, cols);
  const cards = data.rows.map((r) => {
    const image = cols.findIndex((c) => formats[c.name] === "image");
    const lines = cols
      .map((c, i) => [c, i])
      .filter(([c, i]) => i !== ti && !formats[c.name] && !(spec.toggle && spec.toggle.key === c.name))
      .map(([c, i]) => el("div", { class: "card-line" }, el("span", { class: "muted" }, c.name.replaceAll("_", " ") + " "), fmtValue(r[i], c.kind)));
    const links = cols
      .map((c, i) => [c, i])
      .filter(([c]) => formats[c.name] === "link")
      .map(([c, i]) => linkCell(r[i], c.name.replaceAll("_", " ")));
    return el(
      "article",
      { class: "tile", "data-title": String(r[ti]) },
      image >= 0 ? imageCell(r[image], String(r[ti])) : null,
      el("div", { class: "tile-body" }, el("h3", {}, fmtValue(r[ti], cols[ti].kind)), lines, el("div", { class: "tile-links" }, links), toggleBox(spec, r, cols, entryListChanged)),
    );
  });
  const size = spec.limit || 30;
  const parts = [cards.length ? el("div", { class: "tiles" }, cards) : emptyMessage()];
  if ((data.total || 0) > size) parts.push(pager(entry, data, size, reload));
  body.replaceChildren(...parts);
}

/** "‹ Prev  1–25 of 80  Next ›" under a table or cards panel. */
function pager(entry, data, size, reload) {
  const from = data.total ? entry.view.offset + 1 : 0;
  const to = entry.view.offset + data.rows.length;
  const prev = el("button", { type: "button", disabled: entry.view.offset === 0 }, "‹ Prev");
  const next = el("button", { type: "button", disabled: to >= (data.total || 0) }, "Next ›");
  prev.addEventListener("click", () => {
    entry.view.offset = Math.max(0, entry.view.offset - size);
    reload();
  });
  next.addEventListener("click", () => {
    entry.view.offset += size;
    reload();
  });
  return el("div", { class: "pager" }, prev, el("span", { class: "muted" }, `${from}–${to} of ${data.total || 0}`), next);
}

function chart(body, option) {
  // A panel redrawn (new filters, live refresh) drops its previous chart.
  for (const old of body.querySelectorAll(".chart")) {
    const instance = echarts.getInstanceByDom(old);
    if (instance) {
      charts = charts.filter((c) => c !== instance);
      instance.dispose();
    }
  }
  body.replaceChildren();
  const div = el("div", { class: "chart" });
  body.append(div);
  const c = echarts.init(div, dark() ? "dark" : null, { renderer: "canvas" });
  const full = Object.assign({ backgroundColor: "transparent", animation: false }, option);
  // The project's colours: its primary first in the palette, its text on the axes and legends.
  const t = (session && session.theme) || {};
  if (t.primary && !full.color) full.color = [t.primary, t.text || "#91cc75", "#5470c6", "#91cc75", "#fac858", "#73c0de", "#3ba272", "#fc8452", "#9a60b4"];
  if (t.text && !full.textStyle) full.textStyle = { color: t.text };
  c.setOption(full);
  options.set(c, full);
  charts.push(c);
  return c;
}

const geoLoaded = new Set();
const BASELINE = " (baseline)";

/** `{"agency_name":"Lyon 1"}` as `Lyon 1` (several keys: `agency: Lyon 1, counter: 2`). */
function entityText(entity) {
  try {
    const o = JSON.parse(entity);
    const entries = Object.entries(o || {});
    if (entries.length === 1) return String(entries[0][1]);
    return entries.map(([k, v]) => `${k}: ${v}`).join(", ");
  } catch (e) {
    return entity;
  }
}

function renderAlerts(body, list, reload) {
  const mark = async (path, request, button) => {
    button.disabled = true;
    try {
      await api("POST", path, request);
    } catch (e) {
      button.disabled = false;
      body.prepend(el("p", { class: "error" }, e.message));
      return;
    }
    await reload();
    await refreshBadges();
  };
  if (!list || !list.firings.length) {
    body.replaceChildren(el("p", { class: "empty" }, "No alert has fired."));
    return;
  }
  const all = el("button", { type: "button", class: "mark-all", disabled: list.unseen === 0 }, "Mark all seen");
  // Up to the newest firing the panel knows: one that fired since stays unseen.
  all.addEventListener("click", () => mark("/api/alerts/seen/all", { alerts: list.alerts, until: list.newest || undefined }, all));
  const items = list.firings.map((f) => {
    const button = f.seen ? null : el("button", { type: "button", class: "mark-seen" }, "Mark seen");
    if (button) button.addEventListener("click", () => mark("/api/alerts/seen", { firings: [{ alert: f.alert, evaluation: f.evaluation, entity: f.entity }] }, button));
    return el(
      "li",
      { class: `firing ${f.seen ? "seen" : "unseen"} severity-${f.severity}`, "data-alert": f.alert, "data-entity": f.entity },
      el("span", { class: "severity" }, f.severity),
      el(
        "div",
        { class: "firing-text" },
        el("div", { class: "message" }, f.message),
        el("div", { class: "muted" }, `${entityText(f.entity)} · ${f.alert} · ${fmtValue(f.fired_at, "timestamp")}`),
      ),
      button || el("span", { class: "muted seen-mark" }, "✓ seen"),
    );
  });
  body.replaceChildren(
    el("div", { class: "alerts-head" }, el("span", { class: "unseen-count" }, `${list.unseen} unseen of ${list.total}`), all),
    el("ul", { class: "firings" }, items),
  );
}

async function renderPanel(entry, data, reload) {
  const { body, spec } = entry;
  const cols = data.columns;
  if (data.kind === "text") {
    body.replaceChildren(...(data.text || "").split(/\n\s*\n/).map((t) => el("p", {}, t)));
    return;
  }
  if (data.kind === "alerts") {
    renderAlerts(body, data.firings, reload);
    return;
  }
  if (data.kind === "cards") {
    renderCards(entry, data, reload);
    return;
  }
  if (!data.rows.length && data.kind !== "table") {
    body.replaceChildren(emptyMessage());
    return;
  }
  if (data.kind === "kpi") {
    const v = data.rows[0][0];
    const parts = [el("div", { class: "kpi-value" }, fmtValue(v, cols[0].kind), spec.unit ? el("span", { class: "unit" }, " " + spec.unit) : null)];
    if (data.compare) {
      const c = data.compare;
      const pct = c.change_pct;
      const cls = pct === null ? "" : pct >= 0 ? "up" : "down";
      parts.push(
        el(
          "div",
          { class: `kpi-delta ${cls}` },
          pct === null ? "–" : `${pct >= 0 ? "▲" : "▼"} ${new Intl.NumberFormat(locale(), { maximumFractionDigits: 1, signDisplay: "always" }).format(pct)} %`,
          el("span", { class: "muted" }, ` vs ${fmtDate(c.previous_start)} – ${fmtDate(c.previous_end)} (${fmtValue(c.previous, cols[0].kind)})`),
        ),
      );
    }
    body.replaceChildren(...parts);
    return;
  }
  if (data.kind === "table") {
    const t = el("table", { class: "data" });
    const head = el(
      "tr",
      {},
      cols.map((c) => {
        const th = el("th", { "data-col": c.name, class: entry.view.sort === c.name ? `sorted ${entry.view.dir}` : "" }, c.name);
        th.addEventListener("click", () => {
          entry.view.dir = entry.view.sort === c.name && entry.view.dir === "asc" ? "desc" : "asc";
          entry.view.sort = c.name;
          entry.view.offset = 0;
          reload();
        });
        return th;
      }),
    );
    if (spec.toggle && session.user) head.prepend(el("th", { class: "toggle-col" }, listLabel(spec.toggle.list)));
    t.append(el("thead", {}, head));
    t.append(
      el(
        "tbody",
        {},
        data.rows.map((r) => {
          const tr = el("tr", {}, r.map((v, i) => el("td", { class: cols[i].kind }, cell(spec, cols[i], v, r, cols))));
          if (spec.toggle && session.user) {
            const box = toggleBox(spec, r, cols, entryListChanged);
            if (box) box.lastChild.remove();
            tr.prepend(el("td", { class: "toggle-col" }, box));
          }
          return tr;
        }),
      ),
    );
    body.replaceChildren(data.rows.length ? t : emptyMessage(), pager(entry, data, spec.limit || 25, reload));
    return;
  }
  if (data.kind === "top") {
    const rows = [...data.rows].reverse();
    const vi = cols.findIndex((c, i) => i > 0 && c.kind === "number");
    const valueIdx = vi > 0 ? vi : 1;
    chart(body, {
      grid: { left: 8, right: 24, top: 8, bottom: 8, containLabel: true },
      tooltip: { trigger: "axis" },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: rows.map((r) => fmtValue(r[0], cols[0].kind)) },
      series: [{ type: "bar", name: cols[valueIdx].name, data: rows.map((r) => r[valueIdx]) }],
    });
    return;
  }
  if (data.kind === "map") {
    const idx = (names) => cols.findIndex((c) => names.includes(c.name.toLowerCase()));
    const lon = idx(["lon", "lng", "longitude"]);
    const lat = idx(["lat", "latitude"]);
    const label = idx(["label", "name"]);
    const value = idx(["value", "count"]);
    const mapName = `${spec.name}-geo`;
    if (!geoLoaded.has(mapName)) {
      const res = await fetch(location.pathname.replace("/pages/", "/api/pages/") + `/panels/${spec.name}/geojson`);
      if (res.ok) {
        echarts.registerMap(mapName, await res.json());
        geoLoaded.add(mapName);
      }
    }
    const onGeo = geoLoaded.has(mapName);
    if (spec.regions) {
      // A choropleth: each polygon named by the `regions` property, coloured by its row's value.
      if (!onGeo) {
        body.replaceChildren(el("p", { class: "error" }, "The map's GeoJSON could not be loaded."));
        return;
      }
      const ri = Math.max(idx(["region"]), 0);
      const vi = value >= 0 ? value : cols.findIndex((c, i) => i !== ri && c.kind === "number");
      const rows = data.rows.map((r) => ({ name: String(r[ri]), value: vi >= 0 ? r[vi] : null }));
      const values = rows.map((r) => r.value).filter((v) => typeof v === "number");
      const shown = (v) => (typeof v === "number" && !Number.isNaN(v) ? fmtValue(v, "number") : "no data");
      chart(body, {
        tooltip: { trigger: "item", formatter: (p) => `${escapeHtml(p.name)}: ${escapeHtml(shown(p.value))}` },
        visualMap: {
          min: values.length ? Math.min(...values) : 0,
          max: values.length ? Math.max(...values) : 1,
          calculable: true,
          right: 0,
          bottom: 0,
          inRange: { color: ["#deebf7", "#9ecae1", "#08519c"] },
        },
        series: [
          {
            type: "map",
            name: vi >= 0 ? cols[vi].name : "value",
            map: mapName,
            nameProperty: spec.regions,
            roam: true,
            itemStyle: { areaColor: dark() ? "#333" : "#eef1f5", borderColor: "#999" },
            data: rows,
          },
        ],
      });
      return;
    }
    if (lon < 0 || lat < 0) {
      body.replaceChildren(el("p", { class: "error" }, "A map panel needs lon and lat columns (or `regions`, for a choropleth)."));
      return;
    }
    const point = (r) => ({ name: label >= 0 ? String(r[label]) : "", value: [r[lon], r[lat], value >= 0 ? r[value] : 1] });
    const geo = onGeo ? { map: mapName, roam: true, itemStyle: { areaColor: dark() ? "#333" : "#eef1f5", borderColor: "#999" } } : undefined;
    const axes = { xAxis: onGeo ? undefined : { type: "value", scale: true }, yAxis: onGeo ? undefined : { type: "value", scale: true } };
    // ECharts renders a formatter's string as HTML: the label is the data's, so it is escaped.
    const si = spec.series ? cols.findIndex((c) => c.name === spec.series) : -1;
    if (si >= 0) {
      // One series (and legend entry) per category, in its declared colour.
      const groups = new Map();
      for (const r of data.rows) {
        const key = String(r[si]);
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(point(r));
      }
      chart(body, {
        tooltip: { trigger: "item", formatter: (p) => `${escapeHtml(p.seriesName)}<br>${escapeHtml(p.name)}` },
        legend: { top: 0, type: "scroll" },
        geo,
        series: [...groups].map(([key, pts]) => ({
          type: "scatter",
          name: key,
          coordinateSystem: onGeo ? "geo" : "cartesian2d",
          symbolSize: 6,
          itemStyle: colorOf(spec, key) ? { color: colorOf(spec, key) } : undefined,
          data: pts,
        })),
        ...axes,
      });
      return;
    }
    const values = data.rows.map((r) => (value >= 0 ? r[value] : 1)).filter((v) => typeof v === "number");
    const max = values.length ? Math.max(...values) : 1;
    chart(body, {
      tooltip: { trigger: "item", formatter: (p) => `${escapeHtml(p.name)}: ${escapeHtml(fmtValue(p.value[2], "number"))}` },
      geo,
      visualMap: { min: 0, max, calculable: true, right: 0, bottom: 0, inRange: { color: ["#9ecae1", "#08519c"] } },
      series: [
        {
          type: "scatter",
          coordinateSystem: onGeo ? "geo" : "cartesian2d",
          symbolSize: (v) => 6 + 14 * Math.sqrt((v[2] || 0) / (max || 1)),
          data: data.rows.map(point),
        },
      ],
      ...axes,
    });
    return;
  }
  // Time series and bars.
  const xName = spec.x || cols[0].name;
  const xi = cols.findIndex((c) => c.name === xName);
  const xKind = cols[xi] ? cols[xi].kind : "text";
  let series;
  let xs;
  if (spec.series) {
    const si = cols.findIndex((c) => c.name === spec.series);
    const yi = spec.y.length ? cols.findIndex((c) => c.name === spec.y[0]) : cols.findIndex((c, i) => i !== xi && i !== si && c.kind === "number");
    xs = [...new Set(data.rows.map((r) => r[xi]))];
    const groups = new Map();
    for (const r of data.rows) {
      const key = String(r[si]);
      if (!groups.has(key)) groups.set(key, new Map());
      groups.get(key).set(r[xi], r[yi]);
    }
    series = [...groups].map(([key, m]) => ({ name: key, values: xs.map((x) => (m.has(x) ? m.get(x) : null)) }));
    // `baseline`: the server adds "Y (baseline)" beside the series column.
    const bi = yi >= 0 ? cols.findIndex((c) => c.name === cols[yi].name + BASELINE) : -1;
    if (bi >= 0) {
      const baselines = new Map();
      for (const r of data.rows) {
        const key = String(r[si]);
        if (!baselines.has(key)) baselines.set(key, new Map());
        baselines.get(key).set(r[xi], r[bi]);
      }
      series = series.concat([...baselines].map(([key, m]) => ({ name: key + BASELINE, values: xs.map((x) => (m.has(x) ? m.get(x) : null)) })));
    }
  } else {
    let ys = spec.y.length ? spec.y.concat((spec.y2 || []).filter((c) => !spec.y.includes(c))) : cols.filter((c, i) => i !== xi && c.kind === "number" && !c.name.endsWith(BASELINE)).map((c) => c.name);
    ys = ys.concat(ys.map((y) => y + BASELINE).filter((b) => cols.some((c) => c.name === b)));
    xs = data.rows.map((r) => r[xi]);
    series = ys.map((y) => {
      const i = cols.findIndex((c) => c.name === y);
      return { name: y, values: data.rows.map((r) => r[i]) };
    });
  }
  const type = data.kind === "bar" ? "bar" : "line";
  const right = new Set(spec.y2 || []);
  const drawn = chart(body, {
    tooltip: { trigger: "axis" },
    legend: { top: 0, type: "scroll" },
    grid: { left: 8, right: 16, top: 32, bottom: 40, containLabel: true },
    xAxis: { type: "category", data: xs.map((x) => fmtValue(x, xKind)) },
    yAxis: right.size ? [{ type: "value", scale: type !== "bar" }, { type: "value", scale: true, splitLine: { show: false } }] : { type: "value", scale: type !== "bar" },
    dataZoom: xs.length > 60 ? [{ type: "inside" }, { type: "slider", height: 18, bottom: 4 }] : [],
    series: series.map((s) => {
      const baseline = s.name.endsWith(BASELINE);
      const color = colorOf(spec, s.name);
      // A baseline follows its series' axis.
      const onRight = right.has(baseline ? s.name.slice(0, -BASELINE.length) : s.name);
      return {
        name: s.name,
        type: baseline || onRight ? "line" : type,
        yAxisIndex: onRight ? 1 : 0,
        data: s.values,
        itemStyle: color ? { color } : undefined,
        showSymbol: !baseline && xs.length <= 60,
        connectNulls: baseline,
        lineStyle: baseline ? { type: "dashed", width: 1.5 } : color ? { color } : undefined,
        areaStyle: data.kind === "area" && !baseline && !onRight ? {} : undefined,
      };
    }),
  });
  // A click on a point: where does it come from.
  drawn.on("click", (p) => {
    if (!session.user || p.dataIndex === undefined || p.dataIndex >= xs.length) return;
    const point = { [xName]: xs[p.dataIndex] };
    if (spec.series && p.seriesName) point[spec.series] = p.seriesName.replace(BASELINE, "");
    showLineage(entry, point);
  });
}

/** The tables and models behind a panel, and the landing entries of the rows behind `point`
 * (with the panel's `lineage`); admins open each raw response. */
async function showLineage(entry, point) {
  const { box, spec } = entry;
  const page = decodeURIComponent(location.pathname.slice("/pages/".length));
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(point)) q.set(`point.${k}`, v == null ? "" : String(v));
  let holder = box.querySelector(".lineage");
  if (!holder) {
    holder = el("div", { class: "lineage", id: `lineage-${spec.name}` });
    box.append(holder);
  }
  const close = el("button", { type: "button", class: "link", title: "Close" }, "✕");
  close.addEventListener("click", () => holder.remove());
  const head = el("div", { class: "panel-head" }, el("h2", {}, "Where does this come from? " + Object.entries(point).map(([k, v]) => `${k} = ${v}`).join(", ")), close);
  holder.replaceChildren(head, el("p", { class: "muted" }, "…"));
  let l;
  try {
    l = await api("GET", `/api/pages/${encodeURIComponent(page)}/panels/${encodeURIComponent(spec.name)}/lineage?${q}`);
  } catch (e) {
    holder.replaceChildren(head, el("p", { class: "error" }, e.message));
    return;
  }
  const nodes = el(
    "ul",
    { class: "upstream" },
    l.upstream.map((n) =>
      el("li", { "data-node": n.name }, el("strong", {}, n.name), " ", el("span", { class: "muted" }, n.kind === "model" ? `model, reads ${n.reads.join(", ")}` : n.kind === "table" ? `table, from source ${n.source}` : "written by affluent")),
    ),
  );
  const raw = el("pre", { class: "raw", id: `raw-${spec.name}`, hidden: true });
  const entries = el(
    "table",
    { class: "data entries" },
    el("thead", {}, el("tr", {}, ["fetched", "source", "status", "request", "rows", ""].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      l.entries.map((e) => {
        let open = null;
        if (session.role === "admin") {
          open = el("button", { type: "button", class: "link raw-open", "data-entry": e.entry }, "raw response");
          open.addEventListener("click", async () => {
            raw.hidden = false;
            raw.textContent = "…";
            try {
              const r = await api("GET", `/api/landing/${encodeURIComponent(e.source)}/${encodeURIComponent(e.entry)}`);
              raw.textContent = `${[r.entry.method, r.entry.url].filter(Boolean).join(" ")}\n${r.entry.status} ${r.content_type || ""} · fetched ${r.entry.fetched_at}${r.truncated ? " · first MiB" : ""}\n\n${r.body}`;
            } catch (err) {
              raw.textContent = err.message;
            }
          });
        }
        return el(
          "tr",
          { "data-entry": e.entry },
          el("td", {}, fmtInstant(e.fetched_at)),
          el("td", {}, e.source),
          el("td", { class: "number" }, e.status),
          el("td", {}, el("div", { class: "clamp", title: e.url }, [e.method, e.url].filter(Boolean).join(" "))),
          el("td", { class: "number" }, e.rows ?? "–"),
          el("td", {}, open),
        );
      }),
    ),
  );
  holder.replaceChildren(head, nodes, l.entries.length ? entries : el("p", { class: "empty" }, l.note || "No landing entry."), raw);
}

// A series' declared colour (`colors` in the project file), own keys only.
function colorOf(spec, name) {
  return spec.colors && Object.hasOwn(spec.colors, name) ? spec.colors[name] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Favourites and users

function pageUrl(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f.params)) q.set(k, v);
  return `/pages/${f.page}?${q}`;
}

async function favouritesView() {
  const favs = await api("GET", "/api/favourites");
  const list = el(
    "ul",
    { class: "favourites", id: "favourites" },
    favs.map((f) => {
      const remove = el("button", { type: "button", class: "link", title: "Remove" }, "✕");
      remove.addEventListener("click", async () => {
        await api("DELETE", `/api/favourites/${f.id}`);
        favouritesView();
      });
      return el("li", { "data-id": f.id }, el("a", { href: pageUrl(f) }, "★ " + f.label), " ", remove);
    }),
  );
  app.replaceChildren(
    el("h1", {}, "My favourites"),
    favs.length ? list : el("p", { class: "empty" }, "Nothing starred yet: use ☆ Star on a page."),
  );
}

async function adminView() {
  let users;
  try {
    users = await api("GET", "/api/users");
  } catch (e) {
    app.replaceChildren(el("h1", {}, "Users"), el("p", { class: "error" }, e.message));
    return;
  }
  const error = el("p", { class: "error", role: "alert" });
  const form = el(
    "form",
    { class: "inline" },
    el("input", { name: "name", placeholder: "name", required: true }),
    el("input", { name: "password", type: "password", placeholder: "password (8+)", minlength: 8, required: true }),
    el("select", { name: "role" }, el("option", { value: "viewer" }, "viewer"), el("option", { value: "admin" }, "admin")),
    el("button", { type: "submit" }, "Add user"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    try {
      await api("POST", "/api/users", { name: d.get("name"), password: d.get("password"), role: d.get("role") });
      adminView();
    } catch (e) {
      error.textContent = e.message;
    }
  });
  app.replaceChildren(
    el("h1", {}, "Users"),
    el(
      "table",
      { class: "data" },
      el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "role"), el("th", {}, "created"), el("th", {}))),
      el(
        "tbody",
        {},
        users.map((u) => {
          const rm = el("button", { type: "button", class: "link", disabled: u.name === session.user }, "remove");
          rm.addEventListener("click", async () => {
            try {
              await api("DELETE", `/api/users/${encodeURIComponent(u.name)}`);
              adminView();
            } catch (e) {
              error.textContent = e.message;
            }
          });
          return el("tr", {}, el("td", {}, u.name), el("td", {}, u.role), el("td", {}, fmtInstant(u.created)), el("td", {}, rm));
        }),
      ),
    ),
    form,
    error,
  );
}

// ---------------------------------------------------------------------------------------------
// The pipeline: tasks, the coverage of their intervals, runs, backfills

const RANGES = [
  ["1 year", 365 * 24],
  ["90 days", 90 * 24],
  ["30 days", 30 * 24],
  ["7 days", 7 * 24],
  ["1 day", 24],
  ["6 hours", 6],
];

/** `<input type=datetime-local>`'s value of an instant, in UTC. */
function utcInput(ms) {
  return new Date(ms).toISOString().slice(0, 16);
}

let following = false; // a backfill's progress is being polled
let logTimer = null; // the log's poll

/** The process's log (admins): filtered by level and text, followed every two seconds. */
function logsSection() {
  clearTimeout(logTimer);
  const level = el("select", { name: "level" }, ["error", "warn", "info", "debug", "trace"].map((l) => el("option", { value: l, selected: l === "info" }, l)));
  const task = el("input", { name: "task", placeholder: "task or text (source:NAME)" });
  const lines = el("pre", { class: "log", id: "log" });
  let after = 0;
  const poll = async (restart) => {
    clearTimeout(logTimer);
    if (location.pathname !== "/pipeline" || !document.body.contains(lines)) return;
    if (restart) {
      after = 0;
      lines.replaceChildren();
    }
    try {
      const q = new URLSearchParams({ after, level: level.value, limit: 500 });
      if (task.value.trim()) q.set("task", task.value.trim());
      const page = await api("GET", `/api/pipeline/logs?${q}`);
      for (const r of page.records) {
        lines.append(el("div", { class: `log-${r.level}`, "data-seq": r.seq }, `${r.time.slice(0, 19).replace("T", " ")} ${r.level.toUpperCase().padEnd(5)} ${r.target}: ${r.message}`));
      }
      while (lines.childElementCount > 2000) lines.firstElementChild.remove();
      if (page.records.length) lines.scrollTop = lines.scrollHeight;
      after = page.last;
    } catch (e) {
      lines.append(el("div", { class: "error" }, e.message));
    }
    logTimer = setTimeout(() => poll(false), 2000);
  };
  level.addEventListener("change", () => poll(true));
  task.addEventListener("change", () => poll(true));
  setTimeout(() => poll(true), 0);
  return el(
    "section",
    { class: "ops", id: "logs" },
    el("h2", {}, "Log of this server"),
    el("div", { class: "filters" }, el("label", { class: "filter" }, "level", level), el("label", { class: "filter" }, "filter", task)),
    lines,
  );
}

async function pipelineView() {
  const q = params();
  const now = Date.now();
  const to = q.get("to") ? Date.parse(q.get("to")) : now;
  const from = q.get("from") ? Date.parse(q.get("from")) : to - 30 * 24 * 3600e3;
  const range = { from: isNaN(from) ? now - 30 * 24 * 3600e3 : from, to: isNaN(to) ? now : to };
  const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
  const go = (a, b) => {
    const p = new URLSearchParams({ from: iso(a), to: iso(b) });
    history.replaceState(null, "", `/pipeline?${p}`);
    pipelineView();
  };
  const [tasks, coverage, runs, backfills, limits] = await Promise.all([
    api("GET", "/api/pipeline/tasks"),
    api("GET", `/api/pipeline/coverage?from=${encodeURIComponent(iso(range.from))}&to=${encodeURIComponent(iso(range.to))}`),
    api("GET", "/api/pipeline/runs?limit=30"),
    api("GET", "/api/pipeline/backfills"),
    api("GET", "/api/pipeline/limits"),
  ]);
  const admin = session.role === "admin";

  // The range: presets ending now, or any from/to (UTC).
  const fromInput = el("input", { type: "datetime-local", name: "from", value: utcInput(range.from) });
  const toInput = el("input", { type: "datetime-local", name: "to", value: utcInput(range.to) });
  const rangeForm = el(
    "form",
    { class: "filters", id: "range" },
    RANGES.map(([label, hours]) =>
      el("button", { type: "button", "data-hours": hours, onclick: () => go(Date.now() - hours * 3600e3, Date.now()) }, label),
    ),
    el("label", { class: "filter" }, "from (UTC)", fromInput),
    el("label", { class: "filter" }, "to (UTC)", toInput),
    el("button", { type: "submit" }, "Show"),
  );
  rangeForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const a = Date.parse(fromInput.value + "Z");
    const b = Date.parse(toInput.value + "Z");
    if (!isNaN(a) && !isNaN(b) && b > a) go(a, b);
  });

  // What a click on a segment selects: its range, to zoom into or (admins) backfill.
  const detail = el("div", { class: "card segment-detail", id: "segment", hidden: true });
  const message = el("p", { class: "error", role: "alert" });
  const select = (c, s) => {
    const a = Date.parse(s.start);
    const b = Date.parse(s.end);
    const zoom = el("button", { type: "button", onclick: () => go(a, b) }, "Zoom in");
    const children = [
      el("h2", {}, `${c.task}: ${s.intervals} interval(s) ${s.state}`),
      el("p", {}, `${fmtInstant(s.start)} → ${fmtInstant(s.end)}`),
      s.error ? el("p", { class: "error" }, s.error) : null,
      zoom,
    ];
    if (admin && s.hole) {
      // Every interval of the hole that is not done runs: missing, pending, landed or failed.
      const reprocess = "failed";
      const start = el("button", { type: "button", id: "backfill" }, s.state === "failed" ? "Retry these intervals" : "Backfill these intervals");
      start.addEventListener("click", async () => {
        start.disabled = true;
        try {
          await api("POST", "/api/pipeline/backfills", { task: c.task, from: s.start, to: s.end, reprocess });
          message.textContent = "";
          await followBackfills();
        } catch (e) {
          message.textContent = e.message;
          start.disabled = false;
        }
      });
      children.push(" ", start);
    }
    detail.replaceChildren(...children);
    detail.hidden = false;
  };

  const span = range.to - range.from;
  const timelines = el(
    "div",
    { class: "timelines", id: "coverage" },
    coverage.map((c) => {
      const bar = el("div", { class: "timeline", "data-task": c.task });
      for (const s of c.segments) {
        const a = Math.max(Date.parse(s.start), range.from);
        const b = Math.min(Date.parse(s.end), range.to);
        if (b <= a) continue;
        const seg = el("button", {
          type: "button",
          class: `segment state-${s.state}${s.hole ? " hole" : ""}`,
          "data-state": s.state,
          "data-start": s.start,
          "data-end": s.end,
          title: `${s.state}: ${s.intervals} interval(s), ${fmtInstant(s.start)} → ${fmtInstant(s.end)}${s.error ? "\n" + s.error : ""}`,
          style: `left: ${((a - range.from) / span) * 100}%; width: ${((b - a) / span) * 100}%`,
        });
        seg.addEventListener("click", () => select(c, s));
        bar.append(seg);
      }
      const counts = Object.entries(c.counts).map(([k, v]) => `${v} ${k}`).join(", ") || "no interval in this range";
      return el(
        "div",
        { class: "timeline-row" },
        el("div", { class: "timeline-label" }, el("strong", {}, c.task), el("span", { class: "muted" }, ` ${c.schedule}`),
          el("div", { class: c.holes ? "holes" : "muted", "data-holes": c.holes }, c.holes ? `${c.holes} hole(s) · ${counts}` : counts)),
        bar,
      );
    }),
  );
  const legend = el(
    "p",
    { class: "legend" },
    ["done", "landed", "pending", "running", "failed", "missing"].map((s) => el("span", { class: `key state-${s}` }, s)),
  );

  const taskTable = el(
    "table",
    { class: "data", id: "tasks" },
    el("thead", {}, el("tr", {}, ["task", "schedule", "last success", "next run", "holes", "failed", "quota today", "last error"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      tasks.map((t) =>
        el(
          "tr",
          { "data-task": t.task },
          el("td", {}, t.task),
          el("td", {}, t.schedule),
          el("td", {}, t.last_success ? fmtInstant(t.last_success) : "–"),
          el("td", {}, t.next_run ? fmtInstant(t.next_run) : "–"),
          el("td", { class: "number" }, t.holes),
          el("td", { class: "number" }, t.failed),
          el("td", {}, t.quota_today || "–"),
          el("td", { class: "error" }, t.last_error ? el("div", { class: "clamp", title: t.last_error }, t.last_error) : ""),
        ),
      ),
    ),
  );
  const runTable = el(
    "table",
    { class: "data", id: "runs" },
    el("thead", {}, el("tr", {}, ["started", "task", "interval", "trigger", "status", "seconds", "requests", "records", "loaded", "error"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      runs.map((r) =>
        el(
          "tr",
          { class: `run-${r.status}` },
          el("td", {}, fmtInstant(r.started)),
          el("td", {}, r.task),
          el("td", {}, `${fmtInstant(r.interval_start)} → ${fmtInstant(r.interval_end)}`),
          el("td", {}, r.trigger),
          el("td", {}, r.status),
          el("td", { class: "number" }, r.seconds == null ? "–" : r.seconds.toFixed(2)),
          el("td", { class: "number" }, r.requests ?? "–"),
          el("td", { class: "number" }, r.records ?? "–"),
          el("td", { class: "number" }, r.loaded ?? "–"),
          el("td", { class: "error" }, r.error ? el("div", { class: "clamp", title: r.error }, r.error) : ""),
        ),
      ),
    ),
  );
  const backfillList = el("ul", { class: "backfills", id: "backfills" });
  const showBackfills = (list) => {
    const section = document.getElementById("backfills-section");
    if (section && list.length) section.hidden = false;
    backfillList.replaceChildren(
      ...list.map((b) =>
        el(
          "li",
          { "data-status": b.status, "data-id": b.id },
          el("strong", {}, b.task), ` ${fmtInstant(b.from)} → ${fmtInstant(b.to)}: `,
          el("span", { class: "status" }, b.status), ` ${b.done + b.failed}/${b.total}`,
          el("progress", { max: Math.max(b.total, 1), value: b.done + b.failed }),
          el("span", { class: "muted" }, ` by ${b.started_by}`),
          b.error ? el("div", { class: "error" }, b.error) : null,
        ),
      ),
    );
  };
  showBackfills(backfills);
  // While a backfill started here runs, its progress is polled; the coverage is drawn again
  // when it ends.
  async function followBackfills() {
    // One follower at a time, whatever the redraws.
    if (following) return;
    following = true;
    try {
      await followLoop();
    } finally {
      following = false;
    }
  }
  async function followLoop() {
    for (;;) {
      const list = await api("GET", "/api/pipeline/backfills");
      showBackfills(list);
      if (!list.some((b) => b.status === "running")) break;
      await new Promise((r) => setTimeout(r, 1000));
      if (location.pathname !== "/pipeline") return;
    }
    pipelineView();
  }

  const limitTable = el(
    "table",
    { class: "data", id: "limits" },
    el("thead", {}, el("tr", {}, ["scope", "per second", "per minute", "per day", "used today", "next request", "waiting for"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      limits.map((l) =>
        el(
          "tr",
          { "data-scope": l.scope },
          el("td", {}, l.scope),
          el("td", { class: "number" }, l.per_second ?? "–"),
          el("td", { class: "number" }, l.per_minute ?? "–"),
          el("td", { class: "number" }, l.per_day ?? "–"),
          el("td", { class: "number" }, l.used_today == null ? "–" : `${l.used_today}/${l.per_day}`),
          el("td", {}, l.next_allowed ? fmtInstant(l.next_allowed) : "now"),
          el("td", {}, l.waiting_for || ""),
        ),
      ),
    ),
  );
  const logSection = admin ? logsSection() : null;

  app.replaceChildren(
    el("div", { class: "page-head" }, el("h1", {}, "Pipeline")),
    rangeForm,
    el("section", { class: "card ops" }, el("h2", {}, `Coverage, ${fmtInstant(iso(range.from))} → ${fmtInstant(iso(range.to))}`), legend, timelines),
    detail,
    message,
    el("section", { class: "ops", hidden: !backfills.length, id: "backfills-section" }, el("h2", {}, "Backfills started here"), backfillList),
    el("section", { class: "ops" }, el("h2", {}, "Sources and models"), taskTable),
    el("section", { class: "ops" }, el("h2", {}, "Recent runs"), runTable),
    el("section", { class: "ops" }, el("h2", {}, "Rate limits and quotas"), limits.length ? limitTable : el("p", { class: "empty" }, "No source or host declares a rate limit.")),
    logSection,
  );
  if (backfills.some((b) => b.status === "running")) followBackfills();
}

// ---------------------------------------------------------------------------------------------
// Routing

async function route() {
  for (const c of charts) c.dispose();
  charts = [];
  const path = location.pathname;
  try {
    if (path === "/setup") return setupView();
    if (path === "/login") {
      if (session.user) {
        location.href = safeNext(params().get("next"));
        return;
      }
      return loginView();
    }
    if (!session.user) {
      const publicPage = path.startsWith("/pages/") && session.pages.some((p) => p.name === decodeURIComponent(path.slice(7)));
      if (publicPage) return await pageView(decodeURIComponent(path.slice(7)));
      location.href = "/login?next=" + encodeURIComponent(path + location.search);
      return;
    }
    if (path.startsWith("/pages/")) return await pageView(decodeURIComponent(path.slice(7)));
    if (path === "/favourites") return await favouritesView();
    if (path === "/admin") return await adminView();
    if (path === "/pipeline") return await pipelineView();
    app.replaceChildren(el("p", { class: "error" }, "Not found."));
  } catch (e) {
    app.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

window.addEventListener("resize", () => charts.forEach((c) => c.resize()));

(async () => {
  setTheme(localStorage.getItem("affluent-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  await loadSession();
  applyProjectTheme();
  document.documentElement.lang = locale();
  header();
  await route();
})();
