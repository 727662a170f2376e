// regcache dashboard: asks /dashboard.json every two seconds and draws the
// page from it. Every value is written as text (textContent), never as
// markup. No library, nothing fetched from elsewhere.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const RESULT_COLORS = { hit: "#2e9b4f", miss: "#3a78c2", stale: "#d08a1a", coalesced: "#8a5cc2", denied: "#777777", error: "#c0392b" };
const PALETTE = ["#3a78c2", "#2e9b4f", "#d08a1a", "#8a5cc2", "#c0392b", "#2aa3a3", "#777777"];

let span = "1h";
let updates = 0;
let last = null;
let timer = 0;
// The admin token, if the page was opened as /#token=...: a fragment is
// never sent to the server nor logged; the script sends it as a bearer
// token with each data request.
const token = new URLSearchParams(location.hash.slice(1)).get("token");

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else if (k === "title") e.title = v; else e.setAttribute(k, v);
  }
  for (const k of kids) {
    if (k === undefined || k === null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function bytes(n) {
  if (n === undefined || n === null || n < 0) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + u[i];
}

function pct(r) { return r < 0 ? "-" : (100 * r).toFixed(1) + " %"; }

function num(n) { return Number(n || 0).toLocaleString("en-US"); }

function dur(secs) {
  if (!isFinite(secs)) return "-";
  secs = Math.max(0, Math.round(secs));
  const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
  if (h > 0) return h + "h" + String(m).padStart(2, "0") + "m";
  if (m > 0) return m + "m" + String(s).padStart(2, "0") + "s";
  return s + "s";
}

function zero(t) { return !t || t.startsWith("0001-"); }

function clock(t) { return zero(t) ? "-" : new Date(t).toISOString().slice(11, 19) + " UTC"; }

function until(t, now) { return zero(t) ? null : (Date.parse(t) - now) / 1000; }

function card(key, title, big, sub, level, extra) {
  const c = el("div", { class: "card " + (level || ""), "data-card": key }, el("h3", {}, title), el("div", { class: "big" }, big));
  if (extra) c.append(extra);
  for (const line of [].concat(sub || [])) c.append(el("div", { class: "sub" }, line));
  return c;
}

function bar(ratio, level) {
  const b = el("div", { class: "bar " + (level || "") });
  const fill = el("span");
  fill.style.width = Math.max(0, Math.min(100, ratio * 100)).toFixed(1) + "%"; // CSSOM: allowed by the CSP, a style attribute is not
  b.append(fill);
  return b;
}

function renderCards(s) {
  const t = s.totals, now = Date.parse(s.time);
  const r = t.byResult || {};
  const cards = [
    card("hit-ratio", "Hit ratio", pct(t.hitRatio), ["by bytes: " + pct(t.byteHitRatio),
      num(r.hit) + " hits · " + num(r.stale) + " stale · " + num(r.miss) + " misses · " + num(r.coalesced) + " coalesced"]),
    card("pulls-saved", "Pulls saved", num(t.pullsSaved), "clients' manifest GETs not counted upstream, net of the mirror's own", t.pullsSaved > 0 ? "ok" : ""),
    card("bytes", "Bytes from cache", bytes(t.bytesFromCache), ["fetched upstream: " + bytes(t.bytesFetched),
      "relayed on misses: " + bytes(t.bytesFromUpstream) + (t.bytesCoalesced ? " · coalesced: " + bytes(t.bytesCoalesced) : "")]),
  ];
  for (const u of s.upstreams) {
    const rl = u.rateLimit;
    if (zero(rl.updated)) {
      cards.push(card("headroom-" + u.name, "Headroom · " + u.name, "-", "no rate limit reported yet"));
      continue;
    }
    const level = rl.remaining <= rl.reserve ? "bad" : rl.remaining <= 2 * rl.reserve ? "warn" : "ok";
    const left = until(rl.reset, now);
    const reset = left === null ? "reset unknown" : "resets in " + dur(left) + (rl.resetEstimated ? " (estimated)" : "") + " · " + clock(rl.reset);
    cards.push(card("headroom-" + u.name, "Headroom · " + u.name, num(rl.remaining) + " / " + num(rl.limit),
      [reset, "reserve " + num(rl.reserve) + (rl.window ? " · window " + dur(Number(rl.window)) : "") + (rl.source ? " · counted for " + rl.source : "")],
      level, bar(rl.limit > 0 ? rl.remaining / rl.limit : 0, level === "ok" ? "" : level)));
  }
  const c = s.cache;
  if (c.maxSize > 0) {
    const ratio = c.bytes / c.maxSize, level = ratio >= 0.95 ? "bad" : ratio >= 0.85 ? "warn" : "ok";
    cards.push(card("cache", "Cache use", pct(ratio), [bytes(c.bytes) + " of " + bytes(c.maxSize), counts(s)], level, bar(ratio, level === "ok" ? "" : level)));
  } else {
    cards.push(card("cache", "Cache use", bytes(c.bytes), ["no cap (storage.max_size)", counts(s)]));
  }
  const f = s.fleet || {};
  cards.push(card("fleet", "Nodes", num(f.lastHour), ["in the last hour · " + num(f.lastDay) + " in the last day",
    num(f.quiet) + " gone quiet (not seen for a day)" + (f.expected ? " · " + num(f.neverSeen) + " expected, never seen" : ""),
    f.canary ? "last canary: " + f.canary + " at " + clock(f.canaryTime) : "no canary yet (client … status --verify)"], f.quiet > 0 || f.neverSeen > 0 ? "warn" : ""));
  cards.push(card("fills", "Fills", num(s.activeFills), "running · " + num(t.fillsCommitted) + " committed · " + num(t.fillsFailed) + " failed", t.fillsFailed > 0 ? "warn" : ""));
  document.getElementById("cards").replaceChildren(...cards);
}

function counts(s) {
  const c = s.cache;
  if (zero(c.counted)) return "index not counted yet" + (s.cacheError ? ": " + s.cacheError : "");
  return num(c.blobs) + " blobs · " + num(c.tags) + " tags" + (s.maxAge ? " · max age " + s.maxAge : "") + (c.pinned ? " · " + bytes(c.pinned) + " pinned" : "") + (c.cluster ? " · cluster: " + c.cluster : "") + (c.scrub ? " · scrub " + c.scrub : "") + (s.cacheError ? " · last count failed: " + s.cacheError : "");
}

function renderUpstreams(s) {
  const now = Date.parse(s.time);
  const level = { up: "ok", unknown: "", "rate-limited": "warn", "breaker-open": "warn", "stale-serving": "bad", "credentials-rejected": "bad" };
  const cards = s.upstreams.map((u) => {
    const sub = [u.url];
    if (u.reason) sub.push("reason: " + u.reason);
    if (u.waiting) sub.push(num(u.waiting) + " requests waiting for a connection (max_connections)");
    if (u.sealed) sub.push("sealed: never contacted; " + num(u.sealedMisses || 0) + " misses it would have fetched");
    if (!zero(u.since)) sub.push("since " + clock(u.since));
    const next = until(u.nextProbe, now);
    if (next !== null) sub.push("next probe " + (next > 0 ? "in " + dur(next) : "now"));
    for (const b of u.breakers || []) sub.push(b.scope + " breaker open since " + clock(b.since) + (b.lastError ? ": " + b.lastError : ""));
    sub.push(num(u.pullsSaved) + " pulls saved · " + bytes(u.fetchedBytes) + " fetched · " + num(u.tokenRequests) + " tokens");
    const c = card("upstream-" + u.name, u.name, u.stateText, sub, level[u.state] || "");
    c.dataset.state = u.state;
    return c;
  });
  if (cards.length === 0) cards.push(el("p", { class: "muted" }, "no upstreams configured"));
  document.getElementById("upstreams").replaceChildren(...cards);
}

function rows(id, list, row, empty, cols) {
  const body = document.querySelector("#" + id + " tbody");
  const trs = list.map(row);
  if (trs.length === 0) trs.push(el("tr", {}, el("td", { colspan: String(cols), class: "muted" }, empty)));
  body.replaceChildren(...trs);
}

function repoName(r) { return r.name ? r.upstream + "/" + r.name : r.upstream + "/(private: ask with the admin token)"; }

function renderTables(s) {
  rows("fills", s.fills, (f) => {
    const known = f.size > 0;
    return el("tr", {}, el("td", { class: "mono", title: f.digest }, f.digest.slice(0, 19) + "…"), el("td", {}, f.upstream || "-"),
      el("td", {}, known ? bar(f.written / f.size) : null, bytes(f.written) + (known ? " of " + bytes(f.size) + " (" + pct(f.written / f.size) + ")" : " (size unknown)")),
      el("td", { class: "num" }, bytes(f.rate) + "/s"), el("td", { class: "num" }, num(f.readers)));
  }, "no fill running", 5);
  rows("top-pulls", s.topPulls, (r) => el("tr", {}, el("td", { class: "mono" }, repoName(r)), el("td", { class: "num" }, num(r.count))), "no pulls yet", 2);
  rows("top-bytes", s.topBytes, (r) => el("tr", {}, el("td", { class: "mono" }, repoName(r)), el("td", { class: "num" }, bytes(r.count))), "nothing served yet", 2);
  rows("errors", s.errors, (e) => el("tr", {}, el("td", { class: "num" }, clock(e.time)), el("td", {}, e.result),
    el("td", {}, e.upstream || "-"), el("td", { class: "mono" }, e.repo || (e.upstream ? "(private)" : "-")),
    el("td", { class: "num" }, e.status ? String(e.status) : "aborted"),
    el("td", {}, [e.code, e.reason].filter(Boolean).join(": ") || "-")), "no errors", 6);
  renderPolicy(s);
  document.getElementById("private-note").textContent = s.private ? "" :
    "Repositories of upstreams asked with credentials are not named: open the page as /#token=<admin token> (or send Authorization: Bearer) to see them.";
}

// renderPolicy shows the pull policy's recent denials (the card is hidden
// without a policy).
function renderPolicy(s) {
  const p = s.policy;
  document.getElementById("policy-wrap").hidden = !p;
  if (!p) return;
  document.getElementById("policy-mode").textContent = "(" + p.mode + " mode, " + num(p.rules) + " rules)";
  rows("policy-denials", p.denials || [], (d) => el("tr", {}, el("td", { class: "num" }, clock(d.time)),
    el("td", {}, d.decision === "would_deny" ? "would deny (audit)" : d.decision),
    el("td", { class: "mono" }, d.upstream + "/" + d.repository + (d.tag ? ":" + d.tag : "")),
    el("td", { class: "mono", title: d.digest }, d.digest.slice(0, 19) + "…"), el("td", {}, d.client || "-"),
    el("td", { class: "mono" }, d.rule), el("td", {}, d.reason)),
    s.private ? "no pull refused" : "denials name repositories: open the page with the admin token to see them", 7);
}

// lineChart draws series over times into svg: one path per series with
// its points (negative values are gaps), a zero line and the top value
// (at least cap, drawn dashed, and least).
function lineChart(id, times, series, fmt, cap, least) {
  const svg = document.getElementById(id);
  const w = Math.max(svg.clientWidth, 200), h = Math.max(svg.clientHeight, 100);
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  const pad = { l: 4, r: 4, t: 16, b: 14 };
  let top = Math.max(cap || 0, least || 0);
  for (const s of series) for (const v of s.values) if (v > top) top = v;
  if (top <= 0) top = 1;
  const t0 = times[0], t1 = times[times.length - 1];
  const x = (t) => pad.l + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (w - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / top) * (h - pad.t - pad.b);
  const kids = [svgEl("line", { x1: pad.l, x2: w - pad.r, y1: y(0), y2: y(0), stroke: "#ccc" }),
    svgEl("line", { x1: pad.l, x2: w - pad.r, y1: y(top), y2: y(top), stroke: "#eee" })];
  const label = svgEl("text", { x: pad.l + 2, y: 12 });
  label.textContent = fmt(top);
  kids.push(label);
  if (t1 > t0) {
    const when = svgEl("text", { x: w - pad.r - 2, y: h - 2, "text-anchor": "end" });
    when.textContent = clock(new Date(t1).toISOString());
    const from = svgEl("text", { x: pad.l + 2, y: h - 2 });
    from.textContent = clock(new Date(t0).toISOString());
    kids.push(from, when);
  }
  if (cap) kids.push(svgEl("line", { x1: pad.l, x2: w - pad.r, y1: y(cap), y2: y(cap), stroke: "#c0392b", "stroke-dasharray": "4 3", class: "cap" }));
  for (const s of series) {
    let d = "", pen = false, points = 0;
    s.values.forEach((v, i) => {
      if (v === null || v < 0) { pen = false; return; }
      d += (pen ? "L" : "M") + x(times[i]).toFixed(1) + " " + y(v).toFixed(1) + " ";
      pen = true;
      points++;
    });
    if (points === 1) d += "h1"; // a lone point still shows
    kids.push(svgEl("path", { d: d.trim() || "M0 0", fill: "none", stroke: s.color, "stroke-width": "1.6", class: "series", "data-series": s.name, "data-points": String(points) }));
  }
  svg.replaceChildren(...kids);
  const legend = document.getElementById(id.replace("chart-", "legend-"));
  legend.replaceChildren(...series.map((s) => {
    const lastV = s.values.length ? s.values[s.values.length - 1] : -1;
    const i = el("i");
    i.style.background = s.color;
    return el("span", {}, i, s.name + " " + (lastV < 0 ? "-" : fmt(lastV)));
  }), ...(cap ? [el("span", {}, "cap " + fmt(cap))] : []));
}

function renderCharts(s) {
  const h = s.history;
  if (!h || !h.times || h.times.length === 0) return;
  const rate = (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(2)) + "/s";
  lineChart("chart-requests", h.times, Object.keys(RESULT_COLORS).map((k) => ({ name: k, color: RESULT_COLORS[k], values: h.results[k] || [] })), rate);
  lineChart("chart-bandwidth", h.times, [{ name: "from cache", color: "#2e9b4f", values: h.bytesCache }, { name: "fetched upstream", color: "#3a78c2", values: h.bytesUpstream }], (v) => bytes(v) + "/s");
  lineChart("chart-cache", h.times, [{ name: "cache", color: "#3a78c2", values: h.cacheBytes }], bytes, h.maxBytes > 0 ? h.maxBytes : 0);
  lineChart("chart-ratelimit", h.times, Object.keys(h.remaining).map((name, i) => ({ name: name, color: PALETTE[i % PALETTE.length], values: h.remaining[name] })), (v) => num(Math.round(v)), 0,
    Math.max(0, ...s.upstreams.map((u) => u.rateLimit.limit || 0))); // the scale reaches the limit
}

function render(s) {
  const badge = document.getElementById("state");
  badge.textContent = s.state;
  badge.className = "badge " + s.state;
  document.getElementById("asof").textContent = "as of " + clock(s.time) + " · up " + dur((Date.parse(s.time) - Date.parse(s.started)) / 1000) + " · live every 2 s";
  document.getElementById("degraded").replaceChildren(...(s.degraded || []).map((d) => el("li", {}, d)));
  renderCards(s);
  renderUpstreams(s);
  renderTables(s);
  renderCharts(s);
  updates++;
  document.body.dataset.updates = String(updates);
}

async function poll() {
  try {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const resp = await fetch("/dashboard.json?span=" + encodeURIComponent(span), { cache: "no-store", credentials: "same-origin", headers: headers });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    last = await resp.json();
    render(last);
  } catch (err) {
    const badge = document.getElementById("state");
    badge.textContent = "mirror unreachable";
    badge.className = "badge degraded";
    document.getElementById("footer").textContent = "last update failed: " + err.message + "; retrying every 2 s";
    schedule();
    return;
  }
  document.getElementById("footer").textContent = "";
  schedule();
}

// schedule sets the one timer of the next poll.
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll(".spans button")) {
    b.addEventListener("click", () => {
      span = b.dataset.span;
      for (const o of document.querySelectorAll(".spans button")) o.classList.toggle("on", o === b);
      clearTimeout(timer);
      poll();
    });
  }
  window.addEventListener("resize", () => { if (last) renderCharts(last); });
  poll();
});
