// The review page: shows a candidate, sends the expert's answer, shows the next one.
// Plain DOM and SVG, no library; every request carries the page's token.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const SVG_NS = "http://www.w3.org/2000/svg";
// LSST u, g, r, i, z, y: the colours and markers of the project's figures
// (plasticc_jax/figures.py): Okabe & Ito's colour-blind-safe palette, and a marker shape per band
// so that no band is told by its colour alone.
const BAND_COLOURS = ["#cc79a7", "#0072b2", "#009e73", "#e69f00", "#d55e00", "#000000"];
const BAND_SHAPES = [ // SVG paths of size s about (0, 0): circle, square, triangles, diamond, plus
  (s) => `M${-s},0a${s},${s} 0 1,0 ${2 * s},0a${s},${s} 0 1,0 ${-2 * s},0Z`,
  (s) => `M${-0.9 * s},${-0.9 * s}h${1.8 * s}v${1.8 * s}h${-1.8 * s}Z`,
  (s) => `M0,${-1.2 * s}L${1.15 * s},${0.8 * s}H${-1.15 * s}Z`,
  (s) => `M0,${-1.3 * s}L${1.3 * s},0L0,${1.3 * s}L${-1.3 * s},0Z`,
  (s) => `M0,${1.2 * s}L${1.15 * s},${-0.8 * s}H${-1.15 * s}Z`,
  (s) => {
    const w = 0.4 * s;
    return `M${-w},${-s}h${2 * w}v${s - w}h${s - w}v${2 * w}h${w - s}v${s - w}h${-2 * w}` +
      `v${w - s}h${w - s}v${-2 * w}h${s - w}Z`;
  },
];
const LABEL_TEXT = { anomaly: "anomaly", not_interesting: "not interesting", skip: "skipped" };

let state = null; // the last /api/state
let shown = null; // the object on screen (/api/object)
let busy = false;
let objectRequests = 0; // the object shown is the one asked for last
let navigations = 0; // objects opened by the reviewer: an answer then does not move on

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

function bandMarker(b, x, y, size, attributes = {}) {
  return svgElement("path", {
    d: BAND_SHAPES[b % BAND_SHAPES.length](size),
    transform: `translate(${x},${y})`,
    fill: BAND_COLOURS[b % BAND_COLOURS.length],
    ...attributes,
  });
}

async function api(path, options = {}) {
  const headers = { "X-Review-Token": TOKEN, ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (_) { // no answer at all (fetch's TypeError): told apart from the page's own errors
    const error = new Error("no answer from the review server");
    error.unreachable = true;
    throw error;
  }
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

// What went wrong, in the words of what the reviewer can do about it.
function describe(error) {
  if (error.unreachable) {
    return "cannot reach the review server (was it stopped?); every answer it acknowledged is saved";
  }
  if (error.status === 403) {
    return "the review server does not know this page (was it restarted?): open the URL it printed";
  }
  return error.message;
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
function plotCurve(curve, { width = 760, height = 300, small = false, label = "light curve" } = {}) {
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
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
      group.append(bandMarker(b, x, sy(f), small ? 2.2 : 4, { stroke: "#fff", "stroke-width": small ? 0.5 : 1, class: "obs" }));
    });
    svg.append(group);
  });
  return svg;
}

// The main plot's legend: a button per band (its marker and name) that shows or hides it.
function bandLegend(svg, curve) {
  const legend = element("div", { class: "legend", role: "group", "aria-label": "passbands shown" });
  curve.bands.forEach((band, b) => {
    const key = element("button", { type: "button", class: "band-key", "aria-pressed": "true", title: `show or hide band ${band.name}` });
    const icon = svgElement("svg", { viewBox: "-7 -7 14 14", width: 14, height: 14, "aria-hidden": "true" });
    icon.append(bandMarker(b, 0, 0, 5));
    key.append(icon, ` ${band.name}`);
    key.addEventListener("click", () => {
      const shown = key.getAttribute("aria-pressed") === "true";
      key.setAttribute("aria-pressed", String(!shown));
      svg.querySelector(`g[data-band="${band.name}"]`).setAttribute("visibility", shown ? "hidden" : "visible");
    });
    legend.append(key);
  });
  return legend;
}

function curveLabel(what, curve) {
  if (!curve) return `${what}: no light curve`;
  const cells = curve.bands.reduce((n, band) => n + band.observed.filter(Boolean).length, 0);
  const bands = curve.bands.filter((band) => band.observed.some(Boolean)).map((band) => band.name);
  return `${what}: ${cells} observed cells in bands ${bands.join(", ") || "none"}, ` +
    "with the model's reconstruction";
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

// Shows an object (or that every candidate is answered); false when a newer request replaced
// this one before it loaded (nothing shown).
async function showObject(objectId) {
  const title = $("#candidate-title");
  if (objectId === null || objectId === undefined) {
    ++objectRequests;
    shown = null;
    title.textContent = "Every candidate has been answered";
    title.dataset.objectId = "";
    $("#candidate-guess").textContent = "";
    $("#candidate-label").hidden = true;
    $("#lightcurve").replaceChildren();
    $("#neighbours").replaceChildren();
    fillTable("#scores", []);
    fillTable("#context", []);
    return true;
  }
  const request = ++objectRequests;
  const obj = await api(`/api/object?id=${encodeURIComponent(objectId)}`);
  if (request !== objectRequests) return false;
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

  const plot = plotCurve(obj.curve, { label: curveLabel(`Light curve of object ${obj.object_id}`, obj.curve) });
  $("#lightcurve").replaceChildren(...(obj.curve ? [bandLegend(plot, obj.curve)] : []), plot);
  fillTable("#scores", [
    ["active score", format(obj.active_score)],
    ...Object.entries(obj.scores).map(([name, s]) => [
      name, s.percentile === null ? format(s.value) : `${format(s.value)} (${s.percentile}%)`,
    ]),
  ]);
  fillTable("#context", Object.entries(obj.context).map(([name, value]) => [name, format(value)]));
  const grid = $("#neighbours");
  grid.replaceChildren();
  for (const n of obj.neighbours) {
    const figure = element("figure", { class: "plot" });
    const what = `Light curve of ${n.class_name} object ${n.object_id}`;
    figure.append(plotCurve(n.curve, { width: 300, height: 150, small: true, label: curveLabel(what, n.curve) }));
    figure.append(element("figcaption", {}, `${n.class_name} · object ${n.object_id} · distance ${format(n.distance)}`));
    grid.append(figure);
  }
  return true;
}

// The buttons stay enabled while an answer is sent (`busy` ignores a second one): a disabled
// button would drop the keyboard's focus.
function setBusy(value) {
  busy = value;
  document.querySelectorAll(".answer").forEach((b) => { b.setAttribute("aria-disabled", String(value)); });
}

async function answer(label) {
  if (busy || !shown) return;
  setBusy(true);
  const navigation = navigations;
  let saved = false;
  try {
    try {
      state = await api("/api/label", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        // The label this page showed: if another tab answered since, the server refuses (409).
        body: JSON.stringify({ object_id: shown.object_id, label, previous: shown.label || null }),
      });
      saved = true;
    } catch (error) {
      showMessage(`The answer was not saved: ${describe(error)}`);
      if (error.status === 409) {
        // Show the object as it is now (its answer from the other tab): answer again to change it.
        state = await api("/api/state");
        showProgress();
        await showObject(shown.object_id);
      }
      return;
    }
    showProgress();
    showMessage("");
    // The next candidate, unless the reviewer opened another object meanwhile.
    if (navigation === navigations) await showObject(state.next);
    if (!$("#ranking-view").hidden) await loadRanking();
  } catch (error) {
    showMessage(saved
      ? `The answer was saved, but the page could not load what comes next: ${describe(error)}`
      : `The answer was not saved, and the page could not show the object as it is now: ${describe(error)}`);
  } finally {
    setBusy(false);
  }
}

// An object the reviewer asked for (from the ranking, or by its id): the view switches once it
// is loaded, so that an object that cannot be shown leaves the ranking and its message, and one
// asked for after it wins (a review: the view showed the one before, which a key then answered).
function openObject(objectId) {
  ++navigations;
  showObject(objectId)
    .then((shownNow) => {
      if (!shownNow) return;
      showMessage("");
      switchView("review");
    })
    .catch((e) => showMessage(describe(e)));
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
  // A redraw (an answer's, or a filter's) keeps the keyboard on the object it was on.
  const focused = document.activeElement?.closest("#ranking tbody tr")?.dataset.objectId;
  body.replaceChildren();
  for (const row of rows) {
    const tr = element("tr", { "data-object-id": row.object_id });
    const share = row.class_prob === null ? "" : ` (${Math.round(100 * row.class_prob)}%)`;
    tr.append(
      element("td", {}, String(row.position)),
      element("td", {}),
      element("td", {}, format(row.active_score)),
      element("td", {}, format(row.anomaly_score)),
      element("td", {}, row.class_guess + share),
      element("td", {}, format(row.galactic)),
      element("td", { class: row.label || "" }, row.label ? LABEL_TEXT[row.label] : ""),
    );
    // The object's cell is a button, so that a keyboard opens it too (its click reaches the row).
    tr.children[1].append(element("button", { type: "button", class: "open" }, String(row.object_id)));
    tr.addEventListener("click", () => openObject(row.object_id));
    body.append(tr);
  }
  const refocus = [...body.rows].find((tr) => tr.dataset.objectId === focused);
  refocus?.querySelector("button.open").focus({ preventScroll: true });
  body.dataset.rows = rows.length;
  body.dataset.query = query.toString(); // which filters the rows on screen answer
}

function switchView(name) {
  const review = name === "review";
  $("#review-view").hidden = !review;
  $("#ranking-view").hidden = review;
  for (const [tab, active] of [["#tab-review", review], ["#tab-ranking", !review]]) {
    $(tab).classList.toggle("active", active);
    $(tab).setAttribute("aria-pressed", String(active));
  }
  // The keyboard's focus (and the screen) to the top of the view shown.
  window.scrollTo(0, 0);
  $(review ? "#candidate-title" : "#ranking-title").focus({ preventScroll: true });
  if (!review) loadRanking().catch((e) => showMessage(describe(e)));
}

// --- start ----------------------------------------------------------------------------------

async function start() {
  document.querySelectorAll(".answer").forEach((b) => {
    b.addEventListener("click", () => answer(b.dataset.label));
  });
  $("#tab-review").addEventListener("click", () => switchView("review"));
  $("#tab-ranking").addEventListener("click", () => switchView("ranking"));
  $("#filters").addEventListener("change", (event) => {
    if (event.target.name === "object") return; // opens an object (Enter), filters nothing
    loadRanking().catch((e) => showMessage(describe(e)));
  });
  // Any candidate by its id (the ranking lists the first 200 that pass the filters).
  $("#filters input[name=object]").addEventListener("keydown", (event) => {
    const id = event.target.value.trim();
    if (event.key !== "Enter" || !id) return;
    event.preventDefault();
    openObject(id);
  });
  $("#export").href = `/api/labels.csv?token=${encodeURIComponent(TOKEN)}`;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea")) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key; // Shift, Caps Lock
    // A key held down repeats: it must not answer candidates the expert has not seen (nor
    // click the focused button again, as a held Enter or Space does); other keys repeat as
    // ever (a review: a held arrow key no longer scrolled).
    if (event.repeat) {
      if (["a", "n", "s", "r", "Enter", " "].includes(key)) event.preventDefault();
      return;
    }
    const label = { a: "anomaly", n: "not_interesting", s: "skip" }[key];
    if (label && !$("#review-view").hidden) {
      event.preventDefault();
      answer(label);
    } else if (key === "r") {
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
    showMessage(`Cannot load the review: ${describe(error)}`);
  }
}

start();
