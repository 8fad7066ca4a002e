// The lineage graph: datasets and base models on the left, trained models after them, servers and notebooks
// on the right, one column per layer the control plane computed (api/dashboard/lineage.py). Each node links
// to its own page; an edge says what it is ("training data", "base model", "serves") and, for a trained
// model, which data digest or base image was used, drawn dashed when the dataset has changed since.
import { KIND_LABEL, h, s } from "./dom.js";

const W = 196;
const H = 62;
const COL = 150;
const ROW = 26;

function place(nodes) {
  const columns = new Map();
  for (const n of nodes) {
    if (!columns.has(n.layer)) columns.set(n.layer, []);
    columns.get(n.layer).push(n);
  }
  const tallest = Math.max(...[...columns.values()].map((c) => c.length));
  const height = tallest * (H + ROW) - ROW + 20;
  const pos = new Map();
  for (const [layer, col] of columns) {
    const top = (height - (col.length * (H + ROW) - ROW)) / 2;
    col.forEach((n, i) => pos.set(n.id, { x: 10 + layer * (W + COL), y: top + i * (H + ROW) }));
  }
  return { pos, width: (Math.max(...columns.keys()) + 1) * (W + COL) - COL + 20, height };
}

function edge(e, pos) {
  const a = pos.get(e.from);
  const b = pos.get(e.to);
  const x1 = a.x + W;
  const y1 = a.y + H / 2;
  const x2 = b.x;
  const y2 = b.y + H / 2;
  const mx = (x1 + x2) / 2;
  const g = s("g", { class: `edge${e.stale ? " stale" : ""}`, "data-from": e.from, "data-to": e.to });
  g.append(s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 6},${y2}`, "marker-end": "url(#arrow)" }));
  const ly = (y1 + y2) / 2;
  g.append(s("text", { x: mx, y: ly - 4, "text-anchor": "middle", class: "edge-label" }, e.label));
  if (e.detail) {
    g.append(s("text", { x: mx, y: ly + 10, "text-anchor": "middle", class: "edge-detail" },
      clip(e.stale ? `${e.detail} (changed since)` : e.detail, 26)));
  }
  return g;
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function node(n, pos, focus) {
  const p = pos.get(n.id);
  const cls = `node kind-${n.kind}${n.id === focus ? " focus" : ""}${n.ready ? " ready" : ""}`;
  const href = `#/o/${n.kind}/${encodeURIComponent(n.namespace)}/${encodeURIComponent(n.name)}`;
  const detail = n.details.map(([k, v]) => `${k}: ${v}`).join("\n");
  return s("a", { href, class: cls, "data-id": n.id },
    s("title", {}, `${n.kind} ${n.namespace}/${n.name}\n${n.reason}${detail ? `\n${detail}` : ""}`),
    s("rect", { x: p.x, y: p.y, width: W, height: H, rx: 9 }),
    s("circle", { cx: p.x + 14, cy: p.y + 17, r: 5, class: "dot" }),
    s("text", { x: p.x + 26, y: p.y + 21, class: "node-kind" }, KIND_LABEL[n.kind] || n.kind),
    s("text", { x: p.x + 12, y: p.y + 40, class: "node-name" }, clip(n.name, 24)),
    s("text", { x: p.x + 12, y: p.y + 55, class: "node-reason" }, clip(n.details[0] ? `${n.reason} · ${n.details[0][1]}` : n.reason, 31)));
}

export function lineageGraph(graph) {
  if (!graph.nodes.length) return h("p", { class: "muted" }, "No lineage.");
  if (graph.nodes.length === 1) {
    return h("p", { class: "muted" }, "Nothing refers to this object and it refers to nothing: no lineage to draw.");
  }
  const { pos, width, height } = place(graph.nodes);
  const svg = s("svg", { class: "lineage", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `lineage: ${graph.nodes.length} objects, ${graph.edges.length} links`,
    "data-nodes": graph.nodes.length, "data-edges": graph.edges.length });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const e of graph.edges) svg.append(edge(e, pos));
  for (const n of graph.nodes) svg.append(node(n, pos, graph.focus));
  return h("div", { class: "lineage-wrap" }, svg);
}
