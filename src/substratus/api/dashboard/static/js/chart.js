// A small SVG line chart for a run's progress series (loss by step, or any other metric the job wrote).
// Each point of the series is drawn as a marker (up to MARKERS of them) so the chart can be checked point by
// point; hovering shows the nearest point's values. No library: the series is at most 2,000 points.
import { num, s } from "./dom.js";

const MARKERS = 400;
const PAD = { left: 56, right: 16, top: 14, bottom: 34 };

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const step = niceStep(hi - lo, count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

// points: the series' points; x: "step" (falls back to the index); y: the metric to draw.
export function lineChart(points, { x = "step", y = "loss", width = 720, height = 280 } = {}) {
  const data = points
    .map((p, i) => ({ x: typeof p[x] === "number" ? p[x] : i, y: p[y], p }))
    .filter((d) => typeof d.y === "number" && Number.isFinite(d.y));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${y} by ${x}, ${data.length} points`, "data-points": data.length, "data-metric": y });
  if (!data.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle" }, `no ${y} values yet`));
    return svg;
  }
  const [x0, x1] = data.length > 1 ? [data[0].x, data[data.length - 1].x] : [data[0].x - 1, data[0].x + 1];
  const [y0, y1] = extent(data.map((d) => d.y));
  const w = width - PAD.left - PAD.right;
  const hgt = height - PAD.top - PAD.bottom;
  const sx = (v) => PAD.left + (x1 === x0 ? w / 2 : ((v - x0) / (x1 - x0)) * w);
  const sy = (v) => PAD.top + hgt - ((v - y0) / (y1 - y0)) * hgt;
  drawAxes(svg, { x0, x1, y0, y1, sx, sy, width, height, xLabel: x, yLabel: y });
  const d = data.map((pt, i) => `${i ? "L" : "M"}${sx(pt.x).toFixed(1)},${sy(pt.y).toFixed(1)}`).join("");
  svg.append(s("path", { d, class: "line" }));
  if (data.length <= MARKERS) {
    const dots = s("g", { class: "points" });
    for (const pt of data) dots.append(s("circle", { class: "pt", cx: sx(pt.x).toFixed(1), cy: sy(pt.y).toFixed(1), r: 2.6,
      "data-x": pt.x, "data-y": pt.y }));
    svg.append(dots);
  }
  addHover(svg, data, { sx, sy, x, y, height });
  return svg;
}

function drawAxes(svg, { x0, x1, y0, y1, sx, sy, width, height, xLabel, yLabel }) {
  const grid = s("g", { class: "grid" });
  for (const v of ticks(y0, y1)) {
    grid.append(s("line", { x1: PAD.left, x2: width - PAD.right, y1: sy(v), y2: sy(v) }));
    grid.append(s("text", { x: PAD.left - 6, y: sy(v) + 4, "text-anchor": "end" }, num(v, 3)));
  }
  for (const v of ticks(x0, x1, 6)) {
    grid.append(s("line", { class: "x", x1: sx(v), x2: sx(v), y1: PAD.top, y2: height - PAD.bottom }));
    grid.append(s("text", { x: sx(v), y: height - PAD.bottom + 16, "text-anchor": "middle" }, num(v, 4)));
  }
  grid.append(s("text", { class: "axis-label", x: width - PAD.right, y: height - 4, "text-anchor": "end" }, xLabel));
  grid.append(s("text", { class: "axis-label", x: 4, y: PAD.top - 2 }, yLabel));
  svg.append(grid);
}

function addHover(svg, data, { sx, sy, x, y, height }) {
  const guide = s("line", { class: "guide", y1: PAD.top, y2: height - PAD.bottom, visibility: "hidden" });
  const dot = s("circle", { class: "hover-dot", r: 4.5, visibility: "hidden" });
  const label = s("text", { class: "tip", visibility: "hidden" });
  svg.append(guide, dot, label);
  svg.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const vx = ((ev.clientX - box.left) / box.width) * svg.viewBox.baseVal.width;
    let best = data[0];
    for (const pt of data) if (Math.abs(sx(pt.x) - vx) < Math.abs(sx(best.x) - vx)) best = pt;
    const px = sx(best.x);
    const py = sy(best.y);
    for (const el of [guide, dot, label]) el.setAttribute("visibility", "visible");
    guide.setAttribute("x1", px); guide.setAttribute("x2", px);
    dot.setAttribute("cx", px); dot.setAttribute("cy", py);
    const right = px > svg.viewBox.baseVal.width * 0.7;
    label.setAttribute("x", right ? px - 8 : px + 8);
    label.setAttribute("y", Math.max(PAD.top + 12, py - 8));
    label.setAttribute("text-anchor", right ? "end" : "start");
    const extra = typeof best.p.epoch === "number" && y !== "epoch" ? `  epoch ${num(best.p.epoch, 3)}` : "";
    label.textContent = `${x} ${num(best.x)}  ${y} ${num(best.y)}${extra}`;
  });
  svg.addEventListener("mouseleave", () => {
    for (const el of [guide, dot, label]) el.setAttribute("visibility", "hidden");
  });
}
