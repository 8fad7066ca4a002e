// The progress card of a Dataset or Model: the latest values (step, percent, epoch, loss, ETA) and the whole
// series as a chart, read from the run's progress.jsonl by the control plane. While the job runs the series is
// fetched again every few seconds; a metric picker shows any other number the job wrote.
import { getJSON, objectPath } from "./api.js";
import { duration, h, num } from "./dom.js";
import { lineChart } from "./chart.js";

const EVERY_MS = 3000;
const RUNNING = new Set(["Training", "Loading"]);

function stats(series) {
  const last = series.points[series.points.length - 1] || {};
  const total = last.total_steps;
  const items = [
    ["phase", series.phase],
    ["step", last.step !== undefined ? `${last.step}${total ? ` / ${total}` : ""}` : ""],
    ["percent", total && last.step !== undefined ? `${num((100 * last.step) / total, 3)}%` : ""],
    ["epoch", num(last.epoch, 3)],
    ["loss", num(last.loss)],
    ["points", String(series.points.length)],
  ];
  return h("dl", { class: "stats" }, ...items.filter(([, v]) => v).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { dataset: { stat: k } }, v))));
}

export function progressSection(kind, namespace, name) {
  const body = h("div", { class: "chart-body" }, h("p", { class: "muted" }, "loading…"));
  const element = h("section", { class: "card", id: "progress", hidden: true }, h("h2", {}, "Progress"), body);
  const view = { metric: "loss", run: null, series: null, running: false };
  let timer = null;
  let stopped = false;

  function draw(obj) {
    const series = view.series;
    const eta = obj?.status?.progress?.etaSeconds;
    const picker = h("select", { "aria-label": "metric", onchange: (e) => { view.metric = e.target.value; draw(obj); } },
      ...series.metrics.map((m) => h("option", { value: m, selected: m === view.metric }, m)));
    const runs = series.runs.length > 1 ? h("select", { "aria-label": "run", onchange: (e) => { view.run = e.target.value; load(obj); } },
      ...series.runs.map((r, i) => h("option", { value: r, selected: r === series.run }, i === 0 ? `${r} (latest)` : r))) : null;
    const notes = [series.skipped ? `${series.skipped} unreadable line${series.skipped === 1 ? "" : "s"} skipped` : "",
      series.truncated ? "older points not shown (file tail only)" : "", series.thinned ? "thinned to 2,000 points" : ""]
      .filter(Boolean).join(" · ");
    body.replaceChildren(
      h("div", { class: "chart-tools" }, stats(series), eta ? h("span", { class: "eta" }, `ETA ${duration(eta)}`) : null,
        h("span", { class: "spacer" }), runs, picker),
      lineChart(series.points, { x: "step", y: view.metric }),
      notes ? h("p", { class: "muted small" }, notes) : null);
  }

  async function load(obj) {
    const query = view.run ? `?run=${encodeURIComponent(view.run)}` : "";
    const series = await getJSON(objectPath(kind, namespace, name, `/progress${query}`)).catch(() => null);
    if (stopped || !series) return;
    element.hidden = !series.points.length && !obj?.status?.progress;
    if (!series.points.length) {
      body.replaceChildren(h("p", { class: "muted" }, "The job has written no progress yet."));
      return;
    }
    if (!series.metrics.includes(view.metric)) view.metric = series.metrics[0];
    view.series = series;
    draw(obj);
  }

  function update(obj) {
    const reason = (obj.status?.conditions || []).find((c) => c.type === "Ready")?.reason;
    view.running = RUNNING.has(reason);
    clearTimeout(timer);
    const tick = async () => {
      await load(obj);
      if (view.running && !stopped) timer = setTimeout(tick, EVERY_MS);
    };
    if (kind === "Dataset" || kind === "Model") tick();
  }

  return { element, update, stop: () => { stopped = true; clearTimeout(timer); } };
}
