// thingport web console: plain DOM, no dependencies, no build step.
// Every string from the API reaches the page through textContent / createTextNode / setAttribute,
// never through innerHTML.
"use strict";

(() => {
  const KEY_STORAGE = "thingport.apiKey";
  const API_ROOT = new URL("../", location.href.split("#")[0]); // the console lives at <root>/console/
  const REFRESH_MS = 2000;
  const DEVICE_EVENTS = 20;
  const DEVICE_PAGE = 20;
  const MESSAGE_PAGE = 25;
  const DEVICE_MESSAGES = 15;
  const MAX_MODEL_FILE = 5 * 1024 * 1024;
  const MAX_IMPORT_FILE = 64 * 1024 * 1024; // the API's import body cap (api_import_max_body_bytes)

  const state = { key: null, generation: 0, timers: [], refreshError: false };

  // ---------- DOM helpers ----------

  const $ = (id) => document.getElementById(id);

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.setAttribute("class", v);
      else if (k === "testid") el.setAttribute("data-testid", v);
      else if (k === "value" || k === "checked" || k === "disabled" || k === "selected") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    return el;
  }

  function h(tag, attrs, ...children) {
    return append(setAttrs(document.createElement(tag), attrs), children);
  }

  const enc = encodeURIComponent;
  const deviceHref = (pk, dn) => `#/device/${enc(pk)}/${enc(dn)}`;

  function pad(n, w = 2) { return String(n).padStart(w, "0"); }

  function formatTime(ms) {
    if (ms === null || ms === undefined) return "never";
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return String(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function formatAgo(ms) {
    if (ms === null || ms === undefined) return "";
    const sec = Math.round((Date.now() - ms) / 1000);
    if (sec < 0) return "";
    if (sec < 60) return `${sec} s ago`;
    if (sec < 3600) return `${Math.floor(sec / 60)} min ago`;
    if (sec < 86400) return `${Math.floor(sec / 3600)} h ago`;
    return `${Math.floor(sec / 86400)} d ago`;
  }

  function timeCell(ms) {
    return h("span", { title: ms === null || ms === undefined ? "" : new Date(ms).toISOString() },
      formatTime(ms), ms ? h("span", { class: "muted ago" }, " ", formatAgo(ms)) : null);
  }

  function formatValue(v) {
    if (typeof v === "string") return v;
    if (v === null || v === undefined) return "—";
    return JSON.stringify(v);
  }

  function formatNumber(v) {
    if (!Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(Math.round(v * 1000) / 1000);
  }

  function statusDot(stateName) {
    const online = stateName === "online";
    return h("span", { class: `dot ${online ? "online" : "offline"}`, testid: "status-dot",
      "data-state": online ? "online" : "offline", role: "img", "aria-label": online ? "online" : "offline",
      title: online ? "online" : "offline" });
  }

  function table(columns, rows, attrs) {
    return h("table", attrs || {},
      h("thead", {}, h("tr", {}, columns.map((c) => (Array.isArray(c)
        ? h("th", { scope: "col", class: c[1] }, c[0]) : h("th", { scope: "col" }, c))))),
      h("tbody", {}, rows));
  }

  function emptyRow(span, text) {
    return h("tr", { class: "empty" }, h("td", { colspan: span, class: "muted" }, text));
  }

  // ---------- messages to the user ----------

  function showError(context, err) {
    if (err && err.handled) return;
    const message = err instanceof Error ? err.message : String(err);
    $("banner-text").textContent = context ? `${context}: ${message}` : message;
    $("banner").hidden = false;
  }

  function clearError() {
    $("banner").hidden = true;
    $("banner-text").textContent = "";
    state.refreshError = false;
  }

  let noticeTimer = null;
  function clearNotice() {
    clearTimeout(noticeTimer);
    $("notice").hidden = true;
  }

  function showNotice(text) {
    const n = $("notice");
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
  }

  // ---------- the API ----------

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  async function api(method, path, { query, body, key } = {}) {
    const url = new URL(path.replace(/^\//, ""), API_ROOT);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
    }
    const headers = { Accept: "application/json" };
    const useKey = key !== undefined ? key : state.key;
    if (useKey) headers.Authorization = `Bearer ${useKey}`;
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new ApiError(0, "network", `cannot reach the thingport API (${e.message})`);
    }
    const text = await res.text();
    let doc = null;
    if (text) {
      try { doc = JSON.parse(text); } catch { doc = null; }
    }
    if (!res.ok) {
      const e = doc && typeof doc === "object" ? doc.error : null;
      const message = e && e.message ? e.message : `the server answered ${res.status} ${res.statusText}`.trim();
      const err = new ApiError(res.status, (e && e.code) || "http", message, (e && e.field) || null);
      if (res.status === 401 && key === undefined && state.key) {
        signOut(`Signed out: ${message}`);
        err.handled = true; // the sign-in page already says why
      }
      throw err;
    }
    return doc;
  }

  // ---------- session ----------

  function showSignedIn() {
    $("signin").hidden = true;
    $("view").hidden = false;
    $("nav").hidden = false;
    $("session").hidden = false;
    $("session-key").textContent = `key ${state.key.slice(0, 10)}…`;
    api("GET", "/api/apikeys").then(
      () => { $("session-key").textContent = `admin key ${state.key.slice(0, 10)}…`; },
      (e) => { if (e.status === 403) $("session-key").textContent = `read-only key ${state.key.slice(0, 10)}…`; },
    );
  }

  function showSignedOut() {
    stopTimers();
    state.generation += 1;
    $("view").replaceChildren();
    $("view").hidden = true;
    $("nav").hidden = true;
    $("session").hidden = true;
    $("signin").hidden = false;
    $("signin-key").value = "";
    $("signin-key").focus();
  }

  function signOut(message) {
    state.key = null;
    try { sessionStorage.removeItem(KEY_STORAGE); } catch { /* storage may be disabled */ }
    showSignedOut();
    if (message) showError("", message); else clearError();
  }

  async function signIn(ev) {
    ev.preventDefault();
    const key = $("signin-key").value.trim();
    if (!key) { showError("Sign-in failed", "enter an API key"); return; }
    const button = $("signin-submit");
    button.disabled = true;
    try {
      await api("GET", "/api/products", { key });
    } catch (e) {
      showError("Sign-in failed", e);
      $("signin-key").select();
      return;
    } finally {
      button.disabled = false;
    }
    state.key = key;
    try { sessionStorage.setItem(KEY_STORAGE, key); } catch { /* storage may be disabled */ }
    clearError();
    showSignedIn();
    if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/devices";
    else route();
  }

  // ---------- routing ----------

  function stopTimers() {
    for (const t of state.timers) clearTimeout(t);
    state.timers = [];
  }

  function makeContext() {
    const generation = ++state.generation;
    const alive = () => generation === state.generation && state.key !== null;
    return {
      alive,
      // run fn every ms after the previous run ends (no overlap); paused while the tab is hidden
      every(ms, fn) {
        const tick = async () => {
          if (!alive()) return;
          if (!document.hidden) {
            try {
              await fn();
              if (state.refreshError && alive()) clearError();
            } catch (e) {
              if (alive()) { showError("Refresh failed", e); state.refreshError = true; }
            }
          }
          if (alive()) state.timers.push(setTimeout(tick, ms));
        };
        state.timers.push(setTimeout(tick, ms));
      },
    };
  }

  const ROUTES = [
    [/^products$/, "products", renderProducts],
    [/^devices$/, "devices", renderDevices],
    [/^device\/([^/]+)\/([^/]+)$/, "devices", renderDevice],
    [/^messages$/, "messages", renderMessages],
    [/^subscriptions$/, "subscriptions", renderSubscriptions],
    [/^rules$/, "rules", renderRules],
    [/^alarms$/, "alarms", renderAlarms],
    [/^create$/, "create", renderCreate],
  ];

  async function route() {
    if (!state.key) return;
    stopTimers();
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, search] = raw.split("?", 2);
    const query = new URLSearchParams(search || "");
    let match = null;
    let entry = null;
    for (const r of ROUTES) {
      match = r[0].exec(path);
      if (match) { entry = r; break; }
    }
    if (!entry) { location.replace("#/devices"); return; }
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.route === entry[1]);
    }
    clearError(); // a message belongs to the page it came from
    clearNotice();
    const ctx = makeContext();
    const view = $("view");
    view.replaceChildren();
    view.setAttribute("data-page", entry[1]);
    let params;
    try {
      params = match.slice(1).map(decodeURIComponent);
    } catch {
      showError("Bad address", "the page address is not valid");
      return;
    }
    try {
      await entry[2](view, query, ctx, ...params);
    } catch (e) {
      if (!ctx.alive()) return;
      showError("Could not load the page", e);
      view.append(h("p", { class: "muted", testid: "load-failed" }, `This page could not be loaded: ${e.message}`));
    }
  }

  // ---------- thing models ----------

  // A uniform list of property rows from {format, model}: service, identifier, name, type, specs, access, unit.
  function modelProperties(doc) {
    if (!doc || !doc.model || typeof doc.model !== "object") return [];
    const m = doc.model;
    if (doc.format === "huawei") {
      const services = Array.isArray(m.services) ? m.services
        : Array.isArray(m.service_capabilities) ? m.service_capabilities : [];
      const rows = [];
      for (const svc of services) {
        for (const p of (svc && Array.isArray(svc.properties)) ? svc.properties : []) {
          rows.push({
            service: svc.service_id,
            identifier: p.property_name,
            name: p.description || "",
            type: p.data_type,
            specs: huaweiSpecs(p),
            access: p.method || "",
            unit: p.unit || "",
          });
        }
      }
      return rows;
    }
    const prefix = m.functionBlockId ? `${m.functionBlockId}:` : "";
    return (Array.isArray(m.properties) ? m.properties : []).map((p) => ({
      service: null,
      identifier: prefix + p.identifier,
      name: p.name || "",
      type: p.dataType ? p.dataType.type : "",
      specs: tslSpecs(p.dataType),
      specsMap: p.dataType ? p.dataType.specs : null,
      access: p.accessMode || "",
      unit: p.dataType && p.dataType.specs && !Array.isArray(p.dataType.specs)
        ? (p.dataType.specs.unit || "") : "",
    }));
  }

  function rangeText(min, max, step, unit) {
    const parts = [];
    if (min !== undefined || max !== undefined) parts.push(`${min ?? "…"} .. ${max ?? "…"}`);
    if (step !== undefined && step !== "") parts.push(`step ${step}`);
    if (unit) parts.push(`unit ${unit}`);
    return parts.join(", ");
  }

  function tslSpecs(dt) {
    if (!dt || typeof dt !== "object") return "";
    const sp = dt.specs;
    switch (dt.type) {
      case "int": case "float": case "double":
        return sp ? rangeText(sp.min, sp.max, sp.step, sp.unitName || sp.unit) : "";
      case "bool": case "enum":
        return sp && typeof sp === "object"
          ? Object.entries(sp).map(([k, v]) => `${k} = ${formatValue(v)}`).join(", ") : "";
      case "text":
        return sp && sp.length !== undefined ? `up to ${sp.length} bytes` : "";
      case "date":
        return "UTC milliseconds";
      case "struct":
        return Array.isArray(sp) ? `members: ${sp.map((x) => `${x.identifier} (${x.dataType ? x.dataType.type : "?"})`).join(", ")}` : "";
      case "array":
        return sp ? `up to ${sp.size ?? "?"} × ${sp.item ? sp.item.type : "?"}` : "";
      default:
        return sp ? JSON.stringify(sp) : "";
    }
  }

  function huaweiSpecs(p) {
    const t = String(p.data_type || "").toLowerCase();
    if (t === "int" || t === "long" || t === "decimal") return rangeText(p.min, p.max, p.step, p.unit);
    if (t === "string" || t === "string list") return p.max_length !== undefined ? `up to ${p.max_length} characters` : "";
    if (t === "enum") return Array.isArray(p.enum_list) ? `one of ${p.enum_list.join(", ")}` : "";
    return "";
  }

  function modelTable(doc, pk) {
    if (doc.format === "schemaless") {
      return h("p", { class: "muted" }, "No thing model: the product accepts any properties.");
    }
    const rows = [];
    let lastService;
    const props = modelProperties(doc);
    for (const p of props) {
      if (p.service !== null && p.service !== lastService) {
        lastService = p.service;
        rows.push(h("tr", { class: "group" }, h("th", { colspan: 5, scope: "colgroup" }, `service ${p.service}`)));
      }
      rows.push(h("tr", { testid: "model-property", "data-identifier": p.identifier },
        h("td", {}, h("code", {}, p.identifier)), h("td", {}, p.name), h("td", {}, p.type),
        h("td", {}, p.specs), h("td", {}, p.access)));
    }
    if (!props.length) rows.push(emptyRow(5, "The model defines no properties."));
    const extras = eventsAndServices(doc, pk);
    return h("div", { class: "model", testid: `model-${pk}` },
      h("p", { class: "muted small" }, `Format: ${doc.format === "huawei" ? "Huawei IoTDA product model" : "Alibaba TSL"}`),
      table(["Identifier", "Name", "Type", "Range / specs", "Access"], rows, { class: "compact", testid: "model-table" }),
      extras);
  }

  async function loadModel(pk) {
    try {
      return await api("GET", `/api/products/${enc(pk)}/thing-model`);
    } catch (e) {
      if (e.status === 404 && e.code === "not_found" && /thing model/.test(e.message)) return null;
      throw e;
    }
  }

  // ---------- products ----------

  async function renderProducts(view, query, ctx) {
    view.append(h("div", { class: "page-head" }, h("h1", {}, "Products"),
      h("a", { class: "button", href: "#/create" }, "Create product")));
    const products = await api("GET", "/api/products");
    if (!ctx.alive()) return;
    const rows = [];
    const open = query.get("model");
    const toggles = [];
    for (const p of products) {
      const detail = h("tr", { class: "detail", hidden: true },
        h("td", { colspan: 8 }, h("div", { class: "muted" }, "Loading…")));
      let loaded = false;
      const button = h("button", { type: "button", class: "secondary small", testid: `model-toggle-${p.productKey}`,
        "aria-expanded": "false", disabled: !p.modelVersion }, p.modelVersion ? "Show model" : "No model");
      const toggle = async () => {
        const show = detail.hidden;
        detail.hidden = !show;
        button.textContent = show ? "Hide model" : "Show model";
        button.setAttribute("aria-expanded", String(show));
        if (!show || loaded) return;
        loaded = true;
        try {
          const doc = await loadModel(p.productKey);
          detail.firstChild.replaceChildren(doc ? modelTable(doc, p.productKey)
            : h("p", { class: "muted" }, "This product has no thing model: it accepts any properties."));
        } catch (e) {
          loaded = false;
          detail.firstChild.replaceChildren(h("p", { class: "muted" }, `The model could not be loaded: ${e.message}`));
          showError(`Could not load the thing model of ${p.productKey}`, e);
        }
      };
      button.addEventListener("click", toggle);
      if (p.modelVersion && open === p.productKey) toggles.push(toggle);
      rows.push(h("tr", { testid: "product-row", "data-product-key": p.productKey },
        h("td", {}, h("code", {}, p.productKey)),
        h("td", {}, p.name),
        h("td", {}, p.nodeType),
        h("td", {}, p.modelVersion ? h("code", { class: "small" }, p.modelVersion) : h("span", { class: "muted" }, "none")),
        h("td", {}, p.validation),
        deviceCounts(p),
        h("td", {}, h("a", { href: `#/devices?productKey=${enc(p.productKey)}` }, "devices")),
        h("td", { class: "actions" }, button, " ", deleteProductButton(p))), detail);
    }
    if (!products.length) rows.push(emptyRow(8, "No products yet. Create one on the Create page."));
    view.append(h("div", { class: "card flush" },
      table(["productKey", "Name", "Node type", "Model version", "Validation", "Devices", "", "Thing model"], rows,
        { testid: "products-table" })));
    for (const t of toggles) t();
  }

  // a product's devices counted: total, online (links to them), disabled
  function deviceCounts(p) {
    const c = p.devices || { total: 0, online: 0, disabled: 0 };
    const list = (q) => `#/devices?productKey=${enc(p.productKey)}${q}`;
    return h("td", { testid: "product-counts", "data-total": c.total, "data-online": c.online,
      "data-disabled": c.disabled, class: "small" },
    h("a", { href: list(""), testid: "count-total" }, `${c.total} total`), " · ",
    h("a", { href: list("&online=true"), testid: "count-online" }, h("span", { class: "dot online" }), ` ${c.online} online`),
    c.disabled ? [" · ", h("a", { href: list("&status=disabled"), testid: "count-disabled" }, `${c.disabled} disabled`)] : null);
  }

  // ---------- devices ----------

  async function productOptions(select, selected, anyLabel) {
    const products = await api("GET", "/api/products");
    select.replaceChildren();
    if (anyLabel) select.append(h("option", { value: "" }, anyLabel));
    for (const p of products) {
      select.append(h("option", { value: p.productKey, selected: p.productKey === selected },
        `${p.name} (${p.productKey})`));
    }
    return products;
  }

  async function renderDevices(view, query, ctx) {
    const pk = query.get("productKey") || "";
    const prefix = query.get("namePrefix") || "";
    const status = query.get("status") || "";
    const online = query.get("online") || "";
    const after = query.get("after") || "";
    const trail = (query.get("trail") || "").split(",").filter(Boolean); // cursors of the earlier pages

    const productSelect = h("select", { id: "devices-product", testid: "devices-product", name: "productKey" },
      h("option", { value: "" }, "all products"));
    const prefixInput = h("input", { id: "devices-prefix", testid: "devices-prefix", name: "namePrefix",
      value: prefix, placeholder: "name starts with…", maxlength: 32, spellcheck: "false" });
    const statusSelect = h("select", { id: "devices-status", testid: "devices-status", name: "status" },
      h("option", { value: "" }, "enabled and disabled"),
      h("option", { value: "enabled", selected: status === "enabled" }, "enabled only"),
      h("option", { value: "disabled", selected: status === "disabled" }, "disabled only"));
    const onlineSelect = h("select", { id: "devices-online", testid: "devices-online", name: "online" },
      h("option", { value: "" }, "online and offline"),
      h("option", { value: "true", selected: online === "true" }, "online only"),
      h("option", { value: "false", selected: online === "false" }, "offline only"));
    const form = h("form", { class: "filters", testid: "devices-filter", autocomplete: "off",
      onsubmit: (ev) => {
        ev.preventDefault();
        const q = new URLSearchParams();
        if (productSelect.value) q.set("productKey", productSelect.value);
        if (prefixInput.value.trim()) q.set("namePrefix", prefixInput.value.trim());
        if (statusSelect.value) q.set("status", statusSelect.value);
        if (onlineSelect.value) q.set("online", onlineSelect.value);
        navigate("devices", q);
      } },
    h("label", {}, "Product ", productSelect), h("label", {}, "Name ", prefixInput),
    h("label", {}, "Status ", statusSelect), h("label", {}, "Presence ", onlineSelect),
    h("button", { type: "submit", testid: "devices-search" }, "Search"));
    view.append(h("div", { class: "page-head" }, h("h1", {}, "Devices"),
      h("a", { class: "button", href: "#/create" }, "Create device")), form);
    if (pk) view.append(bulkPanel(pk, ctx));

    const [, page] = await Promise.all([
      productOptions(productSelect, pk, "all products"),
      api("GET", "/api/devices", { query: { productKey: pk, namePrefix: prefix, status, online, after, limit: DEVICE_PAGE } }),
    ]);
    if (!ctx.alive()) return;

    // presence comes with the listing (as each device's status says it): a disabled device is never online
    const body = page.items.map((d) => h("tr", { testid: "device-row", "data-device-name": d.deviceName,
      "data-product-key": d.productKey },
    h("td", { class: "dotcell" }, statusDot(d.online && d.status === "enabled" ? "online" : "offline")),
    h("td", {}, h("a", { href: deviceHref(d.productKey, d.deviceName), testid: "device-link" }, d.deviceName)),
    h("td", {}, h("code", {}, d.productKey)),
    h("td", { class: "small" }, d.deviceId),
    h("td", {}, h("span", { class: `badge ${d.status}`, testid: "device-status" }, d.status)),
    h("td", { testid: "last-seen" }, d.lastSeenAt ? timeCell(d.lastSeenAt) : h("span", { class: "muted" }, "never"))));
    // a page reads a bounded stretch of devices: with a filter few match it may be empty yet have a next
    if (!body.length) body.push(emptyRow(6, page.next ? "None of the devices looked at here match: Next → looks further."
      : "No devices match."));
    const nav = h("div", { class: "pager" });
    if (after) {
      const prev = new URLSearchParams(query);
      const back = trail.slice(0, -1);
      const prevAfter = trail[trail.length - 1];
      if (prevAfter && prevAfter !== "0") prev.set("after", prevAfter); else prev.delete("after");
      if (back.length) prev.set("trail", back.join(",")); else prev.delete("trail");
      nav.append(h("a", { class: "button secondary", href: hashFor("devices", prev), testid: "devices-prev" }, "← Previous"));
    }
    if (page.next) {
      const next = new URLSearchParams(query);
      next.set("after", page.next);
      next.set("trail", [...trail, after || "0"].join(","));
      nav.append(h("a", { class: "button secondary", href: hashFor("devices", next), testid: "devices-next" }, "Next →"));
    }
    view.append(h("div", { class: "card flush" },
      table(["", "Device name", "productKey", "deviceId", "Enabled", "Last seen"], body, { testid: "devices-table" })),
    nav);
  }

  // ---------- fleet lifecycle: bulk import and export of a product's devices, product delete ----------

  let lastImport = null; // the report of an import that succeeded, for the devices page drawn after it

  // a request whose body or answer is a device file, not JSON; an import's 422 carries its report
  async function apiFile(method, path, { query, body, type } = {}) {
    const url = new URL(path.replace(/^\//, ""), API_ROOT);
    for (const [k, v] of Object.entries(query || {})) url.searchParams.set(k, String(v));
    const headers = { Authorization: `Bearer ${state.key}` };
    if (type) headers["Content-Type"] = type;
    let res;
    try {
      res = await fetch(url, { method, headers, body, cache: "no-store", credentials: "omit" });
    } catch (e) {
      throw new ApiError(0, "network", `cannot reach the thingport API (${e.message})`);
    }
    if (res.ok && method === "GET") return { status: res.status, blob: await res.blob() };
    let doc = null;
    try { doc = JSON.parse(await res.text()); } catch { doc = null; }
    if (res.ok) return { status: res.status, doc };
    if (res.status === 422 && doc && doc.report) return { status: res.status, doc: doc.report, error: doc.error };
    const e = doc && typeof doc === "object" ? doc.error : null;
    const err = new ApiError(res.status, (e && e.code) || "http",
      e && e.message ? e.message : `the server answered ${res.status}`, (e && e.field) || null);
    if (res.status === 401) { signOut(`Signed out: ${err.message}`); err.handled = true; }
    throw err;
  }

  function download(name, blob) {
    const a = h("a", { href: URL.createObjectURL(blob), download: name, hidden: true });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function csvField(v) {
    const t = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  }

  function importReport(pk, doc, error) {
    const imported = doc.dryRun
      ? `Checked ${doc.rows} rows: ${doc.rows - doc.refused} would be imported`
      : `Imported ${doc.imported} of ${doc.rows} devices into ${pk}`;
    const summary = error ? `${error.message}.` : `${imported}${doc.refused ? `, ${doc.refused} rows skipped` : ""}.`;
    const parts = [h("p", { testid: "import-summary", class: error ? "bad" : "" }, summary)];
    if (doc.devices && doc.devices.length) {
      const lines = ["productKey,deviceName,deviceId,deviceSecret",
        ...doc.devices.map((d) => [pk, d.deviceName, d.deviceId, d.deviceSecret].map(csvField).join(","))];
      const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
      parts.push(h("p", {}, h("button", { type: "button", class: "secondary small", testid: "import-secrets",
        onclick: () => download(`${pk}-imported-secrets.csv`, blob) }, "Download the devices with their secrets"),
      " ", h("span", { class: "muted small" },
        `${doc.generatedSecrets} generated: this is the one time they are shown (an export with secrets shows them again).`)));
    }
    if (doc.refusals.length) {
      parts.push(table(["Line", "Device name", "Refused", "Why"], doc.refusals.map((r) =>
        h("tr", { testid: "refusal-row" }, h("td", {}, String(r.line)), h("td", {}, r.deviceName || "–"),
          h("td", {}, h("code", {}, r.code)), h("td", {}, r.reason))), { testid: "refusals-table" }));
    }
    return parts;
  }

  function bulkPanel(pk, ctx) {
    const file = h("input", { type: "file", id: "import-file", testid: "import-file",
      accept: ".csv,.jsonl,.ndjson,.json,text/csv,application/x-ndjson" });
    const skip = h("input", { type: "checkbox", id: "import-skip", testid: "import-skip" });
    const dry = h("input", { type: "checkbox", id: "import-dry", testid: "import-dry" });
    const result = h("div", { class: "result", testid: "import-result", hidden: true });
    const showResult = (parts, error) => {
      result.replaceChildren(...parts);
      result.className = error ? "result refused" : "result";
      result.hidden = false;
    };
    const form = h("form", { class: "filters", testid: "import-form", autocomplete: "off" },
      h("label", {}, "Import devices ", file),
      h("label", { class: "check" }, skip, " import the valid rows, skip the refused"),
      h("label", { class: "check" }, dry, " only check"),
      h("button", { type: "submit", testid: "import-submit" }, "Import"));
    form.addEventListener("submit", submitting(form, async () => {
      clearError();
      const f = file.files && file.files[0];
      if (!f) { showError("Import", "choose a CSV (deviceName,deviceSecret) or JSON lines file"); return; }
      if (f.size > MAX_IMPORT_FILE) { showError("Import", `${f.name} is larger than 64 MB: split it`); return; }
      const format = /\.csv$/i.test(f.name) ? "csv" : "jsonl";
      try {
        const answer = await apiFile("POST", `/api/products/${enc(pk)}/devices/import`, {
          query: { format, skipInvalid: skip.checked, dryRun: dry.checked }, body: await f.text(),
          type: format === "csv" ? "text/csv" : "application/x-ndjson" });
        if (!ctx.alive()) return;
        const parts = importReport(pk, answer.doc, answer.error);
        if (!answer.error && answer.doc.imported) {
          showNotice(`Imported ${answer.doc.imported} devices.`);
          lastImport = { pk, parts }; // shown again by the page redrawn with the new devices
          route();
          return;
        }
        showResult(parts, answer.error);
      } catch (e) {
        showError("Import failed", e);
      }
    }));
    const secrets = h("input", { type: "checkbox", id: "export-secrets", testid: "export-secrets" });
    const exportAs = (format) => async () => {
      clearError();
      try {
        const answer = await apiFile("GET", `/api/products/${enc(pk)}/devices/export`,
          { query: { format, withSecrets: secrets.checked } });
        download(`${pk}-devices.${format}`, answer.blob);
      } catch (e) {
        showError("Export failed", e);
      }
    };
    const exports = h("div", { class: "filters" },
      h("button", { type: "button", class: "secondary", testid: "export-csv", onclick: exportAs("csv") }, "Export CSV"),
      h("button", { type: "button", class: "secondary", testid: "export-jsonl", onclick: exportAs("jsonl") },
        "Export JSON lines"),
      h("label", { class: "check" }, secrets, " with secrets (admin keys)"));
    const panel = h("details", { class: "card", testid: "bulk-panel" },
      h("summary", {}, `Import and export ${pk}'s devices`),
      h("p", { class: "muted small" }, "CSV with a header (deviceName,deviceSecret; an empty secret is generated) or ",
        "JSON lines. All or nothing: if any row is refused, none is imported and every refused row is listed."),
      form, result, exports);
    if (lastImport && lastImport.pk === pk) {
      showResult(lastImport.parts, null);
      panel.open = true;
    }
    lastImport = null;
    return panel;
  }

  function deleteProductButton(p) {
    return h("button", { type: "button", class: "secondary small danger", testid: `delete-product-${p.productKey}`,
      onclick: async () => {
        if (!window.confirm(`Delete product ${p.productKey} (${p.name}) and its thing model?`)) return;
        clearError();
        try {
          let done;
          try {
            done = await api("DELETE", `/api/products/${enc(p.productKey)}`);
          } catch (e) {
            if (e.status !== 409) throw e;
            if (!window.confirm(`${e.message}.\n\nDelete the product with all its devices (their status and history) ` +
              "and subscriptions?")) return;
            done = await api("DELETE", `/api/products/${enc(p.productKey)}`, { query: { force: "true" } });
          }
          showNotice(`Deleted product ${p.productKey}` +
            (done.devicesDeleted ? ` with ${done.devicesDeleted} devices` : "") +
            (done.subscriptionsDeleted ? ` and ${done.subscriptionsDeleted} subscriptions` : "") + ".");
          route();
        } catch (e) {
          showError(`Could not delete ${p.productKey}`, e);
        }
      } }, "Delete");
  }

  function hashFor(page, q) {
    const text = q.toString();
    return `#/${page}${text ? `?${text}` : ""}`;
  }

  function navigate(page, q) {
    const target = hashFor(page, q);
    if (location.hash === target) route(); else location.hash = target;
  }

  // ---------- one device ----------

  // ---------- one device: charts of property history (uPlot, vendored in vendor/) ----------

  const CHART_BUCKETS = 240; // slices a chart asks the server for: about one per 2-4 px of a chart's width
  const RANGES = { hour: 3600e3, day: 86400e3 };

  // the (label, ms) of a relative range, or a custom [from, to] from the inputs
  function chartWindow(range) {
    if (range.kind === "custom") return { from: range.from, to: range.to };
    const to = Date.now();
    return { from: to - RANGES[range.kind], to };
  }

  // Points oldest first -> uPlot's [xs, ys] with a null wherever the device was silent for longer than
  // usual (3 × the median spacing, and more than 2 slices): uPlot leaves a gap at a null, so a period
  // without data never reads as a line drawn across it.
  function withGaps(points, sliceMs) {
    const xs = [];
    const ys = [];
    const steps = [];
    for (let i = 1; i < points.length; i++) steps.push(points[i].time - points[i - 1].time);
    const sorted = [...steps].sort((a, b) => a - b);
    const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    const limit = Math.max(3 * median, 2 * sliceMs);
    let gaps = 0;
    points.forEach((p, i) => {
      if (i > 0 && steps[i - 1] > limit) {
        xs.push(points[i - 1].time + 1);
        ys.push(null);
        gaps += 1;
      }
      xs.push(p.time);
      ys.push(p.y);
    });
    return { data: [xs, ys], gaps };
  }

  // the chart kind of a property: "step" (bool, enum: the newest value of each slice, with the model's
  // labels on the axis) or "line" (numbers: each slice's mean)
  function chartKind(p) {
    const t = String((p && p.type) || "").toLowerCase();
    return t === "bool" || t === "enum" ? "step" : "line";
  }

  function labelsOf(p) {
    // TSL bool/enum specs: {"0": "off", "1": "on"}; a Huawei enum has no labels (its values are text)
    if (!p || !p.specsMap || typeof p.specsMap !== "object" || Array.isArray(p.specsMap)) return null;
    const entries = Object.entries(p.specsMap).filter(([k]) => /^-?\d+$/.test(k));
    return entries.length ? new Map(entries.map(([k, v]) => [Number(k), String(v)])) : null;
  }

  // uPlot's options; ``shown(texts)`` hears the y axis's tick texts (drawn on a canvas, so not in the page)
  function chartOptions(width, kind, unit, labels, shown, span) {
    const axisY = { label: unit || undefined, size: labels ? 70 : 56, labelSize: 18,
      values: (u, ticks) => {
        const texts = ticks.map((v) => (labels ? (labels.get(v) ?? "") : formatNumber(v)));
        shown(texts);
        return texts;
      } };
    if (labels) {
      const keys = [...labels.keys()].sort((a, b) => a - b);
      axisY.splits = () => keys;
    }
    return {
      width, height: 190, ms: 1, legend: { show: false }, cursor: { drag: { x: false, y: false } },
      // the x axis is the whole chosen range: silence at either end shows as empty space too
      scales: { x: { time: true, range: () => { const w = span(); return [w.from, w.to]; } }, y: labels ? { range: (u, lo, hi) => {
        const keys = [...labels.keys()];
        return [Math.min(...keys, lo ?? 0) - 0.3, Math.max(...keys, hi ?? 0) + 0.3];
      } } : { auto: true } },
      axes: [{ size: 30, space: 70, values: (u, ticks) => {
        const span = ticks.length > 1 ? ticks[ticks.length - 1] - ticks[0] : 0;
        return ticks.map((ms) => {
          const text = formatTime(ms); // "YYYY-MM-DD HH:MM:SS", local time as elsewhere in the console
          return span > 2 * 86400e3 ? text.slice(5, 10) : span > 86400e3 / 2 ? text.slice(5, 16) : text.slice(11, 16);
        });
      } }, axisY],
      series: [{}, { stroke: "#1f5fbf", width: 2, spanGaps: false, points: { size: 4 },
        paths: kind === "step" ? uPlot.paths.stepped({ align: 1 }) : undefined }],
    };
  }

  // one chart per property: figure, uPlot instance, what it shows; redrawn in place on each refresh
  function makeChart(id, title, p, onCsv) {
    const kind = chartKind(p);
    const unit = (p && p.unit) || "";
    const labels = kind === "step" ? labelsOf(p) : null;
    const plotBox = h("div", { class: "chart-plot", testid: `chart-plot-${id}` });
    const latest = h("span", { class: "chart-latest", testid: `chart-latest-${id}` });
    const csv = h("button", { type: "button", class: "secondary small", testid: `csv-${id}`,
      title: "every value of the chosen range as CSV", onclick: onCsv }, "CSV");
    const note = h("div", { class: "muted small chart-note", testid: `chart-note-${id}` });
    const fig = h("figure", { class: "chart", testid: `chart-${id}`, "data-property": id, "data-kind": kind,
      "data-unit": unit }, h("figcaption", {}, h("span", {}, title), h("span", { class: "chart-tools" }, latest, csv)),
    plotBox, note);
    return { id, fig, plotBox, latest, note, kind, unit, labels, plot: null };
  }

  function drawChart(c, items, span, sliceMs, latestValue) {
    // items: the history API's slices, newest first; span: {from, to} the chart's x axis covers
    c.span = span;
    const points = items.slice().reverse().map((it) => ({ time: it.time,
      y: c.kind === "line" && it.bucket && it.bucket.avg !== null ? it.bucket.avg
        : (typeof it.value === "boolean" ? Number(it.value) : (typeof it.value === "number" ? it.value : null)) }))
      .filter((p) => p.y !== null);
    const { data, gaps } = withGaps(points, sliceMs);
    const values = items.reduce((n, it) => n + (it.bucket ? it.bucket.count : 1), 0);
    c.fig.setAttribute("data-points", String(points.length));
    c.fig.setAttribute("data-gaps", String(gaps));
    c.fig.setAttribute("data-values", String(values));
    const shown = (v) => (c.labels && c.labels.has(Number(v)) ? `${formatValue(v)} (${c.labels.get(Number(v))})`
      : `${typeof v === "number" ? formatNumber(v) : formatValue(v)}${c.unit ? ` ${c.unit}` : ""}`);
    c.latest.textContent = latestValue === undefined ? "" : shown(latestValue);
    c.note.textContent = points.length
      ? `${values} value${values === 1 ? "" : "s"} in ${points.length} point${points.length === 1 ? "" : "s"}` +
        (c.kind === "line" ? " (the mean of each slice)" : " (the newest value of each slice)") +
        (gaps ? `; ${gaps} gap${gaps === 1 ? "" : "s"} without data` : "")
      : "no values in this range";
    const width = Math.max(200, Math.floor(c.plotBox.clientWidth || 400));
    if (!c.plot) {
      c.plot = new uPlot(chartOptions(width, c.kind, c.unit, c.labels,
        (texts) => c.fig.setAttribute("data-y-ticks", texts.join("|")), () => c.span), data, c.plotBox);
    } else {
      if (Math.abs(c.plot.width - width) > 2) c.plot.setSize({ width, height: 190 });
      c.plot.setData(data);
    }
  }

  function toLocalInput(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  // last hour / last day / custom from-to; calls onChange(range) when the chosen range changes
  function rangePicker(onChange) {
    const select = h("select", { id: "chart-range", testid: "chart-range" },
      h("option", { value: "hour" }, "last hour"), h("option", { value: "day" }, "last day"),
      h("option", { value: "custom" }, "custom…"));
    const from = h("input", { type: "datetime-local", id: "chart-from", testid: "chart-from" });
    const to = h("input", { type: "datetime-local", id: "chart-to", testid: "chart-to" });
    const apply = h("button", { type: "submit", testid: "chart-apply" }, "Show");
    const custom = h("span", { class: "range-custom", hidden: true },
      h("label", {}, "From ", from), h("label", {}, "To ", to), apply);
    const form = h("form", { class: "filters range", testid: "chart-range-form", autocomplete: "off" },
      h("label", {}, "Range ", select), custom);
    select.addEventListener("change", () => {
      custom.hidden = select.value !== "custom";
      if (select.value === "custom") {
        if (!from.value) from.value = toLocalInput(Date.now() - RANGES.day);
        if (!to.value) to.value = toLocalInput(Date.now());
        return;
      }
      onChange({ kind: select.value });
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const a = new Date(from.value).getTime();
      const b = new Date(to.value).getTime();
      if (!Number.isFinite(a) || !Number.isFinite(b)) { showError("Range", "give both times"); return; }
      if (a >= b) { showError("Range", "the range's start must be before its end"); return; }
      clearError();
      onChange({ kind: "custom", from: a, to: b + 59999 }); // to the end of the chosen minute
    });
    return form;
  }

  async function renderDevice(view, query, ctx, pk, dn) {
    const base = `/api/devices/${enc(pk)}/${enc(dn)}`;
    let device;
    let model;
    [device, model] = await Promise.all([api("GET", base), loadModel(pk).catch(() => null)]);
    if (!ctx.alive()) return;
    const props = new Map(modelProperties(model).map((p) => [p.identifier, p]));

    // header
    const headDot = h("span", {}, statusDot("offline"));
    const headState = h("span", { testid: "device-state", class: "muted" }, "…");
    const enabledBadge = h("span", { testid: "device-enabled", class: `badge ${device.status}` }, device.status);
    view.append(h("div", { class: "page-head" },
      h("h1", {}, headDot, " ", h("span", { testid: "device-name" }, dn)),
      h("div", { class: "head-meta" }, headState, " ", enabledBadge),
      h("a", { class: "button secondary", href: `#/devices?productKey=${enc(pk)}` }, "← Devices")));

    // credentials
    const secretValue = h("code", { id: "device-secret", testid: "device-secret", class: "secret", "data-shown": "false" },
      "••••••••••••••••");
    const secretButton = h("button", { type: "button", class: "secondary small", testid: "show-secret" }, "Show secret");
    let secretShown = false;
    const hideSecret = () => {
      secretShown = false;
      secretValue.textContent = "••••••••••••••••";
      secretValue.setAttribute("data-shown", "false");
      secretButton.textContent = "Show secret";
    };
    const revealSecret = (secret) => {
      secretShown = true;
      secretValue.textContent = secret;
      secretValue.setAttribute("data-shown", "true");
      secretButton.textContent = "Hide secret";
    };
    secretButton.addEventListener("click", async () => {
      if (secretShown) { hideSecret(); return; }
      secretButton.disabled = true;
      try {
        const r = await api("GET", `${base}/secret`);
        if (ctx.alive()) revealSecret(r.deviceSecret);
      } catch (e) {
        showError("Could not show the secret", e);
      } finally {
        secretButton.disabled = false;
      }
    });
    const lastAuth = h("dd", { testid: "cred-lastAuth" }, timeCell(device.lastAuthAt));
    const gateway = device.gateway
      ? h("a", { href: deviceHref(device.gateway.productKey, device.gateway.deviceName) },
        `${device.gateway.productKey} / ${device.gateway.deviceName}`) : null;
    const creds = h("dl", { class: "creds", testid: "credentials" },
      h("dt", {}, "productKey"), h("dd", {}, h("code", { testid: "cred-productKey" }, device.productKey)),
      h("dt", {}, "deviceName"), h("dd", {}, h("code", { testid: "cred-deviceName" }, device.deviceName)),
      h("dt", {}, "deviceId"), h("dd", {}, h("code", { testid: "cred-deviceId" }, device.deviceId)),
      h("dt", {}, "deviceSecret"), h("dd", {}, secretValue, " ", secretButton),
      gateway ? [h("dt", {}, "gateway"), h("dd", {}, gateway)] : null,
      h("dt", {}, "created"), h("dd", {}, timeCell(device.createdAt)),
      h("dt", {}, "last authenticated"), lastAuth);

    // actions
    const setDevice = (d) => {
      device = d;
      enabledBadge.textContent = d.status;
      enabledBadge.setAttribute("class", `badge ${d.status}`);
      enableButton.disabled = d.status === "enabled";
      disableButton.disabled = d.status === "disabled";
    };
    const action = (label, testid, fn) => h("button", { type: "button", class: "secondary", testid,
      onclick: async (ev) => {
        const b = ev.currentTarget;
        b.disabled = true;
        try { await fn(); } catch (e) { showError(`Could not ${label.toLowerCase()}`, e); } finally {
          if (ctx.alive()) setDevice(device);
          if (testid === "reset-secret") b.disabled = false;
        }
      } }, label);
    const enableButton = action("Enable", "enable-device", async () => {
      setDevice(await api("POST", `${base}/enable`));
      showNotice(`${dn} is enabled: it may authenticate again.`);
    });
    const disableButton = action("Disable", "disable-device", async () => {
      setDevice(await api("POST", `${base}/disable`));
      showNotice(`${dn} is disabled: its tokens stop working and it cannot authenticate.`);
    });
    const resetButton = action("Reset secret", "reset-secret", async () => {
      if (!window.confirm(`Reset the secret of ${dn}? The device cannot authenticate with its old secret any more.`)) return;
      const d = await api("POST", `${base}/reset-secret`);
      revealSecret(d.deviceSecret);
      showNotice(`The secret of ${dn} was reset; the new one is shown in the credentials.`);
      const { deviceSecret, ...rest } = d; // keep the secret out of the device record
      setDevice(rest);
    });
    setDevice(device);

    // running status, charts, messages
    const lastSeen = h("span", { testid: "device-last-seen" }, "…");
    const statusBody = h("tbody", {});
    const statusTable = h("table", { testid: "status-table", class: "compact" },
      h("thead", {}, h("tr", {}, ["Property", "Value", "Time"].map((c) => h("th", { scope: "col" }, c)))), statusBody);
    const charts = h("div", { class: "charts", testid: "charts" });
    const chartEls = new Map();
    const msgBox = h("div", { testid: "device-messages" });
    const eventsBox = h("div", { testid: "device-events" });
    const updated = h("span", { class: "muted small", testid: "refreshed-at" });
    let range = { kind: "hour" };
    let shownRange = null; // the range the charts show now (with shownKey: what they were drawn from)
    const picker = rangePicker((r) => {
      range = r;
      shownRange = null;
      refreshCharts(lastStatus).catch((e) => showError("Could not load the charts", e));
    });

    view.append(
      h("div", { class: "grid2" },
        h("section", { class: "card" }, h("h2", {}, "Credentials"), creds,
          h("div", { class: "button-row" }, enableButton, disableButton, resetButton)),
        h("section", { class: "card" }, h("h2", {}, "Running status ", updated),
          h("p", { class: "muted small" }, "Last seen: ", lastSeen), statusTable)),
      h("section", { class: "card" }, h("h2", {}, "Charts"),
        h("p", { class: "muted small" }, "Each numeric, bool and enum property over the chosen range, downsampled by the server ",
          `(${CHART_BUCKETS} slices); a period without data is a gap. CSV: every value of the range.`),
        picker, charts),
      h("section", { class: "card flush-table" }, h("h2", {}, "Events"), eventsBox),
      h("section", { class: "card flush-table" }, h("h2", {}, "Recent messages"), msgBox));

    const label = (id) => {
      const p = props.get(id);
      return p && p.name ? `${id} (${p.name})` : id;
    };
    const unitOf = (id) => (props.get(id) || {}).unit || "";

    const csvOf = (id) => async () => {
      const w = chartWindow(range);
      try {
        const got = await apiFile("GET", `${base}/history.csv`, { query: { property: id, from: Math.max(0, Math.floor(w.from)), to: Math.floor(w.to) } });
        download(`${pk}-${dn}-${id}.csv`, got.blob);
      } catch (e) {
        showError(`Could not export ${id}`, e);
      }
    };
    const chartFor = (id) => {
      let c = chartEls.get(id);
      if (!c) {
        c = makeChart(id, label(id), props.get(id), csvOf(id));
        chartEls.set(id, c);
      }
      return c;
    };

    let lastStatus = null;
    let chartTurn = 0;
    let shownKey = "";
    const refreshCharts = async (st) => {
      if (!st) return;
      const names = Object.keys(st.properties).sort();
      const charted = names.filter((id) => {
        const v = st.properties[id].value;
        return typeof v === "number" || typeof v === "boolean";
      });
      // a chart changes when a value arrives or the window moves by a slice: fetch only then (a day of
      // one-second values costs the database about half a second per chart)
      const asked = range;
      const w = chartWindow(asked);
      const newest = Math.max(0, ...charted.map((id) => st.properties[id].time || 0));
      const moved = asked.kind === "custom" ? 0 : Math.floor(w.to / Math.ceil((w.to - w.from + 1) / CHART_BUCKETS));
      const key = `${asked.kind}|${charted.join(",")}|${newest}|${moved}`;
      if (shownRange === asked && key === shownKey) return;
      const turn = ++chartTurn;
      const from = Math.max(0, Math.floor(w.from));
      const to = Math.floor(w.to);
      const histories = await Promise.all(charted.map((id) => api("GET", `${base}/history`,
        { query: { property: id, from, to, buckets: CHART_BUCKETS } })));
      if (!ctx.alive() || turn !== chartTurn) return; // a newer fetch (another range chosen meanwhile) draws
      const sliceMs = Math.ceil((to - from + 1) / CHART_BUCKETS);
      const figures = charted.map((id) => chartFor(id).fig);
      if (!figures.length) figures.push(h("p", { class: "muted" }, "No numeric, bool or enum property has been reported yet."));
      charts.replaceChildren(...figures); // in the page first: uPlot sizes itself to its box
      charted.forEach((id, i) => drawChart(chartFor(id), histories[i], { from, to }, sliceMs, st.properties[id].value));
      charts.setAttribute("data-range", `${from}-${to}`);
      charts.setAttribute("data-range-kind", asked.kind);
      shownRange = asked;
      shownKey = key;
    };

    const eventsTable = (items) => {
      const rows = items.map((m) => {
        const ev = eventOf(m);
        return h("tr", { testid: "event-row", "data-event": ev.identifier, "data-message-id": m.messageIdText },
          h("td", { class: "nowrap" }, timeCell(ev.time || m.receivedAt)),
          h("td", {}, h("code", {}, ev.identifier), eventName(ev.identifier) ? h("div", { class: "muted small" }, eventName(ev.identifier)) : null),
          h("td", { testid: "event-params" }, ev.params ? paramList(ev.params) : h("pre", { class: "payload" }, m.payload)));
      });
      if (!rows.length) rows.push(emptyRow(3, "No events from this device yet."));
      return table(["Time", "Event", "Parameters"], rows, { testid: "events-table", class: "events" });
    };
    const eventName = (identifier) => {
      const e = modelEvents(model).find((x) => x.identifier === identifier);
      return e && e.name ? e.name : "";
    };

    const refresh = async () => {
      const [d, st, msgs, events] = await Promise.all([
        api("GET", base),
        api("GET", `${base}/status`),
        api("GET", `${base}/messages`, { query: { limit: DEVICE_MESSAGES } }),
        api("GET", "/api/messages", { query: { productKey: pk, deviceName: dn, kind: "event_post", limit: DEVICE_EVENTS } }),
      ]);
      if (!ctx.alive()) return;
      if (d.status !== device.status) setDevice(d); else device = d;
      lastAuth.replaceChildren(timeCell(d.lastAuthAt));
      headDot.replaceChildren(statusDot(st.state));
      headState.textContent = st.state;
      lastSeen.replaceChildren(timeCell(st.lastSeenAt));
      const names = Object.keys(st.properties).sort();
      statusBody.replaceChildren(...(names.length ? names.map((id) => {
        const lv = st.properties[id];
        const unit = unitOf(id);
        const valueLabels = chartKind(props.get(id)) === "step" ? labelsOf(props.get(id)) : null;  // "1 (eco)"
        const named = valueLabels && valueLabels.get(Number(lv.value));
        return h("tr", { testid: "status-row", "data-property": id },
          h("td", {}, h("code", {}, label(id))),
          h("td", { testid: `value-${id}`, class: "value" }, formatValue(lv.value),
            named ? h("span", { class: "muted" }, ` (${named})`) : null,
            unit ? h("span", { class: "muted" }, ` ${unit}`) : null),
          h("td", {}, timeCell(lv.time)));
      }) : [emptyRow(3, "No property has been reported yet.")]));
      lastStatus = st;
      await refreshCharts(st);
      if (!ctx.alive()) return;
      eventsBox.replaceChildren(eventsTable(events.items));
      msgBox.replaceChildren(messageTable(msgs.items, false, "No messages from this device yet."));
      updated.textContent = `· updated ${formatTime(Date.now()).slice(11)}`;
    };
    const resize = () => {
      if (!ctx.alive()) { window.removeEventListener("resize", resize); return; }
      for (const c of chartEls.values()) {
        if (c.plot) c.plot.setSize({ width: Math.max(200, Math.floor(c.plotBox.clientWidth)), height: 190 });
      }
    };
    window.addEventListener("resize", resize);
    await refresh();
    ctx.every(REFRESH_MS, refresh);
  }

  // ---------- events (a device's event posts; a thing model's events and services) ----------

  // {identifier, params, time} of an event message: Alink /sys/pk/dn/thing/event/{id}/post with params
  // (or params.value and params.time), or an IoTDA event report's first service's paras
  function eventOf(m) {
    const parts = String(m.topic).split("/");
    // ["", "sys", pk, dn, "thing", "event", identifier, "post"]
    let identifier = parts.length >= 8 && parts[4] === "thing" && parts[5] === "event" ? parts.slice(6, -1).join("/") : m.topic;
    let doc = null;
    try { doc = m.payloadEncoding === "text" ? JSON.parse(m.payload) : null; } catch { doc = null; }
    if (!doc || typeof doc !== "object") return { identifier, params: null, time: null };
    if (Array.isArray(doc.services) && doc.services[0]) {
      const svc = doc.services[0];
      identifier = svc.event_type || svc.service_id || identifier;
      return { identifier, params: svc.paras || null, time: null };
    }
    let params = doc.params;
    let time = null;
    if (params && typeof params === "object" && params.value && typeof params.value === "object" && !Array.isArray(params.value)) {
      time = typeof params.time === "number" ? params.time : null;
      params = params.value;
    }
    return { identifier, params: params && typeof params === "object" ? params : null, time };
  }

  function paramList(params) {
    const entries = Object.entries(params);
    if (!entries.length) return h("span", { class: "muted" }, "no parameters");
    return h("dl", { class: "params" }, entries.map(([k, v]) => [h("dt", {}, k),
      h("dd", { "data-param": k }, typeof v === "string" ? v : JSON.stringify(v))]));
  }

  // the model's events and services as uniform rows: identifier, name, kind (event type or call type), inputs, outputs
  function modelEvents(doc) {
    if (!doc || !doc.model || typeof doc.model !== "object") return [];
    const m = doc.model;
    const params = (list) => (Array.isArray(list) ? list : []).map((x) => ({
      identifier: x.identifier || x.para_name || x.property_name || "?",
      type: (x.dataType && x.dataType.type) || x.data_type || "", specs: x.dataType ? tslSpecs(x.dataType) : huaweiSpecs(x) }));
    if (doc.format === "huawei") {
      const out = [];
      for (const svc of (Array.isArray(m.services) ? m.services : [])) {
        for (const e of (Array.isArray(svc.events) ? svc.events : [])) {
          out.push({ identifier: e.event_type, name: svc.service_id, kind: "event", inputs: [], outputs: params(e.paras) });
        }
      }
      return out;
    }
    return (Array.isArray(m.events) ? m.events : []).filter((e) => e && e.identifier !== "post").map((e) => ({
      identifier: e.identifier, name: e.name || "", kind: e.type || "info", inputs: [], outputs: params(e.outputData) }));
  }

  function modelServices(doc) {
    if (!doc || !doc.model || typeof doc.model !== "object") return [];
    const m = doc.model;
    const params = (list) => (Array.isArray(list) ? list : []).map((x) => ({
      identifier: x.identifier || x.para_name || "?", type: (x.dataType && x.dataType.type) || x.data_type || "",
      specs: x.dataType ? tslSpecs(x.dataType) : huaweiSpecs(x) }));
    if (doc.format === "huawei") {
      const out = [];
      for (const svc of (Array.isArray(m.services) ? m.services : [])) {
        for (const c of (Array.isArray(svc.commands) ? svc.commands : [])) {
          out.push({ identifier: c.command_name, name: svc.service_id, kind: "command", inputs: params(c.paras),
            outputs: params((Array.isArray(c.responses) && c.responses[0]) ? c.responses[0].paras : []) });
        }
      }
      return out;
    }
    return (Array.isArray(m.services) ? m.services : []).filter((x) => x && !["set", "get"].includes(x.identifier)).map((x) => ({
      identifier: x.identifier, name: x.name || "", kind: x.callType || "", inputs: params(x.inputData), outputs: params(x.outputData) }));
  }

  function paramCell(list) {
    if (!list.length) return h("span", { class: "muted" }, "—");
    return h("ul", { class: "param-list" }, list.map((p) => h("li", { "data-param": p.identifier },
      h("code", {}, p.identifier), ` ${p.type}`, p.specs ? h("span", { class: "muted small" }, ` (${p.specs})`) : null)));
  }

  function eventsAndServices(doc, pk) {
    const events = modelEvents(doc);
    const services = modelServices(doc);
    const parts = [];
    if (events.length) {
      parts.push(h("h3", {}, "Events"), table(["Identifier", "Name", "Type", "Parameters"], events.map((e) =>
        h("tr", { testid: "model-event", "data-identifier": e.identifier },
          h("td", {}, h("code", {}, e.identifier)), h("td", {}, e.name), h("td", {}, e.kind), h("td", {}, paramCell(e.outputs)))),
      { class: "compact", testid: `model-events-${pk}` }));
    }
    if (services.length) {
      parts.push(h("h3", {}, "Services"), table(["Identifier", "Name", "Call", "Input", "Output"], services.map((x) =>
        h("tr", { testid: "model-service", "data-identifier": x.identifier },
          h("td", {}, h("code", {}, x.identifier)), h("td", {}, x.name), h("td", {}, x.kind),
          h("td", {}, paramCell(x.inputs)), h("td", {}, paramCell(x.outputs)))),
      { class: "compact", testid: `model-services-${pk}` }));
    }
    return parts;
  }

  // ---------- messages ----------

  function payloadBlock(m) {
    return h("div", {},
      m.payloadEncoding === "base64" ? h("span", { class: "badge" }, "base64") : null,
      h("pre", { class: "payload", testid: "payload" }, m.payload));
  }

  function breakable(text) {
    // a text node per slash-separated part, with a <wbr> after each slash: long topics wrap at slashes
    const out = [];
    String(text).split("/").forEach((part, i) => {
      if (i > 0) out.push("/", h("wbr", {}));
      if (part) out.push(part);
    });
    return out;
  }

  function messageTable(items, showDevice, emptyText) {
    const cols = [["Received · id", "c-time"], ...(showDevice ? [["Device", "c-device"]] : []),
      ["Topic · kind", "c-topic"], ["Payload", "c-payload"], ["Reply", "c-reply"]];
    const rows = items.map((m) => h("tr", { testid: "message-row", "data-message-id": m.messageIdText },
      h("td", { class: "stacked" }, timeCell(m.receivedAt),
        h("code", { class: "small muted", testid: "message-id", title: "messageId" }, m.messageIdText)),
      showDevice ? h("td", {}, h("a", { href: deviceHref(m.productKey, m.deviceName) }, m.deviceName),
        h("div", { class: "muted small" }, m.productKey)) : null,
      h("td", { class: "topic" }, h("code", {}, breakable(m.topic)),
        h("div", { class: "small" }, h("span", { class: "badge" }, m.kind), h("span", { class: "muted" }, m.dialect))),
      h("td", { class: "payload-cell" }, payloadBlock(m), h("div", { class: "muted small" }, `${m.size} bytes`)),
      h("td", { class: "payload-cell" }, m.reply ? h("pre", { class: "payload" }, JSON.stringify(m.reply)) : h("span", { class: "muted" }, "—"))));
    if (!rows.length) rows.push(emptyRow(cols.length, emptyText));
    return table(cols, rows, { class: "messages", testid: "messages-table" });
  }

  // ---------- subscriptions (forwarding to applications) ----------

  // running / retrying / failing (the sink refuses or is down) / disabled, since when, and the last error
  function stateCell(s) {
    const state = s.state || (s.enabled ? "running" : "disabled");
    return h("td", { class: "sub-state", testid: `state-${s.name}` },
      h("span", { class: `badge state-${state}` }, state),
      s.stateSince ? h("span", { class: "muted small" }, " since ", timeCell(s.stateSince)) : null,
      s.lastError ? h("div", { class: "small error-text", testid: `last-error-${s.name}` }, s.lastError) : null);
  }

  const SINKS = ["http", "webhook", "rabbitmq", "nats", "mqtt"];
  const KINDS = ["raw", "properties", "event", "status", "alarm"];

  // the products a subscription takes: one, a list, or every product (those created later too)
  const scopeText = (s) => (s.allProducts ? "every product" : (s.productKeys || [s.productKey]).join(", "));

  // create (any sink, any products), pause / resume, delete; health refreshed with the table
  function subscriptionForm(ctx, refresh) {
    const name = h("input", { id: "sub-name", testid: "sub-name", required: true, maxlength: 64, spellcheck: "false" });
    const every = h("input", { type: "checkbox", id: "sub-every", testid: "sub-every" });
    const products = h("select", { id: "sub-products", testid: "sub-products", multiple: true, size: 4 });
    every.addEventListener("change", () => { products.disabled = every.checked; });
    const sink = h("select", { id: "sub-sink", testid: "sub-sink" }, SINKS.map((k) => h("option", { value: k }, k)));
    const kinds = KINDS.map((k) => h("label", { class: "inline" },
      h("input", { type: "checkbox", value: k, checked: true, testid: `sub-kind-${k}` }), ` ${k}`));
    const topic = h("input", { id: "sub-topic", testid: "sub-topic", placeholder: "all topics, or e.g. /+/+/user/#", maxlength: 512, spellcheck: "false" });
    const options = h("textarea", { id: "sub-options", testid: "sub-options", rows: 3, spellcheck: "false",
      placeholder: '{"url": "https://app.example/hook", "secret": "whsec_..."}' });
    const fromStart = h("input", { type: "checkbox", id: "sub-from-start", testid: "sub-from-start" });
    const check = h("input", { type: "checkbox", id: "sub-check", testid: "sub-check", checked: true });
    const form = h("form", { class: "card form", testid: "create-subscription-form", autocomplete: "off" },
      h("h2", {}, "New subscription"),
      h("label", { for: "sub-name" }, "Name"), name,
      h("label", { for: "sub-products" }, "Products (one or more)"), products,
      h("label", { class: "inline", for: "sub-every" }, every, " every product (those created later too)"),
      h("label", { for: "sub-sink" }, "Sink"), sink,
      h("div", { class: "checks" }, "Kinds: ", kinds),
      h("label", { for: "sub-topic" }, "Topic filter (optional)"), topic,
      h("label", { for: "sub-options" }, "Sink options (JSON object; none for http)"), options,
      h("label", { class: "inline", for: "sub-from-start" }, fromStart, " from the oldest retained message"),
      h("label", { class: "inline", for: "sub-check" }, check, " connect to the sink first"),
      h("button", { type: "submit", testid: "create-subscription" }, "Create subscription"));
    form.addEventListener("submit", submitting(form, async () => {
      let opts = {};
      try {
        opts = options.value.trim() ? JSON.parse(options.value) : {};
        if (!opts || typeof opts !== "object" || Array.isArray(opts)) throw new Error("sink options must be a JSON object");
      } catch (e) { showError("Could not create the subscription", e); return; }
      const body = { name: name.value.trim(), sink: sink.value, options: opts, fromStart: fromStart.checked, check: check.checked,
        kinds: kinds.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value) };
      if (topic.value.trim()) body.topicFilter = topic.value.trim();
      if (every.checked) body.allProducts = true;
      else body.productKeys = [...products.selectedOptions].map((o) => o.value);
      let made;
      try { made = await api("POST", "/api/subscriptions", { body }); } catch (e) { showError("Could not create the subscription", e); return; }
      if (!ctx.alive()) return;
      clearError();
      showNotice(`Subscription ${made.name} created (${scopeText(made)} → ${made.sink}).`);
      name.value = "";
      await refresh();
    }));
    productOptions(products).catch((e) => showError("Could not list the products", e));
    return form;
  }

  async function renderSubscriptions(view, query, ctx) {
    view.append(h("div", { class: "page-head" }, h("h1", {}, "Subscriptions"),
      h("span", { class: "muted" }, "backlog: messages the sink has yet to confirm; refreshes every 2 s")));
    const body = h("tbody", {});
    const columns = ["Name", "Products", "Sink", "Kinds", "Topic filter", "State", ["Backlog", "num"], "Actions"];
    const act = (label, testid, fn) => h("button", { type: "button", class: "secondary small", testid,
      onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try { await fn(); clearError(); } catch (e) { showError(`Could not ${label.toLowerCase()}`, e); }
        if (ctx.alive()) await refresh();
      } }, label);
    const actions = (s) => h("td", {}, h("div", { class: "button-row tight" },
      s.enabled
        ? act("Pause", `pause-${s.name}`, () => api("PATCH", `/api/subscriptions/${enc(s.name)}`, { body: { enabled: false } }))
        : act("Resume", `resume-${s.name}`, () => api("PATCH", `/api/subscriptions/${enc(s.name)}`, { body: { enabled: true } })),
      act("Delete", `delete-${s.name}`, async () => {
        if (!window.confirm(`Delete subscription ${s.name}? Messages it has not confirmed are no longer kept for it.`)) return;
        await api("DELETE", `/api/subscriptions/${enc(s.name)}`);
        showNotice(`Subscription ${s.name} deleted.`);
      })));
    const refresh = async () => {
      const subs = await api("GET", "/api/subscriptions");
      if (!ctx.alive()) return;
      body.replaceChildren(...(subs.length ? subs.map((s) => h("tr", { testid: `subscription-${s.name}` },
        h("td", {}, s.name), h("td", { testid: `products-${s.name}` }, scopeText(s)), h("td", {}, s.sink),
        h("td", {}, s.kinds.join(", ")), h("td", {}, s.topicFilter || "all"), stateCell(s),
        h("td", { class: "num", testid: `backlog-${s.name}` }, String(s.backlog ?? "")), actions(s))) :
        [emptyRow(columns.length, "No subscriptions: create one below, with `thingport subscription create` or POST /api/subscriptions.")]));
    };
    view.append(h("div", { class: "table-wrap" }, h("table", { testid: "subscriptions-table" },
      h("thead", {}, h("tr", {}, columns.map((c) => (Array.isArray(c)
        ? h("th", { scope: "col", class: c[1] }, c[0]) : h("th", { scope: "col" }, c))))), body)));
    view.append(h("div", { class: "spaced" }, subscriptionForm(ctx, refresh)));
    await refresh();
    ctx.every(2000, refresh);
  }

  // ---------- rules (SQL over device messages, forwarded to sinks) ----------

  const PUSH_SINKS = SINKS.filter((k) => k !== "http");

  // how its sinks confirm: running / retrying / failing, since when, and why (sinkError), or disabled
  function ruleStateCell(r) {
    return h("td", { class: "sub-state", testid: `rule-state-${r.name}` },
      h("span", { class: `badge state-${r.state}` }, r.state),
      r.stateSince ? h("span", { class: "muted small" }, " since ", timeCell(r.stateSince)) : null,
      r.sinkError ? h("div", { class: "small error-text", testid: `rule-sink-error-${r.name}` }, r.sinkError) : null);
  }

  // messages it could not evaluate: how many, and why the newest of them failed
  function ruleFailedCell(r) {
    return h("td", { class: "stacked" },
      h("span", { class: "num", testid: `rule-failed-${r.name}` }, String(r.failed)),
      r.lastError ? h("div", { class: "small error-text", testid: `rule-last-error-${r.name}` }, r.lastError) : null,
      r.lastErrorAt ? h("span", { class: "muted small" }, timeCell(r.lastErrorAt)) : null);
  }

  const actionText = (a) => `${a.kind} → ${a.sink}`;

  // create (a statement and one forward action; several through the API or CLI)
  function ruleForm(ctx, refresh) {
    const name = h("input", { id: "rule-name", testid: "rule-name", required: true, maxlength: 64, spellcheck: "false" });
    const statement = h("textarea", { id: "rule-statement", testid: "rule-statement", rows: 3, required: true,
      maxlength: 4096, spellcheck: "false",
      placeholder: 'SELECT temperature, deviceName() AS dn FROM "/a1XdW3RQiM6/+/user/data" WHERE temperature > 38' });
    const sink = h("select", { id: "rule-sink", testid: "rule-sink" }, PUSH_SINKS.map((k) => h("option", { value: k }, k)));
    const options = h("textarea", { id: "rule-options", testid: "rule-options", rows: 3, spellcheck: "false",
      placeholder: '{"url": "https://app.example/hook", "secret": "whsec_..."}' });
    const fromStart = h("input", { type: "checkbox", id: "rule-from-start", testid: "rule-from-start" });
    const check = h("input", { type: "checkbox", id: "rule-check", testid: "rule-check", checked: true });
    const form = h("form", { class: "card form", testid: "create-rule-form", autocomplete: "off" },
      h("h2", {}, "New rule"),
      h("label", { for: "rule-name" }, "Name"), name,
      h("label", { for: "rule-statement" }, "Statement"), statement,
      h("label", { for: "rule-sink" }, "Forward what it emits to"), sink,
      h("label", { for: "rule-options" }, "Sink options (JSON object)"), options,
      h("label", { class: "inline", for: "rule-from-start" }, fromStart, " from the oldest retained message"),
      h("label", { class: "inline", for: "rule-check" }, check, " connect to the sink first"),
      h("button", { type: "submit", testid: "create-rule" }, "Create rule"));
    form.addEventListener("submit", submitting(form, async () => {
      let opts = {};
      try {
        opts = options.value.trim() ? JSON.parse(options.value) : {};
        if (!opts || typeof opts !== "object" || Array.isArray(opts)) throw new Error("sink options must be a JSON object");
      } catch (e) { showError("Could not create the rule", e); return; }
      const body = { name: name.value.trim(), statement: statement.value, fromStart: fromStart.checked, check: check.checked,
        actions: [{ kind: "forward", sink: sink.value, options: opts }] };
      let made;
      try { made = await api("POST", "/api/rules", { body }); } catch (e) { showError("Could not create the rule", e); return; }
      if (!ctx.alive()) return;
      clearError();
      showNotice(`Rule ${made.name} created (${made.actions.map(actionText).join(", ")}).`);
      name.value = "";
      await refresh();
    }));
    return form;
  }

  async function renderRules(view, query, ctx) {
    view.append(h("div", { class: "page-head" }, h("h1", {}, "Rules"),
      h("span", { class: "muted" }, "backlog: messages the rule has yet to evaluate or deliver; refreshes every 2 s")));
    const body = h("tbody", {});
    const columns = ["Name", "Statement", "Rule actions", "State", ["Cursor", "num"], ["Backlog", "num"], ["Matched", "num"],
      "Failed · last error", "Actions"];
    const act = (label, testid, fn) => h("button", { type: "button", class: "secondary small", testid,
      onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try { await fn(); clearError(); } catch (e) { showError(`Could not ${label.toLowerCase()}`, e); }
        if (ctx.alive()) await refresh();
      } }, label);
    const buttons = (r) => h("td", {}, h("div", { class: "button-row tight" },
      r.enabled
        ? act("Disable", `disable-rule-${r.name}`, () => api("PATCH", `/api/rules/${enc(r.name)}`, { body: { enabled: false } }))
        : act("Enable", `enable-rule-${r.name}`, () => api("PATCH", `/api/rules/${enc(r.name)}`, { body: { enabled: true } })),
      act("Delete", `delete-rule-${r.name}`, async () => {
        if (!window.confirm(`Delete rule ${r.name}? Messages it has not evaluated are no longer kept for it.`)) return;
        await api("DELETE", `/api/rules/${enc(r.name)}`);
        showNotice(`Rule ${r.name} deleted.`);
      })));
    const refresh = async () => {
      const rules = await api("GET", "/api/rules");
      if (!ctx.alive()) return;
      body.replaceChildren(...(rules.length ? rules.map((r) => h("tr", { testid: `rule-${r.name}` },
        h("td", {}, r.name), h("td", { class: "topic" }, h("code", { testid: `rule-statement-${r.name}` }, r.statement)),
        h("td", {}, r.actions.map(actionText).join(", ")), ruleStateCell(r),
        h("td", { class: "num", testid: `rule-cursor-${r.name}` }, String(r.cursor)),
        h("td", { class: "num", testid: `rule-backlog-${r.name}` }, String(r.backlog ?? "")),
        h("td", { class: "num", testid: `rule-matched-${r.name}` }, String(r.matched)),
        ruleFailedCell(r), buttons(r))) :
        [emptyRow(columns.length, "No rules: create one below, with `thingport rule create` or POST /api/rules.")]));
    };
    view.append(h("div", { class: "table-wrap" }, h("table", { testid: "rules-table" },
      h("thead", {}, h("tr", {}, columns.map((c) => (Array.isArray(c)
        ? h("th", { scope: "col", class: c[1] }, c[0]) : h("th", { scope: "col" }, c))))), body)));
    view.append(h("div", { class: "spaced" }, ruleForm(ctx, refresh)));
    await refresh();
    ctx.every(2000, refresh);
  }

  // ---------- alarms ----------

  const SEVERITIES = ["critical", "major", "minor", "warning"];
  const ALARM_STATES = ["active", "acknowledged", "cleared"];

  // the fleet's alarms (open ones by default), filtered by product, severity and state; an admin key
  // acknowledges an active one (others are told why the API refuses)
  async function renderAlarms(view, query, ctx) {
    const pk = query.get("productKey") || "";
    const severity = query.get("severity") || "";
    const stateName = query.get("state") || "";
    const productSelect = h("select", { id: "alarms-product", testid: "alarms-product", name: "productKey" },
      h("option", { value: "" }, "all products"));
    const severitySelect = h("select", { id: "alarms-severity", testid: "alarms-severity", name: "severity" },
      h("option", { value: "" }, "any severity"),
      SEVERITIES.map((v) => h("option", { value: v, selected: v === severity }, v)));
    const stateSelect = h("select", { id: "alarms-state", testid: "alarms-state", name: "state" },
      h("option", { value: "" }, "open (active and acknowledged)"),
      ALARM_STATES.map((v) => h("option", { value: v, selected: v === stateName }, v)));
    const form = h("form", { class: "filters", testid: "alarms-filter", autocomplete: "off",
      onsubmit: (ev) => {
        ev.preventDefault();
        const q = new URLSearchParams();
        if (productSelect.value) q.set("productKey", productSelect.value);
        if (severitySelect.value) q.set("severity", severitySelect.value);
        if (stateSelect.value) q.set("state", stateSelect.value);
        navigate("alarms", q);
      } },
    h("label", {}, "Product ", productSelect), h("label", {}, "Severity ", severitySelect),
    h("label", {}, "State ", stateSelect),
    h("button", { type: "submit", testid: "alarms-search" }, "Filter"));
    view.append(h("div", { class: "page-head" }, h("h1", {}, "Alarms"),
      h("span", { class: "muted" }, "refreshes every 2 s")), form);
    const body = h("tbody", {});
    const columns = ["Severity", "Alarm", "Device", "State", "Raised", "Details", "Acknowledged", "Actions"];
    const ackButton = (a) => h("button", { type: "button", class: "secondary small", testid: `ack-${a.id}`,
      onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try {
          await api("POST", `/api/alarms/${a.id}/acknowledge`);
          showNotice(`Alarm ${a.name} of ${a.deviceName} acknowledged.`);
          clearError();
        } catch (e) { showError("Could not acknowledge", e); }
        if (ctx.alive()) await refresh();
      } }, "Acknowledge");
    const details = (a) => Object.entries(a.details || {}).map(([k, v]) => `${k}: ${formatValue(v)}`).join(", ");
    const refresh = async () => {
      const items = await api("GET", "/api/alarms", { query: { productKey: pk, severity, state: stateName, limit: 200 } });
      if (!ctx.alive()) return;
      body.replaceChildren(...(items.length ? items.map((a) => h("tr", { testid: "alarm-row", "data-alarm-id": String(a.id),
        "data-state": a.state, "data-severity": a.severity },
        h("td", {}, h("span", { class: `badge severity-${a.severity}`, testid: "alarm-severity" }, a.severity)),
        h("td", { testid: "alarm-name" }, a.name),
        h("td", {}, h("a", { href: deviceHref(a.productKey, a.deviceName) }, `${a.productKey}/${a.deviceName}`)),
        h("td", {}, h("span", { class: `badge alarm-${a.state}`, testid: "alarm-state" }, a.state)),
        h("td", {}, timeCell(a.raisedAt)),
        h("td", { class: "small" }, details(a)),
        h("td", { testid: "alarm-acknowledged" }, a.acknowledgedBy ? `${a.acknowledgedBy}, ${formatTime(a.acknowledgedAt)}` : ""),
        h("td", {}, a.state === "active" ? ackButton(a) : null))) :
        [emptyRow(columns.length, "No alarms match. Define some with `thingport alarm define` or POST /api/products/{productKey}/alarm-definitions.")]));
    };
    view.append(h("div", { class: "table-wrap" }, h("table", { testid: "alarms-table" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))), body)));
    await Promise.all([productOptions(productSelect, pk, "all products"), refresh()]);
    ctx.every(2000, refresh);
  }

  async function renderMessages(view, query, ctx) {
    const pk = query.get("productKey") || "";
    const dn = query.get("deviceName") || "";
    const topic = query.get("topic") || "";
    const before = query.get("before") || "";

    const productSelect = h("select", { id: "messages-product", testid: "messages-product" },
      h("option", { value: "" }, "all products"));
    const dnInput = h("input", { id: "messages-device", testid: "messages-device", value: dn, placeholder: "exact device name", spellcheck: "false" });
    const topicInput = h("input", { id: "messages-topic", testid: "messages-topic", value: topic, placeholder: "exact topic, e.g. /sys/…/thing/event/property/post", spellcheck: "false", maxlength: 512, class: "wide" });
    const form = h("form", { class: "filters", testid: "messages-filter", autocomplete: "off",
      onsubmit: (ev) => {
        ev.preventDefault();
        const q = new URLSearchParams();
        if (productSelect.value) q.set("productKey", productSelect.value);
        if (dnInput.value.trim()) q.set("deviceName", dnInput.value.trim());
        if (topicInput.value.trim()) q.set("topic", topicInput.value.trim());
        navigate("messages", q);
      } },
    h("label", {}, "Product ", productSelect), h("label", {}, "Device ", dnInput),
    h("label", {}, "Topic ", topicInput), h("button", { type: "submit", testid: "messages-search" }, "Filter"));
    const deviceNeedsProduct = () => {  // a device name alone is refused by the API: it needs its product
      dnInput.disabled = !productSelect.value;
      dnInput.placeholder = productSelect.value ? "exact device name" : "choose a product first";
      if (!productSelect.value) dnInput.value = "";
    };
    productSelect.addEventListener("change", deviceNeedsProduct);
    view.append(h("div", { class: "page-head" }, h("h1", {}, "Message log"),
      h("span", { class: "muted" }, "newest first")), form);

    dnInput.disabled = !pk;
    if (!pk) dnInput.placeholder = "choose a product first";
    const [, page] = await Promise.all([
      productOptions(productSelect, pk, "all products").then(deviceNeedsProduct),
      api("GET", "/api/messages", { query: { productKey: pk, deviceName: pk ? dn : "", topic, before, limit: MESSAGE_PAGE } }),
    ]);
    if (!ctx.alive()) return;
    const nav = h("div", { class: "pager" });
    if (before) {
      const q = new URLSearchParams(query);
      q.delete("before");
      nav.append(h("a", { class: "button secondary", href: hashFor("messages", q), testid: "messages-newest" }, "⇤ Newest"));
    }
    if (page.next) {
      const q = new URLSearchParams(query);
      q.set("before", page.next);
      nav.append(h("a", { class: "button secondary", href: hashFor("messages", q), testid: "messages-older" }, "Older →"));
    }
    view.append(h("div", { class: "card flush-table" },
      messageTable(page.items, true, before ? "No older messages." : "No messages match.")), nav);
  }

  // ---------- create ----------

  function modelInput(prefix) {
    const area = h("textarea", { id: `${prefix}-model`, testid: `${prefix}-model-json`, rows: 8, spellcheck: "false",
      placeholder: '{"properties": [...]}  (Alibaba TSL)  or  {"services": [...]}  (Huawei product model)' });
    const file = h("input", { type: "file", id: `${prefix}-model-file`, testid: `${prefix}-model-file`,
      accept: ".json,application/json" });
    const fileNote = h("span", { class: "muted small" });
    file.addEventListener("change", async () => {
      const f = file.files && file.files[0];
      if (!f) return;
      if (f.size > MAX_MODEL_FILE) { showError("Could not read the file", `${f.name} is larger than 5 MB`); return; }
      try {
        area.value = await f.text();
        fileNote.textContent = `loaded ${f.name} (${f.size} bytes)`;
      } catch (e) {
        showError("Could not read the file", e);
      }
    });
    return { area, file, fileNote };
  }

  function parseModel(text, required) {
    const t = text.trim();
    if (!t) {
      if (required) throw new Error("paste a thing model or choose a JSON file");
      return undefined;
    }
    let doc;
    try { doc = JSON.parse(t); } catch (e) { throw new Error(`the thing model is not valid JSON (${e.message})`); }
    if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new Error("the thing model must be a JSON object");
    return doc;
  }

  function submitting(form, fn) {
    return async (ev) => {
      ev.preventDefault();
      const buttons = form.querySelectorAll("button[type=submit]");
      buttons.forEach((b) => { b.disabled = true; });
      try { await fn(); } finally { buttons.forEach((b) => { b.disabled = false; }); }
    };
  }

  async function renderCreate(view, query, ctx) {
    view.append(h("div", { class: "page-head" }, h("h1", {}, "Create")));

    // product
    const pName = h("input", { id: "product-name", testid: "product-name", required: true, maxlength: 64 });
    const pKey = h("input", { id: "product-key", testid: "product-key", placeholder: "generated when empty", spellcheck: "false" });
    const pNode = h("select", { id: "product-node-type", testid: "product-node-type" },
      h("option", { value: "device" }, "device (directly connected)"), h("option", { value: "gateway" }, "gateway"));
    const pValidation = h("select", { id: "product-validation", testid: "product-validation" },
      h("option", { value: "per-property" }, "per-property (keep the valid properties)"),
      h("option", { value: "whole-report" }, "whole-report (refuse a report with any bad property)"));
    const pModel = modelInput("product");
    const pResult = h("div", { class: "result", testid: "product-result", hidden: true });
    const pForm = h("form", { class: "card form", testid: "create-product-form", autocomplete: "off" },
      h("h2", {}, "New product"),
      h("label", { for: "product-name" }, "Name"), pName,
      h("label", { for: "product-key" }, "productKey (optional)"), pKey,
      h("label", { for: "product-node-type" }, "Node type"), pNode,
      h("label", { for: "product-validation" }, "Validation"), pValidation,
      h("label", { for: "product-model" }, "Thing model (optional JSON)"), pModel.area,
      h("div", { class: "file-row" }, pModel.file, pModel.fileNote),
      h("button", { type: "submit", testid: "create-product" }, "Create product"), pResult);

    // device
    const dProduct = h("select", { id: "device-product", testid: "device-product", required: true });
    const dName = h("input", { id: "device-name", testid: "device-name-input", required: true, spellcheck: "false" });
    const dSecret = h("input", { id: "device-secret-input", testid: "device-secret-input", placeholder: "generated when empty", spellcheck: "false", autocomplete: "off" });
    const dResult = h("div", { class: "result", testid: "device-result", hidden: true });
    const dForm = h("form", { class: "card form", testid: "create-device-form", autocomplete: "off" },
      h("h2", {}, "New device"),
      h("label", { for: "device-product" }, "Product"), dProduct,
      h("label", { for: "device-name" }, "Device name"), dName,
      h("label", { for: "device-secret-input" }, "deviceSecret (optional)"), dSecret,
      h("button", { type: "submit", testid: "create-device" }, "Create device"), dResult);

    // import
    const iProduct = h("select", { id: "import-product", testid: "import-product", required: true });
    const iFormat = h("select", { id: "import-format", testid: "import-format" },
      h("option", { value: "auto" }, "detect"), h("option", { value: "tsl" }, "Alibaba TSL"),
      h("option", { value: "huawei" }, "Huawei product model"));
    const iModel = modelInput("import");
    const iResult = h("div", { class: "result", testid: "import-result", hidden: true });
    const iForm = h("form", { class: "card form", testid: "import-model-form", autocomplete: "off" },
      h("h2", {}, "Import a thing model"),
      h("p", { class: "muted small" }, "Replaces the product's model with a new version; running servers use it within a second."),
      h("label", { for: "import-product" }, "Product"), iProduct,
      h("label", { for: "import-format" }, "Format"), iFormat,
      h("label", { for: "import-model" }, "Thing model JSON"), iModel.area,
      h("div", { class: "file-row" }, iModel.file, iModel.fileNote),
      h("button", { type: "submit", testid: "import-model" }, "Import model"), iResult);

    view.append(h("div", { class: "grid3" }, pForm, dForm, iForm));

    const reloadProducts = async (select) => {
      const products = await productOptions(dProduct, select || dProduct.value || query.get("productKey"));
      await productOptions(iProduct, select || iProduct.value || query.get("productKey"));
      const none = !products.length;
      for (const sel of [dProduct, iProduct]) {
        if (none) sel.append(h("option", { value: "", disabled: true, selected: true }, "create a product first"));
      }
    };
    pForm.addEventListener("submit", submitting(pForm, async () => {
      pResult.hidden = true;
      let thingModel;
      try { thingModel = parseModel(pModel.area.value, false); } catch (e) { showError("Could not create the product", e); return; }
      const body = { name: pName.value.trim(), nodeType: pNode.value, validation: pValidation.value };
      if (pKey.value.trim()) body.productKey = pKey.value.trim();
      if (thingModel !== undefined) body.thingModel = thingModel;
      let p;
      try { p = await api("POST", "/api/products", { body }); } catch (e) { showError("Could not create the product", e); return; }
      if (!ctx.alive()) return;
      clearError();
      pResult.replaceChildren(
        h("p", {}, "Created product ", h("strong", {}, p.name), " with productKey ",
          h("code", { testid: "created-product-key" }, p.productKey),
          p.modelVersion ? ` and thing model version ${p.modelVersion}.` : " (no thing model)."),
        h("a", { href: `#/products?model=${enc(p.productKey)}` }, "View it among the products"));
      pResult.hidden = false;
      pForm.reset();
      pModel.fileNote.textContent = "";
      try { await reloadProducts(p.productKey); } catch (e) { showError("Could not reload the products", e); }
    }));

    dForm.addEventListener("submit", submitting(dForm, async () => {
      dResult.hidden = true;
      if (!dProduct.value) { showError("Could not create the device", "choose a product (create one first)"); return; }
      const body = { productKey: dProduct.value, deviceName: dName.value.trim() };
      if (dSecret.value) body.deviceSecret = dSecret.value;
      let d;
      try { d = await api("POST", "/api/devices", { body }); } catch (e) { showError("Could not create the device", e); return; }
      if (!ctx.alive()) return;
      clearError();
      dResult.replaceChildren(
        h("p", {}, "Created device ", h("strong", { testid: "created-device-name" }, d.deviceName), " in ",
          h("code", {}, d.productKey), "."),
        h("p", { class: "warn" }, "Its deviceSecret is shown this once here; copy it now (an admin can show it again on the device page):"),
        h("code", { class: "secret big", testid: "created-secret" }, d.deviceSecret),
        h("p", {}, h("a", { href: deviceHref(d.productKey, d.deviceName), testid: "created-device-link" }, "Open the device page →")));
      dResult.hidden = false;
      dName.value = "";
      dSecret.value = "";
    }));

    iForm.addEventListener("submit", submitting(iForm, async () => {
      iResult.hidden = true;
      if (!iProduct.value) { showError("Could not import the thing model", "choose a product (create one first)"); return; }
      let doc;
      try { doc = parseModel(iModel.area.value, true); } catch (e) { showError("Could not import the thing model", e); return; }
      let p;
      try {
        p = await api("PUT", `/api/products/${enc(iProduct.value)}/thing-model`, { query: { format: iFormat.value }, body: doc });
      } catch (e) { showError("Could not import the thing model", e); return; }
      if (!ctx.alive()) return;
      clearError();
      iResult.replaceChildren(h("p", {}, "Imported thing model version ",
        h("code", { testid: "imported-version" }, p.modelVersion || "?"), " into ", h("code", {}, p.productKey), ". ",
        h("a", { href: `#/products?model=${enc(p.productKey)}` }, "View it")));
      iResult.hidden = false;
    }));

    await reloadProducts(); // the handlers are in place first: a quick submit is never lost
  }

  // ---------- start ----------

  function start() {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut());
    $("banner-close").addEventListener("click", clearError);
    window.addEventListener("hashchange", () => { if (state.key) route(); });
    let key = null;
    try { key = sessionStorage.getItem(KEY_STORAGE); } catch { key = null; }
    if (key) {
      state.key = key;
      showSignedIn();
      if (!location.hash || location.hash === "#" || location.hash === "#/") location.replace("#/devices");
      else route();
    } else {
      showSignedOut();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
