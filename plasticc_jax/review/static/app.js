// The review page: shows a candidate, sends the expert's answer, shows the next one.
// Plain DOM and SVG, no library; every request carries the page's token.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const SVG_NS = "http://www.w3.org/2000/svg";
// LSST u, g, r, i, z, y: the colours of the project's figures (plasticc_jax/figures.py).
const BAND_COLOURS = ["#6a3d9a", "#1f78b4", "#33a02c", "#ff7f00", "#e31a1c", "#8c510a"];
const LABEL_TEXT = { anomaly: "anomaly", not_interesting: "not interesting", skip: "skipped" };

let state = null; // the last /api/state
let shown = null; // the object on screen (/api/object)
let busy = false;

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

async function api(path, options = {}) {
  const headers = { "X-Review-Token": TOKEN, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error;
    } catch (_) {
      // not JSON: keep the status text
    }
    const error = new Error(`${response.status}: ${message}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function showMessage(text) {
  const box = $("#message");
  box.textContent = text || "";
  box.hidden = !text;
}

function format(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") {
    return Number.isInteger(value) ? String(value) : value.toPrecision(digits);
  }
  return String(value);
}

// --- progress -------------------------------------------------------------------------------

function showProgress() {
  const p = state.progress;
  const box = $("#progress");
  box.replaceChildren();
  const parts = [
    ["reviewed", p.reviewed],
    ["remaining", p.remaining],
    ["anomalies found", p.found],
  ];
  parts.forEach(([name, value], i) => {
    if (i) box.append(" · ");
    box.append(`${name} `, element("b", {}, String(value)));
  });
  box.dataset.reviewed = p.reviewed;
  box.dataset.remaining = p.remaining;
  box.dataset.found = p.found;
  box.title = `${p.not_interesting} not interesting, ${p.skipped} skipped, ${p.pool} candidates; ` +
    `last re-rank ${state.rerank_ms} ms`;
}

// --- light-curve plots ----------------------------------------------------------------------

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

function ticks(lo, hi, count) {
  const step = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(step || 1));
  const nice = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= step) || step;
  const out = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi + 1e-9; t += nice) out.push(+t.toFixed(6));
  return out;
}

// One light curve: observed grid cells with error bars, and the reconstruction (mean +- sigma).
function plotCurve(curve, { width = 760, height = 300, small = false } = {}) {
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (!curve) {
    const text = svgElement("text", { x: 12, y: height / 2, class: "tick none" });
    text.textContent = "no light curve: the object is not in the run's prepared dataset";
    svg.append(text);
    return svg;
  }
  const margin = small
    ? { left: 34, right: 6, top: 6, bottom: 18 }
    : { left: 48, right: 12, top: 12, bottom: 34 };
  // The vertical range: the observations with their errors and the reconstructed mean (its
  // spread, large where nothing was observed, is clipped rather than allowed to flatten the data).
  const ys = [];
  for (const band of curve.bands) {
    band.flux.forEach((f, i) => {
      if (band.observed[i]) ys.push(f - band.flux_err[i], f + band.flux_err[i]);
    });
    ys.push(...band.mean);
  }
  const [x0, x1] = extent(curve.times);
  let [y0, y1] = extent(ys);
  const pad = 0.05 * (y1 - y0 || 1);
  y0 -= pad;
  y1 += pad;
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0 || 1)) * (width - margin.left - margin.right);
  const sy = (y) => {
    const clipped = Math.min(Math.max(y, y0), y1);
    return height - margin.bottom - ((clipped - y0) / (y1 - y0)) * (height - margin.top - margin.bottom);
  };

  const axes = svgElement("g");
  axes.append(svgElement("line", { x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom, class: "axis" }));
  axes.append(svgElement("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: height - margin.bottom, class: "axis" }));
  if (y0 < 0 && y1 > 0) {
    axes.append(svgElement("line", { x1: margin.left, x2: width - margin.right, y1: sy(0), y2: sy(0), class: "zero" }));
  }
  for (const t of ticks(x0, x1, small ? 3 : 6)) {
    const label = svgElement("text", { x: sx(t), y: height - margin.bottom + 13, "text-anchor": "middle", class: "tick" });
    label.textContent = String(t);
    axes.append(label);
  }
  for (const t of ticks(y0, y1, small ? 3 : 5)) {
    const label = svgElement("text", { x: margin.left - 4, y: sy(t) + 4, "text-anchor": "end", class: "tick" });
    label.textContent = String(t);
    axes.append(label);
  }
  if (!small) {
    const xl = svgElement("text", { x: (margin.left + width - margin.right) / 2, y: height - 4, "text-anchor": "middle", class: "tick" });
    xl.textContent = "days from the reference time";
    const yl = svgElement("text", { x: 12, y: (margin.top + height - margin.bottom) / 2, "text-anchor": "middle", class: "tick", transform: `rotate(-90 12 ${(margin.top + height - margin.bottom) / 2})` });
    yl.textContent = "flux / amplitude";
    axes.append(xl, yl);
  }
  svg.append(axes);

  curve.bands.forEach((band, b) => {
    const colour = BAND_COLOURS[b % BAND_COLOURS.length];
    const group = svgElement("g", { "data-band": band.name });
    const upper = curve.times.map((t, i) => `${sx(t)},${sy(band.mean[i] + band.sigma[i])}`);
    const lower = curve.times.map((t, i) => `${sx(t)},${sy(band.mean[i] - band.sigma[i])}`).reverse();
    group.append(svgElement("polygon", { points: upper.concat(lower).join(" "), fill: colour, "fill-opacity": 0.07, stroke: "none" }));
    group.append(svgElement("polyline", {
      points: curve.times.map((t, i) => `${sx(t)},${sy(band.mean[i])}`).join(" "),
      fill: "none", stroke: colour, "stroke-width": small ? 0.8 : 1.2, "stroke-opacity": 0.6,
    }));
    band.flux.forEach((f, i) => {
      if (!band.observed[i]) return;
      const x = sx(curve.times[i]);
      group.append(svgElement("line", { x1: x, x2: x, y1: sy(f - band.flux_err[i]), y2: sy(f + band.flux_err[i]), stroke: colour, "stroke-width": 1 }));
      group.append(svgElement("circle", { cx: x, cy: sy(f), r: small ? 2 : 3.5, fill: colour, stroke: "#fff", "stroke-width": small ? 0.5 : 1, class: "obs" }));
    });
    svg.append(group);
    if (!small) { // the legend: a click shows or hides the band
      const key = svgElement("text", { x: width - margin.right - 6 - (curve.bands.length - b) * 22, y: margin.top + 10, fill: colour, "font-weight": 600, class: "key" });
      key.textContent = band.name;
      key.addEventListener("click", () => {
        const hide = group.getAttribute("visibility") !== "hidden";
        group.setAttribute("visibility", hide ? "hidden" : "visible");
        key.setAttribute("fill-opacity", hide ? 0.3 : 1);
      });
      svg.append(key);
    }
  });
  return svg;
}

// --- the candidate view ---------------------------------------------------------------------

function fillTable(selector, rows) {
  const body = $(`${selector} tbody`);
  body.replaceChildren();
  for (const [name, value] of rows) {
    const tr = element("tr");
    tr.append(element("th", {}, name), element("td", {}, value));
    body.append(tr);
  }
}

async function showObject(objectId) {
  const title = $("#candidate-title");
  if (objectId === null || objectId === undefined) {
    shown = null;
    title.textContent = "Every candidate has been answered";
    title.dataset.objectId = "";
    $("#candidate-guess").textContent = "";
    $("#candidate-label").hidden = true;
    $("#lightcurve").replaceChildren();
    $("#neighbours").replaceChildren();
    fillTable("#scores", []);
    fillTable("#context", []);
    return;
  }
  const obj = await api(`/api/object?id=${encodeURIComponent(objectId)}`);
  shown = obj;
  title.textContent = `Object ${obj.object_id} · place ${obj.position} of ${state.progress.pool}`;
  title.dataset.objectId = obj.object_id;
  const share = obj.class_prob === null ? "" : ` (${Math.round(100 * obj.class_prob)}%)`;
  const where = obj.galactic === null ? "" : obj.galactic ? " · galactic" : " · extragalactic";
  $("#candidate-guess").textContent =
    `nearest known class: ${obj.class_guess}${share}${where} · detector rank ${obj.static_rank}`;
  const badge = $("#candidate-label");
  badge.hidden = !obj.label;
  badge.className = `label-badge ${obj.label || ""}`;
  badge.textContent = obj.label ? `answered: ${LABEL_TEXT[obj.label]}` : "";

  $("#lightcurve").replaceChildren(plotCurve(obj.curve));
  fillTable("#scores", [
    ["active score", format(obj.active_score)],
    ...Object.entries(obj.scores).map(([name, s]) => [name, `${format(s.value)} (${s.percentile}%)`]),
  ]);
  fillTable("#context", Object.entries(obj.context).map(([name, value]) => [name, format(value)]));
  const grid = $("#neighbours");
  grid.replaceChildren();
  for (const n of obj.neighbours) {
    const figure = element("figure", { class: "plot" });
    figure.append(plotCurve(n.curve, { width: 300, height: 150, small: true }));
    figure.append(element("figcaption", {}, `${n.class_name} · object ${n.object_id} · distance ${format(n.distance)}`));
    grid.append(figure);
  }
}

async function answer(label) {
  if (busy || !shown) return;
  busy = true;
  document.querySelectorAll(".answer").forEach((b) => { b.disabled = true; });
  try {
    state = await api("/api/label", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      // The label this page showed: if another tab answered since, the server refuses (409).
      body: JSON.stringify({ object_id: shown.object_id, label, previous: shown.label || null }),
    });
    showProgress();
    showMessage("");
    await showObject(state.next);
    if (!$("#ranking-view").hidden) await loadRanking();
  } catch (error) {
    showMessage(`The answer was not saved: ${error.message}`);
    if (error.status === 409) {
      // Show the object as it is now (its answer from the other tab): answer again to change it.
      state = await api("/api/state");
      showProgress();
      await showObject(shown.object_id);
    }
  } finally {
    busy = false;
    document.querySelectorAll(".answer").forEach((b) => { b.disabled = false; });
  }
}

// --- the ranking view -----------------------------------------------------------------------

let rankingRequests = 0; // a slower, older answer must not overwrite a newer one

async function loadRanking() {
  const request = ++rankingRequests;
  const form = new FormData($("#filters"));
  const query = new URLSearchParams();
  for (const name of ["class", "galactic", "min", "max", "answered"]) {
    if (form.get(name)) query.set(name, form.get(name));
  }
  const { rows, matched } = await api(`/api/ranking?${query}`);
  if (request !== rankingRequests) return;
  $("#ranking-count").textContent =
    rows.length < matched
      ? `the first ${rows.length} of ${matched} objects: filter to see the others`
      : `${matched} objects`;
  const body = $("#ranking tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = element("tr", { "data-object-id": row.object_id });
    const share = row.class_prob === null ? "" : ` (${Math.round(100 * row.class_prob)}%)`;
    tr.append(
      element("td", {}, String(row.position)),
      element("td", {}, String(row.object_id)),
      element("td", {}, format(row.active_score)),
      element("td", {}, format(row.anomaly_score)),
      element("td", {}, row.class_guess + share),
      element("td", {}, format(row.galactic)),
      element("td", { class: row.label || "" }, row.label ? LABEL_TEXT[row.label] : ""),
    );
    tr.addEventListener("click", () => {
      switchView("review");
      showObject(row.object_id).catch((e) => showMessage(e.message));
    });
    body.append(tr);
  }
  body.dataset.rows = rows.length;
  body.dataset.query = query.toString(); // which filters the rows on screen answer
}

function switchView(name) {
  const review = name === "review";
  $("#review-view").hidden = !review;
  $("#ranking-view").hidden = review;
  $("#tab-review").classList.toggle("active", review);
  $("#tab-ranking").classList.toggle("active", !review);
  if (!review) loadRanking().catch((e) => showMessage(e.message));
}

// --- start ----------------------------------------------------------------------------------

async function start() {
  document.querySelectorAll(".answer").forEach((b) => {
    b.addEventListener("click", () => answer(b.dataset.label));
  });
  $("#tab-review").addEventListener("click", () => switchView("review"));
  $("#tab-ranking").addEventListener("click", () => switchView("ranking"));
  $("#filters").addEventListener("change", () => loadRanking().catch((e) => showMessage(e.message)));
  $("#export").href = `/api/labels.csv?token=${encodeURIComponent(TOKEN)}`;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea")) return;
    const label = { a: "anomaly", n: "not_interesting", s: "skip" }[event.key];
    if (label && !$("#review-view").hidden) {
      event.preventDefault();
      answer(label);
    } else if (event.key === "r") {
      switchView($("#review-view").hidden ? "review" : "ranking");
    }
  });
  try {
    state = await api("/api/state");
    const select = $("#filters select[name=class]");
    for (const name of state.classes) select.append(element("option", { value: name }, name));
    showProgress();
    await showObject(state.next);
    document.body.dataset.ready = "1";
  } catch (error) {
    showMessage(`Cannot load the review: ${error.message}`);
  }
}

start();
