// traywire dashboard. Plain JavaScript, no build step, nothing from the network.
// Reads /status and /ui/api/*; changes things through /admin/* and /ui/api/*
// with the page's session token (from <meta name="traywire-session">).
// Text from the server only ever goes into the page as text, never as HTML.
"use strict";

(() => {
  const SESSION = (document.querySelector('meta[name="traywire-session"]') || {}).content || "";
  const STATUS_EVERY = 1500;
  const REQUESTS_EVERY = 1500;
  const LATENCY_EVERY = 30000;
  // One page of requests is a screenful: about as many rows as the window shows
  // (a row is about 2.6rem high), never fewer than 8 or more than 40.
  const ROW_PX = 42;
  const PAGE = Math.max(8, Math.min(40, Math.floor((window.innerHeight - 220) / ROW_PX)));
  const PHASES = ["draining", "stopping", "starting", "waiting", "done"];
  const PREF_TEXT = {
    auto: "Auto (as configured)",
    prefer_local: "Prefer local",
    prefer_cloud: "Prefer cloud",
    local_only: "Local only",
    cloud_only: "Cloud only",
  };
  const HEALTH_CLASS = { up: "ok", degraded: "warn", down: "bad", unknown: "" };
  const OUTCOME_CLASS = { served: "ok", failed: "bad", client_error: "warn", cut: "warn", cancelled: "" };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function badge(text, cls) {
    return h("span", { class: "badge" + (cls ? " " + cls : ""), text });
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    return Math.round(v) + " ms";
  }

  function clock(ts) {
    return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function setMsg(el, text, ok) {
    el.textContent = text || "";
    el.classList.toggle("ok", Boolean(text) && ok === true);
    el.classList.toggle("bad", Boolean(text) && ok === false);
  }

  // ------------------------------------------------------------------ HTTP

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-Traywire-Session"] = SESSION;
      init.body = JSON.stringify(body || {});
    }
    const r = await fetch(path, init);
    let data = null;
    try {
      data = await r.json();
    } catch (_e) {
      data = null;
    }
    if (!r.ok) {
      const e = data && data.error;
      const msg = typeof e === "string" ? e : (e && e.message) || "HTTP " + r.status;
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return data;
  }

  // Run fn every `every` ms, one at a time, skipping while the page is hidden.
  function every(fn, ms_) {
    let timer = null;
    const tick = async () => {
      clearTimeout(timer);
      if (!document.hidden) {
        try {
          await fn();
        } catch (_e) {
          /* each fn reports its own failures */
        }
      }
      timer = setTimeout(tick, ms_);
    };
    tick();
    return tick;
  }

  // ------------------------------------------------------------------ state

  const S = {
    meta: null,
    status: null,
    latency: {},
    latencyAt: 0,
    rows: new Map(), // id -> li
    order: [], // ids, newest first
    nextBefore: null,
    filterKey: null,
    before: null, // null: the newest page (live); else the id the shown page starts below
    stack: [], // the `before` of each newer page, to go back
    pageNo: 1,
    details: new Map(), // id -> full request
    prefBusy: false,
    groupTouched: new Set(),
    jumped: false,
  };

  // ------------------------------------------------------------------ meta

  async function loadMeta() {
    S.meta = await api("GET", "/ui/api/meta");
    fillSelect($("f-backend"), S.meta.backends, false);
    fillSelect($("f-capability"), S.meta.capabilities, false);
    fillSelect($("f-outcome"), S.meta.outcomes, true);
    buildPreference();
    buildGroups();
    $("config-file").textContent = S.meta.config_file
      ? "Reload reads " + S.meta.config_file + " over your user config and the built-in default."
      : "Reload reads your user config over the built-in default.";
  }

  function fillSelect(sel, values, words) {
    const keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    for (const v of values) sel.append(h("option", { value: v, text: words ? v.replaceAll("_", " ") : v }));
    sel.value = values.includes(keep) ? keep : "";
  }

  // ------------------------------------------------------------------ status and backends

  async function pollStatus() {
    const conn = $("conn");
    try {
      S.status = await api("GET", "/status");
      conn.textContent = "live · " + clock(Date.now() / 1000);
      conn.classList.remove("bad");
    } catch (e) {
      conn.textContent = "cannot reach traywire: " + e.message;
      conn.classList.add("bad");
      return;
    }
    renderBackends();
    renderShared();
    syncPreference();
    syncGroups();
  }

  // several instances sharing one view through Redis (config shared_state)
  function renderShared() {
    const el = $("shared-state");
    const sh = S.status && S.status.shared_state;
    el.hidden = !sh;
    if (!sh) return;
    const down = sh.state === "unreachable";
    el.className = down ? "notice" : "hint";
    const n = (sh.instances || []).length;
    el.textContent = down
      ? sh.note + (sh.error ? " (" + sh.error + ")" : "")
      : sh.state === "connected"
        ? "shared state: " + sh.url + " · " + n + " instance" + (n === 1 ? "" : "s") +
          " · view " + sh.age_ms + " ms old" + (sh.warning ? " · " + sh.warning : "")
        : "shared state: connecting to " + sh.url + "…";
  }

  async function pollLatency() {
    S.latencyAt = Date.now();
    try {
      const data = await api("GET", "/ui/api/latency?minutes=60&bucket=60");
      S.latency = data.backends || {};
    } catch (_e) {
      return;
    }
    renderBackends();
  }

  function renderBackends() {
    const st = S.status;
    if (!st) return;
    const list = $("backend-list");
    const cards = [];
    for (const [name, b] of Object.entries(st.backends || {})) cards.push(backendCard(name, b, st));
    if (!cards.length) cards.push(h("p", { class: "hint", text: "No backends configured." }));
    list.replaceChildren(...cards);
    jumpToHash();
  }

  function backendCard(name, b, st) {
    const health = b.enabled ? b.health || "unknown" : "disabled";
    const badges = [];
    const circuit = b.circuit || "closed";
    const circuitText = "circuit " + circuit.replace("_", "-") + (b.retry_in_s ? " · retry in " + Math.ceil(b.retry_in_s) + " s" : "");
    badges.push(badge(circuitText, circuit === "closed" ? "" : circuit === "open" ? "bad" : "warn"));
    if (!b.enabled) badges.push(badge("disabled", "warn"));
    if (b.no_key) badges.push(badge("no key", "bad"));
    if (b.exclusive_group) {
      const active = (st.active || {})[b.exclusive_group];
      badges.push(active === name ? badge("active in " + b.exclusive_group, "info") : badge("inactive in " + b.exclusive_group, ""));
    }
    if (b.missing_models && b.missing_models.length) badges.push(badge(b.missing_models.length + " model(s) missing", "warn"));

    const cap = Math.max(1, b.capacity || 1);
    const inFlight = b.in_flight || 0;
    const ratio = Math.min(1, inFlight / cap);
    const sat = typeof st.saturation === "number" ? st.saturation : 0.8;
    const bar = h("div", {
      class: "bar" + (inFlight / cap >= sat ? " hot" : ""),
      role: "meter",
      "aria-label": name + " load: " + inFlight + " of " + cap + " in flight; saturated from " + Math.round(sat * 100) + "%",
      "aria-valuemin": 0,
      "aria-valuemax": cap,
      "aria-valuenow": Math.min(inFlight, cap),
    });
    const fill = h("div", { class: "fill" });
    fill.style.width = (ratio * 100).toFixed(1) + "%";
    const mark = h("div", { class: "mark", title: "saturation " + Math.round(sat * 100) + "%" });
    mark.style.left = (sat * 100).toFixed(1) + "%";
    bar.append(fill, mark);

    const card = h(
      "article",
      { class: "card" + (b.enabled ? "" : " disabled"), "aria-label": "backend " + name, "data-backend": name },
      h("div", { class: "card-head" }, h("h3", { text: name }), badge(health, HEALTH_CLASS[health] || (health === "disabled" ? "warn" : ""))),
      h("p", { class: "sub", text: [b.kind, b.location].filter(Boolean).join(" · ") }),
      h("div", { class: "badges" }, badges),
      h("div", { class: "row" }, h("span", { class: "label", text: "in flight" }), h("span", { class: "mono", text: inFlight + " / " + cap })),
      bar,
      h("div", { class: "row" }, h("span", { class: "label", text: "latency" }), h("span", { class: "mono", text: ms(b.latency_ms) })),
      sparkline(name, S.latency[name] || []),
    );
    if (b.last_error && b.health !== "up") card.append(h("p", { class: "err", text: b.last_error }));
    return card;
  }

  function sparkline(name, series) {
    const pts = series.filter((p) => p.avg_ms !== null && p.avg_ms !== undefined);
    const fails = series.reduce((n, p) => n + (p.failures || 0), 0);
    const count = series.reduce((n, p) => n + (p.count || 0), 0);
    if (!pts.length && !fails) {
      return h("p", { class: "hint", text: "no requests in the last hour" });
    }
    const W = 240;
    const H = 56;
    const n = Math.max(1, series.length - 1);
    const top = Math.max(...pts.map((p) => p.avg_ms), 1);
    const highest = Math.max(...pts.map((p) => p.max_ms || p.avg_ms), 0);
    const label =
      name + " latency, last hour: " + count + " request(s)" +
      (pts.length ? ", average up to " + ms(top) + ", slowest " + ms(highest) : "") +
      (fails ? ", " + fails + " failed attempt(s)" : "");
    const el = svg("svg", { class: "spark", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": label });
    const title = svg("title");
    title.textContent = label;
    el.append(title, svg("line", { class: "base", x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, "vector-effect": "non-scaling-stroke" }));
    // one line per run of minutes with requests; a lone minute is a short dash
    const has = (i) => i >= 0 && i < series.length && series[i].avg_ms !== null && series[i].avg_ms !== undefined;
    const step = W / (n + 1);
    let d = "";
    series.forEach((p, i) => {
      if (!has(i)) return;
      const x = step / 2 + i * step;
      const y = (H - 3 - (p.avg_ms / top) * (H - 8)).toFixed(2);
      if (!has(i - 1) && !has(i + 1)) d += "M" + (x - 1.5).toFixed(2) + " " + y + "H" + (x + 1.5).toFixed(2);
      else d += (has(i - 1) ? "L" : "M") + x.toFixed(2) + " " + y;
    });
    if (d) el.append(svg("path", { class: "line", d }));
    series.forEach((p, i) => {
      if (!p.failures) return;
      const x = step / 2 + i * step;
      el.append(svg("rect", { class: "fail", x: (x - 1).toFixed(2), y: H - 8, width: 2, height: 8 }));
    });
    // the latest minute with requests: its value, beside the scale
    let last = -1;
    series.forEach((p, i) => {
      if (has(i)) last = i;
    });
    const legend = h(
      "div",
      { class: "spark-legend" },
      h("span", { class: "latest", text: last >= 0 ? "latest " + ms(series[last].avg_ms) + " (" + clock(series[last].t) + ")" : "" }),
      h("span", { class: "scale", text: pts.length ? "top " + ms(top) : "" }),
    );
    if (last >= 0) {
      const x = step / 2 + last * step;
      const y = H - 3 - (series[last].avg_ms / top) * (H - 8);
      el.append(svg("circle", { class: "dot", cx: x.toFixed(2), cy: y.toFixed(2), r: 2.5, "vector-effect": "non-scaling-stroke" }));
    }
    return h("figure", { class: "spark-box", "data-backend": name }, el, legend);
  }

  // ------------------------------------------------------------------ requests

  function filterQuery() {
    const q = new URLSearchParams();
    for (const f of ["backend", "capability", "outcome"]) {
      const v = $("f-" + f).value;
      if (v) q.set(f, v);
    }
    return q.toString();
  }

  function resetRequests() {
    S.rows.clear();
    S.order = [];
    S.nextBefore = null;
    $("request-list").replaceChildren();
    $("older").hidden = true;
  }

  // The pager under the list: newer / older pages of one screenful each.
  function renderPager() {
    const paged = S.before !== null;
    $("older").hidden = S.nextBefore === null;
    $("newer").hidden = !paged;
    $("newest").hidden = S.pageNo < 3;
    const first = (S.pageNo - 1) * PAGE + 1;
    $("page-no").textContent = S.order.length
      ? "Page " + S.pageNo + " · requests " + first + "–" + (first + S.order.length - 1) + " (newest first)" + (paged ? " · live updates paused" : "")
      : "";
  }

  async function showPage(before) {
    const key = S.filterKey || "";
    try {
      const data = await api("GET", "/ui/api/requests?limit=" + PAGE + (before !== null ? "&before=" + before : "") + (key ? "&" + key : ""));
      if (key !== (S.filterKey || "")) return;
      resetRequests();
      S.before = before;
      appendRows(data.requests, false);
      S.nextBefore = data.next_before;
    } catch (e) {
      $("req-note").textContent = "Cannot read the request log: " + e.message;
    }
    renderPager();
    $("request-list").scrollIntoView({ block: "nearest" });
  }

  async function loadOlder() {
    if (S.nextBefore === null) return;
    S.stack.push(S.before);
    S.pageNo += 1;
    await showPage(S.nextBefore);
  }

  async function loadNewer() {
    if (!S.stack.length) return;
    S.pageNo -= 1;
    await showPage(S.stack.pop());
  }

  async function loadNewest() {
    S.stack = [];
    S.pageNo = 1;
    await showPage(null);
  }

  async function pollRequests(force) {
    const key = filterQuery();
    if (key !== S.filterKey) {
      // new filters: back to the newest page
      resetRequests();
      S.filterKey = key;
      S.before = null;
      S.stack = [];
      S.pageNo = 1;
    } else if (S.before !== null) {
      return; // an older page: it does not change
    }
    if (!force && !$("f-live").checked && S.order.length) return;
    let data;
    try {
      data = await api("GET", "/ui/api/requests?limit=" + PAGE + (key ? "&" + key : ""));
    } catch (e) {
      $("req-note").textContent = "Cannot read the request log: " + e.message;
      return;
    }
    if (key !== S.filterKey) return; // the filters changed meanwhile
    if (!data.log) {
      $("req-note").textContent = "The request log is off (log.enabled in the config).";
      return;
    }
    const rows = data.requests;
    const first = S.order.length === 0;
    const gap = !first && rows.length === PAGE && rows[rows.length - 1].id > S.order[0];
    if (first || gap) {
      resetRequests();
      S.filterKey = key;
      appendRows(rows, false);
      S.nextBefore = data.next_before;
    } else {
      const fresh = rows.filter((r) => r.id > S.order[0]);
      prependRows(fresh);
      // new requests: the sparklines may have moved (at most every 5 s)
      if (fresh.length && Date.now() - S.latencyAt > 5000) pollLatency();
    }
    trimRows();
    renderPager();
    $("req-note").textContent = S.order.length
      ? ""
      : key
        ? "No requests match these filters."
        : "No requests yet. Requests appear here as they finish.";
  }

  function appendRows(rows, fresh) {
    const list = $("request-list");
    for (const r of rows) {
      const li = requestItem(r, fresh);
      S.rows.set(r.id, li);
      S.order.push(r.id);
      list.append(li);
    }
  }

  function prependRows(rows) {
    const list = $("request-list");
    for (let i = rows.length - 1; i >= 0; i--) {
      const r = rows[i];
      if (S.rows.has(r.id)) continue;
      const li = requestItem(r, true);
      S.rows.set(r.id, li);
      S.order.unshift(r.id);
      list.prepend(li);
    }
  }

  function trimRows() {
    while (S.order.length > PAGE) {
      const id = S.order.pop();
      const li = S.rows.get(id);
      if (li) li.remove();
      S.rows.delete(id);
      S.nextBefore = S.order[S.order.length - 1];
    }
  }

  function requestItem(r, fresh) {
    const served = r.served_model ? r.served_model + " on " + r.served_backend : r.error || "not served";
    const attempts = r.attempts || [];
    const tries = attempts.filter((a) => a.outcome !== "skipped").length;
    const skipped = attempts.filter((a) => a.outcome === "skipped");
    const skippedText = skipped.map((a) => a.model + " on " + a.backend + (a.error ? ": " + a.error : "")).join("; ");
    const leftOut = r.skipped_count || 0;
    const summary = h(
      "summary",
      { "aria-label": "request " + r.id + ": " + r.requested + ", " + r.outcome + ", " + served },
      h("span", { class: "when", text: clock(r.ts) }),
      h("span", {}, badge(r.outcome.replaceAll("_", " "), OUTCOME_CLASS[r.outcome])),
      h(
        "span",
        { class: "what", title: r.requested + " → " + served },
        r.requested,
        h("span", { class: "arrow", text: " → " }),
        served,
        r.capability ? h("span", { class: "reason", text: " · " + r.capability }) : null,
        h("span", { class: "endpoint", text: " · " + r.endpoint }),
      ),
      h("span", { class: "ms", text: ms(r.total_ms) }),
      h(
        "span",
        { class: "tries", title: skipped.length ? "skipped: " + skippedText : null },
        tries === 1 ? "1 attempt" : tries + " attempts",
        skipped.length ? h("span", { class: "skipped", text: " · " + skipped.length + " skipped" }) : null,
        leftOut ? h("span", { class: "left-out", text: " · " + leftOut + " left out" }) : null,
      ),
    );
    const body = h("div", { class: "detail" }, h("p", { class: "hint", text: "loading…" }));
    const det = h("details", { "data-id": r.id }, summary, body);
    det.addEventListener("toggle", () => {
      if (det.open) showDetail(r.id, body);
    });
    return h("li", { class: fresh ? "new" : null }, det);
  }

  async function showDetail(id, body) {
    let r = S.details.get(id);
    if (!r) {
      try {
        r = await api("GET", "/ui/api/requests/" + id);
      } catch (e) {
        body.replaceChildren(h("p", { class: "error", text: "Cannot load request " + id + ": " + e.message }));
        return;
      }
      S.details.set(id, r);
    }
    body.replaceChildren(...detailView(r));
  }

  function fact(dl, term, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(h("dt", { text: term }), h("dd", { text: String(value) }));
  }

  // A model's tier from the config (a logged request may name a model the
  // config no longer has: then nothing).
  function tierOf(name) {
    const m = ((S.meta && S.meta.models) || {})[name];
    return m ? "tier " + m.tier.replaceAll("_", " ") : "";
  }

  function detailView(r) {
    const dl = h("dl", { class: "facts" });
    fact(dl, "request", "#" + r.id + " · " + r.dialect + " " + r.endpoint + (r.stream ? " · streamed" : ""));
    fact(dl, "asked for", r.requested);
    fact(dl, "capability", r.capability);
    const route = r.route ? ((S.meta && S.meta.routes) || {})[r.route] : null;
    fact(dl, "route", [r.route, r.strategy, route && route.description].filter(Boolean).join(" · "));
    fact(dl, "preference", r.preference);
    fact(dl, "status", r.status);
    fact(dl, "time", "first byte " + ms(r.ttfb_ms) + " · total " + ms(r.total_ms));
    fact(dl, "tokens", "prompt ~" + r.prompt_tokens + " estimated · in " + r.tokens_in + " · out " + r.tokens_out);
    if (r.error) dl.append(h("dt", { text: "error" }), h("dd", { class: "error", text: r.error }));

    const plan = h(
      "ol",
      { class: "plan" },
      (r.plan || []).map((a) =>
        h("li", {}, h("strong", { text: a.model }), " on " + a.backend + " (" + [a.upstream_model, tierOf(a.model)].filter(Boolean).join(" · ") + ")", h("span", { class: "reason", text: " — " + a.reason })),
      ),
    );
    const attempts = h(
      "ol",
      { class: "attempts" },
      (r.attempts || []).map((a) =>
        h(
          "li",
          { "data-outcome": a.outcome },
          badge(a.outcome, a.outcome === "served" ? "ok" : a.outcome === "failed" ? "bad" : ""),
          " ",
          h("strong", { text: a.model }),
          " on " + a.backend + " · " + ms(a.ms),
          a.kind ? h("span", { class: "reason", text: " · " + a.kind.replaceAll("_", " ") }) : null,
          a.error ? h("div", { class: "error", text: a.error }) : null,
        ),
      ),
    );
    const out = [dl, h("h4", { text: "Plan" }), (r.plan || []).length ? plan : h("p", { class: "hint", text: "empty plan" })];
    if ((r.skipped || []).length) {
      out.push(
        h("h4", { text: "Left out" }),
        h("ul", {}, r.skipped.map((s) => h("li", {}, s.model + " on " + s.backend, h("span", { class: "reason", text: " — " + s.reason })))),
      );
    }
    out.push(h("h4", { text: "Attempts" }), (r.attempts || []).length ? attempts : h("p", { class: "hint", text: "none" }));
    return out;
  }

  // ------------------------------------------------------------------ preference

  function buildPreference() {
    const box = $("pref-options");
    const current = S.status ? S.status.preference : null;
    box.replaceChildren(
      ...S.meta.preferences.map((p) =>
        h(
          "label",
          {},
          h("input", { type: "radio", name: "preference", value: p, checked: p === current, onchange: () => setPreference(p) }),
          PREF_TEXT[p] || p,
        ),
      ),
    );
  }

  function syncPreference() {
    if (!S.meta || S.prefBusy) return;
    const st = S.status;
    for (const input of $("pref-options").querySelectorAll("input")) input.checked = input.value === st.preference;
    const now = PREF_TEXT[st.preference] || st.preference;
    const runtime = st.preference_source === "runtime";
    $("pref-source").textContent =
      "Now: " +
      now +
      (runtime
        ? " — set here, in the tray or by /admin/preference; traywire remembers it across restarts (the app and traywire serve alike), with the active vLLM models, until you go back to the config's"
        : " — from the config");
    const reset = $("pref-reset");
    const configured = PREF_TEXT[st.preference_config] || st.preference_config;
    reset.hidden = !runtime;
    reset.textContent = "Use the config's preference" + (configured ? " (" + configured + ")" : "");
  }

  async function resetPreference() {
    S.prefBusy = true;
    const reset = $("pref-reset");
    reset.disabled = true;
    setMsg($("pref-msg"), "");
    try {
      await api("POST", "/admin/preference", { preference: null });
    } catch (e) {
      setMsg($("pref-msg"), "Could not go back to the config's preference: " + e.message, false);
    } finally {
      reset.disabled = false;
      S.prefBusy = false;
      await pollStatus();
    }
  }

  async function setPreference(p) {
    S.prefBusy = true;
    const inputs = $("pref-options").querySelectorAll("input");
    inputs.forEach((i) => (i.disabled = true));
    setMsg($("pref-msg"), "");
    try {
      await api("POST", "/admin/preference", { preference: p });
    } catch (e) {
      setMsg($("pref-msg"), "Could not change routing: " + e.message, false);
    } finally {
      inputs.forEach((i) => (i.disabled = false));
      S.prefBusy = false;
      await pollStatus();
    }
  }

  // ------------------------------------------------------------------ exclusive groups (vLLM)

  function buildGroups() {
    const box = $("groups");
    const groups = Object.entries(S.meta.groups || {});
    box.replaceChildren(
      ...groups.map(([g, info]) => {
        const radios = h(
          "div",
          { class: "radios" },
          info.members.map((m) =>
            h("label", {}, h("input", { type: "radio", name: "group-" + g, value: m, onchange: () => S.groupTouched.add(g) }), m),
          ),
        );
        const button = h("button", {
          type: "button",
          id: "switch-" + g,
          text: info.switch ? "Switch server" : "Route to it",
          onclick: () => switchGroup(g, info),
        });
        return h(
          "div",
          { class: "group", "data-group": g },
          h(
            "fieldset",
            {},
            h("legend", { text: "Active " + g + " member" }),
            h("p", {
              class: "hint",
              text: info.switch
                ? "One model at a time: switching stops the running server and starts the chosen one."
                : "Only routing changes: start the chosen server yourself.",
            }),
            radios,
          ),
          button,
          h("div", { class: "progress", id: "progress-" + g, role: "status", "aria-live": "polite" }),
        );
      }),
    );
    syncGroups();
  }

  function syncGroups() {
    const st = S.status;
    if (!st || !S.meta) return;
    for (const [g, info] of Object.entries(S.meta.groups || {})) {
      const active = (st.active || {})[g];
      const sw = (st.switching || {})[g];
      const running = sw && sw.phase !== "done" && sw.phase !== "failed";
      if (!S.groupTouched.has(g)) {
        for (const input of document.querySelectorAll('input[name="group-' + CSS.escape(g) + '"]')) {
          input.checked = input.value === (running ? sw.to : active);
        }
      }
      const btn = $("switch-" + g);
      if (btn) btn.disabled = Boolean(running);
      const box = $("progress-" + g);
      if (box) renderProgress(box, info, sw, active);
    }
  }

  function renderProgress(box, info, sw, active) {
    const parts = [h("p", { class: "hint", text: "Active now: " + (active || "none") })];
    if (sw) {
      const failed = sw.phase === "failed";
      const at = failed ? PHASES.indexOf(sw.failed_in) : PHASES.indexOf(sw.phase);
      const chips = h(
        "ul",
        { class: "phases", "aria-label": "switch phases" },
        PHASES.map((p, i) => {
          let cls = "";
          if (sw.phase === "done" || i < at) cls = "done";
          else if (i === at) cls = failed ? "failed" : "current";
          return h("li", { class: cls, text: p });
        }),
      );
      const verb = sw.phase === "done" ? "Switched" : failed ? "Switch failed" : "Switching";
      parts.push(
        h("p", { text: verb + " " + (sw.from || "none") + " → " + sw.to + " (" + sw.elapsed_s + " s)" + (sw.phase !== "done" && !failed ? ": " + sw.phase : "") }),
        chips,
      );
      if (sw.error) parts.push(h("p", { class: "err", text: sw.error }));
      if (failed && sw.output) parts.push(h("pre", { class: "msg", text: sw.output }));
    }
    box.replaceChildren(...parts);
  }

  async function switchGroup(g, info) {
    const chosen = document.querySelector('input[name="group-' + CSS.escape(g) + '"]:checked');
    const box = $("progress-" + g);
    if (!chosen) {
      box.replaceChildren(h("p", { class: "err", text: "Choose a member first." }));
      return;
    }
    const btn = $("switch-" + g);
    btn.disabled = true;
    try {
      await api("POST", info.switch ? "/admin/switch" : "/admin/active", { group: g, member: chosen.value });
      S.groupTouched.delete(g);
    } catch (e) {
      box.replaceChildren(h("p", { class: "err", text: "Could not switch: " + e.message }));
      btn.disabled = false;
      return;
    }
    await pollStatus();
  }

  // ------------------------------------------------------------------ reload

  async function reloadConfig() {
    const btn = $("reload");
    const msg = $("reload-msg");
    btn.disabled = true;
    setMsg(msg, "Reloading…");
    try {
      const r = await api("POST", "/ui/api/reload", {});
      setMsg(msg, r.message, true);
      await loadMeta();
      await loadKeys();
      await pollStatus();
      await pollLatency();
    } catch (e) {
      setMsg(msg, "Config not reloaded: " + e.message, false);
    } finally {
      btn.disabled = false;
    }
  }

  // ------------------------------------------------------------------ keys

  async function loadKeys() {
    let data;
    try {
      data = await api("GET", "/ui/api/keys");
    } catch (e) {
      setMsg($("key-msg"), "Cannot list keys: " + e.message, false);
      return;
    }
    const problem = $("keyring-problem");
    problem.hidden = !data.keyring;
    problem.textContent = data.keyring || "";
    const list = $("key-list");
    const items = data.keys.map(keyItem);
    if (!items.length) items.push(h("p", { class: "hint", text: "No backend in the config refers to a key." }));
    list.replaceChildren(...items);
    // No keyring: nothing here can store a key; say why rather than fail on submit.
    for (const el of document.querySelectorAll("#keys form input, #keys form button")) {
      el.disabled = Boolean(data.keyring) || (el.classList.contains("danger") && el.dataset.set !== "1");
      if (data.keyring) el.setAttribute("aria-describedby", "keyring-problem");
      else el.removeAttribute("aria-describedby");
    }
    jumpToHash();
  }

  function keyItem(k) {
    const state = k.set === null ? badge("unknown", "warn") : k.set ? badge("set", "ok") : badge("not set", "bad");
    const used = h("p", { class: "used", text: "used by " + k.backends.join(", ") });
    if (k.kind !== "keyring") {
      return h(
        "div",
        { class: "key", "data-key": k.name },
        h("div", { class: "key-head" }, h("span", { class: "name", text: "env:" + k.name }), state),
        used,
        h("p", { class: "hint", text: "Read from the environment variable " + k.name + "; change it where traywire is started." }),
      );
    }
    const id = "key-" + k.name;
    const input = h("input", { id, type: "password", autocomplete: "new-password", spellcheck: "false", required: true });
    const save = h("button", { type: "submit", text: k.set ? "Replace" : "Save" });
    const del = h("button", { type: "button", class: "danger", text: "Delete", disabled: !k.set, "data-set": k.set ? "1" : "0" });
    let armed = null;
    del.addEventListener("click", async () => {
      if (!armed) {
        del.textContent = "Confirm delete";
        armed = setTimeout(() => {
          armed = null;
          del.textContent = "Delete";
        }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      await deleteKey(k.name);
    });
    const form = h(
      "form",
      { class: "key-form", autocomplete: "off" },
      h("label", { for: id, text: (k.set ? "Replace the key " : "Set the key ") + k.name }),
      input,
      h("div", { class: "actions" }, save, del),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      saveKey(k.name, input, save);
    });
    return h(
      "div",
      { class: "key", "data-key": k.name },
      h("div", { class: "key-head" }, h("span", { class: "name", text: k.name }), state),
      used,
      form,
    );
  }

  async function saveKey(name, input, button) {
    const msg = $("key-msg");
    const value = input.value;
    if (!value) {
      setMsg(msg, "Enter the key first.", false);
      input.focus();
      return;
    }
    button.disabled = true;
    input.value = "";
    try {
      const r = await api("POST", "/ui/api/keys", { name, value });
      setMsg(msg, "Key " + r.name + (r.replaced ? " replaced." : " saved.") + (r.backends.length ? " In use now by " + r.backends.join(", ") + "." : " No backend refers to keyring:" + r.name + " yet."), true);
      await loadKeys();
      await pollStatus();
    } catch (e) {
      setMsg(msg, "Key " + name + " not saved: " + e.message, false);
    } finally {
      button.disabled = false;
    }
  }

  async function deleteKey(name) {
    const msg = $("key-msg");
    try {
      const r = await api("DELETE", "/ui/api/keys/" + encodeURIComponent(name), {});
      setMsg(msg, r.deleted ? "Key " + name + " deleted." : "Key " + name + " was not set.", true);
      await loadKeys();
      await pollStatus();
    } catch (e) {
      setMsg(msg, "Key " + name + " not deleted: " + e.message, false);
    }
  }

  function newKey(ev) {
    ev.preventDefault();
    const name = $("new-key-name");
    const value = $("new-key-value");
    const button = ev.target.querySelector("button");
    const n = name.value.trim();
    if (!n) {
      setMsg($("key-msg"), "Enter a key name.", false);
      name.focus();
      return;
    }
    saveKey(n, value, button).then(() => {
      name.value = "";
    });
  }

  // ------------------------------------------------------------------ start

  // Opened at /ui#keys (the tray's "Set cloud API key…"): the sections above
  // fill in after load, so scroll there again once they have.
  function jumpToHash() {
    if (S.jumped || !location.hash || !S.status || !$("key-list").children.length) return;
    const target = document.getElementById(location.hash.slice(1));
    if (!target) return;
    S.jumped = true;
    target.scrollIntoView();
    if (location.hash === "#keys") {
      const first = target.querySelector('input[type="password"]');
      if (first) first.focus({ preventScroll: true });
    }
  }

  async function boot() {
    try {
      await loadMeta();
    } catch (e) {
      $("conn").textContent = "cannot reach traywire: " + e.message;
      $("conn").classList.add("bad");
      setTimeout(boot, 3000);
      return;
    }
    every(pollStatus, STATUS_EVERY);
    every(() => pollRequests(false), REQUESTS_EVERY);
    every(pollLatency, LATENCY_EVERY);
    loadKeys();
  }

  $("filters").addEventListener("change", () => pollRequests(true));
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("pref-form").addEventListener("submit", (ev) => ev.preventDefault());
  $("pref-reset").addEventListener("click", resetPreference);
  $("older").addEventListener("click", loadOlder);
  $("newer").addEventListener("click", loadNewer);
  $("newest").addEventListener("click", loadNewest);
  $("reload").addEventListener("click", reloadConfig);
  $("new-key").addEventListener("submit", newKey);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && S.meta) pollStatus();
  });
  boot();
})();
