// Small helpers to build the page without a framework: h() makes elements, and a few formatters shared by the
// list and object pages. Text always goes in as text nodes (never innerHTML), so nothing an object holds can
// inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2).toLowerCase(), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") el.style.cssText = value;  // CSSOM: allowed by the page's CSP, unlike style=""
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2).toLowerCase(), value);
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function ago(timestamp, now = Date.now()) {
  const t = Date.parse(timestamp);
  if (Number.isNaN(t)) return "";
  const sec = Math.max(0, Math.round((now - t) / 1000));
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m${sec % 60 ? `${sec % 60}s` : ""}`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h${Math.floor((sec % 3600) / 60)}m`;
  return `${Math.floor(sec / 86400)}d${Math.floor((sec % 86400) / 3600)}h`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const sec = Math.round(seconds);
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s`;
  return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m`;
}

export function num(value, digits = 4) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "";
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(2) : String(+value.toPrecision(digits));
}

export const KIND_LABEL = { Dataset: "Dataset", Model: "Model", ModelServer: "Server", Notebook: "Notebook" };

export function readyCondition(obj) {
  return (obj.status?.conditions || []).find((c) => c.type === "Ready") || {};
}

// The reason's category (progress, failed, done) comes from the control plane's own Reason enum.
export function reasonClass(reason, reasons) {
  const category = reasons?.[reason]?.category;
  return category ? `reason ${category}` : "reason progress";
}

export function reasonBadge(reason, reasons) {
  return h("span", { class: reasonClass(reason, reasons), title: reasons?.[reason]?.description || "" },
    reason || "Pending");
}

export function readyPill(obj) {
  if (obj.metadata?.deletionTimestamp) return h("span", { class: "pill deleting" }, "Deleting");
  return obj.status?.ready ? h("span", { class: "pill ready" }, "Ready") : h("span", { class: "pill notready" }, "Not ready");
}

export function progressBar(progress) {
  if (!progress) return h("span", { class: "muted" }, "—");
  const pct = typeof progress.percent === "number" ? progress.percent : null;
  const bits = [];
  if (pct !== null) bits.push(`${num(pct, 3)}%`);
  else if (progress.step !== undefined) bits.push(`step ${progress.step}`);
  if (progress.loss !== undefined) bits.push(`loss ${num(progress.loss)}`);
  return h("div", { class: "progress", title: `${progress.phase}: ${bits.join(", ")}` },
    h("div", { class: "bar" }, h("div", { class: "fill", style: `width:${pct ?? 0}%` })),
    h("span", { class: "progress-text" }, bits.join(" · ")));
}
