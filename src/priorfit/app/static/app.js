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

// -- tables ----------------------------------------------------------------------------------

const tablesState = { train: null, test: null };

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

function shown(id, message) {
  const element = document.getElementById(id);
  element.textContent = message || ""; element.hidden = !message;
}

document.getElementById("train-file").addEventListener("change", async event => {
  shown("tables-error"); document.getElementById("tables-result").hidden = true;
  tablesState.train = await event.target.files[0].text();
  try {
    const answer = await post("/api/tables/inspect", { train_csv: tablesState.train });
    const select = document.getElementById("target");
    select.replaceChildren(...answer.columns.map(c => {
      const option = document.createElement("option"); option.value = c; option.textContent = c;
      return option;
    }));
    select.value = answer.target;
    document.getElementById("classify").disabled = false;
    document.getElementById("tables-status").textContent = `${answer.rows} rows`;
  } catch (e) { shown("tables-error", String(e.message || e)); }
});

document.getElementById("test-file").addEventListener("change", async event => {
  tablesState.test = event.target.files.length ? await event.target.files[0].text() : null;
});

document.getElementById("classify").addEventListener("click", async () => {
  const status = document.getElementById("tables-status");
  shown("tables-error"); status.textContent = "computing…";
  try {
    const a = await post("/api/tables/classify", {
      train_csv: tablesState.train, target: document.getElementById("target").value,
      test_csv: tablesState.test,
    });
    document.getElementById("folds").textContent = a.folds;
    document.getElementById("rows").textContent = a.rows;
    document.getElementById("accuracy").textContent = a.cv.accuracy.toFixed(3);
    document.getElementById("auc").textContent = a.cv.roc_auc.toFixed(3);
    document.getElementById("logloss").textContent = a.cv.log_loss.toFixed(3);
    document.getElementById("tables-warnings").textContent = a.warnings.join(" ");
    const table = document.getElementById("probabilities");
    table.replaceChildren();
    document.getElementById("download-line").hidden = !a.test;
    if (a.test) {
      const link = document.getElementById("download");
      link.href = URL.createObjectURL(new Blob([a.test.csv], { type: "text/csv" }));
      const head = table.insertRow();
      for (const c of ["row", ...a.test.columns]) head.insertCell().outerHTML = `<th>${c}</th>`;
      a.test.rows.slice(0, 50).forEach((r, i) => {
        const row = table.insertRow(); row.insertCell().textContent = String(i + 1);
        for (const v of r) row.insertCell().textContent = typeof v === "number" ? v.toFixed(3) : v;
      });
    }
    document.getElementById("tables-result").hidden = false;
    status.textContent = `${a.seconds.toFixed(1)} s`;
  } catch (e) { status.textContent = ""; shown("tables-error", String(e.message || e)); }
});

// -- curves ----------------------------------------------------------------------------------

document.getElementById("curve-file").addEventListener("change", async event => {
  document.getElementById("curve-text").value = await event.target.files[0].text();
});

async function extrapolate() {
  shown("curves-error");
  const horizon = document.getElementById("horizon").value;
  const threshold = document.getElementById("threshold").value;
  try {
    const a = await post("/api/curves", {
      curve: document.getElementById("curve-text").value,
      metric: document.getElementById("metric").value,
      horizon: horizon ? Number(horizon) : null, threshold: threshold === "" ? null : Number(threshold),
    });
    document.getElementById("p-above").textContent =
      a.p_above === undefined ? "–" : a.p_above.toFixed(3);
    drawCurve(a);
  } catch (e) { shown("curves-error", String(e.message || e)); }
}

function drawCurve(a) {
  const canvas = document.getElementById("curve-plot"), ctx = canvas.getContext("2d");
  const seen = a.observed.length, later = a.epochs.slice(seen - 1);
  const values = [...a.observed, ...a.quantiles[0].slice(seen), ...a.quantiles[3].slice(seen)];
  if (a.threshold !== undefined) values.push(a.threshold);
  let y0 = Math.min(...values), y1 = Math.max(...values);
  const pad = 0.05 * (y1 - y0 || 1); y0 -= pad; y1 += pad;
  const w = canvas.width - margin.left - margin.right, h = canvas.height - margin.top - margin.bottom;
  const s = { px: e => margin.left + (e - 1) / (a.horizon - 1) * w,
              py: v => margin.top + (1 - (v - y0) / (y1 - y0)) * h };
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  // the bands start at the last observed epoch
  const from = q => [a.observed[seen - 1], ...q.slice(seen)];
  band(ctx, s, later, from(a.quantiles[0]), from(a.quantiles[3]), "rgba(31, 119, 180, 0.16)");
  band(ctx, s, later, from(a.quantiles[1]), from(a.quantiles[2]), "rgba(31, 119, 180, 0.32)");
  line(ctx, s, later, from(a.mean), "#1f77b4");
  line(ctx, s, a.epochs.slice(0, seen), a.observed, "#111");
  if (a.threshold !== undefined) {
    line(ctx, s, [1, a.horizon], [a.threshold, a.threshold], "#d62728", [5, 4], 1.2);
  }
  ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  for (let i = 0; i <= 10; i++) {
    const e = 1 + (a.horizon - 1) * i / 10;
    ctx.fillText(String(Math.round(e)), s.px(e) - 6, canvas.height - margin.bottom + 14);
  }
  for (let i = 0; i <= 4; i++) {
    const v = y0 + (y1 - y0) * i / 4; ctx.fillText(v.toPrecision(3), 4, s.py(v) + 4);
  }
  canvas.dataset.epochs = String(a.horizon);
}

document.getElementById("extrapolate").addEventListener("click", extrapolate);

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
  const metric = document.getElementById("metric");
  for (const name of models.metrics) {
    const option = document.createElement("option");
    option.value = name; option.textContent = name; metric.appendChild(option);
  }
  await update();
}

start();
