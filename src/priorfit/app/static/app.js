// The page of `priorfit serve`: click points, redraw the PFN's posterior (and the exact GP's).
"use strict";

const state = { views: {}, model: null, points: [], answer: null, busy: false, again: false };
const plot = document.getElementById("plot");
const strip = document.getElementById("density");
const slider = document.getElementById("density-x");
const margin = { left: 48, right: 12, top: 10, bottom: 28 };
// what the browser test reads: the time to the first plot and every update's round trip
window.priorfit = { firstPlotMs: null, updates: [] };

function view() { return state.views[state.model]; }

function densityX() {
  const [low, high] = view().x_range;
  return low + (high - low) * slider.value / 1000;
}

function scales(canvas, yRange) {
  const [x0, x1] = view().x_range;
  const [y0, y1] = yRange;
  const w = canvas.width - margin.left - margin.right;
  const h = canvas.height - margin.top - margin.bottom;
  return {
    px: x => margin.left + (x - x0) / (x1 - x0) * w,
    py: y => margin.top + (1 - (y - y0) / (y1 - y0)) * h,
    x: px => x0 + (px - margin.left) / w * (x1 - x0),
    y: py => y0 + (1 - (py - margin.top) / h) * (y1 - y0),
  };
}

function axes(ctx, canvas, s, yRange) {
  const [x0, x1] = view().x_range;
  ctx.strokeStyle = "#999"; ctx.fillStyle = "#555"; ctx.lineWidth = 1; ctx.font = "11px sans-serif";
  ctx.beginPath();
  ctx.moveTo(margin.left, margin.top); ctx.lineTo(margin.left, canvas.height - margin.bottom);
  ctx.lineTo(canvas.width - margin.right, canvas.height - margin.bottom); ctx.stroke();
  for (let i = 0; i <= 10; i++) {
    const x = x0 + (x1 - x0) * i / 10;
    ctx.fillText(x.toFixed(1), s.px(x) - 8, canvas.height - margin.bottom + 14);
  }
  if (yRange) {
    for (let y = Math.ceil(yRange[0]); y <= yRange[1]; y++) ctx.fillText(String(y), 8, s.py(y) + 4);
  }
}

function band(ctx, s, x, lower, upper, colour) {
  ctx.fillStyle = colour; ctx.beginPath();
  x.forEach((v, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, s.px(v), s.py(upper[i])));
  for (let i = x.length - 1; i >= 0; i--) ctx.lineTo(s.px(x[i]), s.py(lower[i]));
  ctx.closePath(); ctx.fill();
}

function line(ctx, s, x, y, colour, dash, width) {
  ctx.strokeStyle = colour; ctx.setLineDash(dash || []); ctx.lineWidth = width || 2; ctx.beginPath();
  x.forEach((v, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, s.px(v), s.py(y[i])));
  ctx.stroke(); ctx.setLineDash([]);
}

function drawPlot() {
  const ctx = plot.getContext("2d"), a = state.answer, yRange = view().y_range;
  const s = scales(plot, yRange);
  ctx.clearRect(0, 0, plot.width, plot.height);
  ctx.save();
  ctx.beginPath();
  ctx.rect(margin.left, margin.top, plot.width - margin.left - margin.right,
           plot.height - margin.top - margin.bottom);
  ctx.clip();
  if (a) {
    const [q025, q25, q75, q975] = a.quantiles;
    band(ctx, s, a.x, q025, q975, "rgba(31, 119, 180, 0.16)");
    band(ctx, s, a.x, q25, q75, "rgba(31, 119, 180, 0.32)");
    line(ctx, s, a.x, a.mean, "#1f77b4");
    if (a.exact) {
      line(ctx, s, a.x, a.exact.mean, "#ff7f0e", [6, 4]);
      line(ctx, s, a.x, a.exact.lower, "#ff7f0e", [2, 3], 1.2);
      line(ctx, s, a.x, a.exact.upper, "#ff7f0e", [2, 3], 1.2);
    }
  }
  const dx = densityX();
  ctx.strokeStyle = "#aaa"; ctx.beginPath();
  ctx.moveTo(s.px(dx), margin.top); ctx.lineTo(s.px(dx), plot.height - margin.bottom); ctx.stroke();
  ctx.fillStyle = "#111";
  for (const [x, y] of state.points) { ctx.beginPath(); ctx.arc(s.px(x), s.py(y), 4, 0, 7); ctx.fill(); }
  ctx.restore();
  axes(ctx, plot, s, yRange);
}

function drawDensity() {
  const ctx = strip.getContext("2d"), d = state.answer && state.answer.density;
  ctx.clearRect(0, 0, strip.width, strip.height);
  if (!d) return;
  const top = Math.max(...d.pfn, ...(d.exact || [0])) * 1.05;
  const [y0, y1] = view().y_range;
  const w = strip.width - margin.left - margin.right, h = strip.height - margin.top - margin.bottom;
  const px = y => margin.left + (y - y0) / (y1 - y0) * w;  // the density's axis is y
  const py = p => margin.top + (1 - p / top) * h;
  ctx.fillStyle = "rgba(31, 119, 180, 0.35)"; ctx.beginPath(); ctx.moveTo(px(d.y[0]), py(0));
  d.y.forEach((y, i) => ctx.lineTo(px(y), py(d.pfn[i])));
  ctx.lineTo(px(d.y[d.y.length - 1]), py(0)); ctx.closePath(); ctx.fill();
  if (d.exact) {
    ctx.strokeStyle = "#ff7f0e"; ctx.lineWidth = 2; ctx.setLineDash([6, 4]); ctx.beginPath();
    d.y.forEach((y, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, px(y), py(d.exact[i])));
    ctx.stroke(); ctx.setLineDash([]);
  }
  ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  for (let y = Math.ceil(y0); y <= y1; y++) ctx.fillText(String(y), px(y) - 4, strip.height - 10);
  ctx.fillText("y", strip.width - margin.right - 8, strip.height - 10);
}

async function update() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  const started = performance.now();
  const sent = state.points.length;
  const error = document.getElementById("error");
  try {
    const response = await fetch("/api/regression", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: state.model, points: state.points, density_x: densityX() }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    state.answer = answer;
    error.hidden = true;
    drawPlot(); drawDensity();
    const ms = performance.now() - started;
    window.priorfit.updates.push({ points: sent, ms: ms, server_ms: 1000 * answer.seconds });
    if (window.priorfit.firstPlotMs === null) window.priorfit.firstPlotMs = performance.now();
    document.getElementById("count").textContent = String(answer.points);
    document.getElementById("gap").textContent =
      answer.nll_gap === undefined ? "– (no exact posterior)" : answer.nll_gap.toFixed(3);
    document.getElementById("timing").textContent = ms.toFixed(0);
    document.getElementById("density-label").textContent = densityX().toFixed(2);
    plot.dataset.points = String(answer.points);
    const beyond = document.getElementById("beyond");
    beyond.hidden = answer.points <= view().max_train;
    beyond.textContent = `${answer.points} points: ${state.model} was trained with at most ` +
      `${view().max_train}, so beyond that it extrapolates (and may be poor).`;
  } catch (e) {
    error.textContent = String(e.message || e); error.hidden = false;
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; update(); }
  }
}

plot.addEventListener("click", event => {
  const box = plot.getBoundingClientRect();
  const px = (event.clientX - box.left) * plot.width / box.width;
  const py = (event.clientY - box.top) * plot.height / box.height;
  const s = scales(plot, view().y_range);
  const hit = state.points.findIndex(([x, y]) => Math.hypot(s.px(x) - px, s.py(y) - py) < 7);
  if (hit >= 0) state.points.splice(hit, 1);
  else if (px >= margin.left && py <= plot.height - margin.bottom) state.points.push([s.x(px), s.y(py)]);
  drawPlot(); update();
});

slider.addEventListener("input", () => { drawPlot(); update(); });
document.getElementById("clear").addEventListener("click", () => { state.points = []; update(); });
document.getElementById("model").addEventListener("change", event => {
  const [oldLow, oldHigh] = view().x_range;
  state.model = event.target.value;
  const [low, high] = view().x_range;  // keep the points where they are on the canvas
  state.points = state.points.map(([x, y]) => [low + (x - oldLow) / (oldHigh - oldLow) * (high - low), y]);
  update();
});
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== tab.dataset.view;
  });
}

async function start() {
  const response = await fetch("/api/models");
  const models = await response.json();
  const select = document.getElementById("model");
  for (const v of models.regression) {
    state.views[v.name] = v;
    const option = document.createElement("option");
    option.value = v.name; option.textContent = v.description + (v.exact ? " (exact GP shown)" : "");
    select.appendChild(option);
  }
  state.model = state.views["gp-1d"] ? "gp-1d" : models.regression[0].name;
  select.value = state.model;
  document.getElementById("tables-note").textContent = "Tables: " + models.views.tables;
  document.getElementById("curves-note").textContent = "Curves: " + models.views.curves;
  await update();
}

start();
