// Small inline SVG charts for the dashboard: no library, no build step.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// A sparkline of `values` (numbers, or null where there is no value): a line over
// a filled area, scaled from 0 to the largest value, newest on the right.
// Until `slots` values have come, the values there are fill the width.
export function sparkline(values, {width = 180, height = 40, color = "#3867d6", slots = 60, least = 10} = {}) {
  const chart = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, class: "sparkline", role: "img",
    preserveAspectRatio: "none",
  });
  chart.append(svg("line", {x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: "axis"}));
  const shown = values.slice(-slots);
  slots = Math.min(slots, Math.max(shown.length, least));
  const finite = shown.filter((v) => v !== null && Number.isFinite(v));
  chart.dataset.points = String(finite.length);
  if (!finite.length) return chart;
  const top = Math.max(...finite) || 1;
  const step = width / Math.max(slots - 1, 1);
  const offset = (slots - shown.length) * step;
  const x = (i) => offset + i * step;
  const y = (v) => height - 2 - (v / top) * (height - 6);
  // One path per run of values without a gap.
  let run = [];
  const runs = [];
  shown.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) { if (run.length) runs.push(run); run = []; }
    else run.push([x(i), y(v)]);
  });
  if (run.length) runs.push(run);
  for (const r of runs) {
    const line = r.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
    const area = `${line}L${r[r.length - 1][0].toFixed(1)},${height}L${r[0][0].toFixed(1)},${height}Z`;
    chart.append(svg("path", {d: area, fill: color, "fill-opacity": 0.15, stroke: "none"}));
    chart.append(svg("path", {d: line, fill: "none", stroke: color, "stroke-width": 1.5,
                              "vector-effect": "non-scaling-stroke"}));
    if (r.length === 1) chart.append(svg("circle", {cx: r[0][0], cy: r[0][1], r: 2, fill: color}));
  }
  const last = runs[runs.length - 1];
  const [lx, ly] = last[last.length - 1];
  chart.append(svg("circle", {cx: lx, cy: ly, r: 2.5, fill: color}));
  return chart;
}

export function formatRate(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k/s`;
  if (v >= 10) return `${v.toFixed(0)}/s`;
  return `${v.toFixed(v ? 2 : 0)}/s`;
}

export function formatSeconds(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1) return `${v.toFixed(2)} s`;
  if (v >= 0.001) return `${(v * 1000).toFixed(v >= 0.01 ? 0 : 1)} ms`;
  return `${(v * 1e6).toFixed(0)} µs`;
}

// A titled chart: the latest value, then the sparkline of `points[key]`.
export function metricChart(title, points, key, format, color) {
  const values = points.map((p) => p[key]);
  const latest = [...values].reverse().find((v) => v !== null && v !== undefined);
  const box = document.createElement("div");
  box.className = "metric";
  box.dataset.metric = key;
  const head = document.createElement("div");
  head.className = "metric-head";
  const label = document.createElement("span");
  label.textContent = title;
  const value = document.createElement("b");
  value.className = "metric-value";
  value.textContent = format(latest === undefined ? null : latest);
  head.append(label, value);
  const chart = sparkline(values, {color});
  chart.setAttribute("aria-label", `${title}: ${value.textContent}`);
  box.append(head, chart);
  return box;
}

// The four charts of one endpoint's series.
export function endpointCharts(points) {
  const row = document.createElement("div");
  row.className = "charts";
  row.append(
    metricChart("requests", points, "rate", formatRate, "#3867d6"),
    metricChart("errors", points, "error_rate", formatRate, "#c0392b"),
    metricChart("p50", points, "p50", formatSeconds, "#16a085"),
    metricChart("p99", points, "p99", formatSeconds, "#8e44ad"),
  );
  return row;
}
