// The objects page: every Dataset, Model, Server and Notebook with Ready, Reason, progress and age, kept
// current by the live feed (api.js). A changed row flashes; ages tick every few seconds.
import { keyOf, objects, onChange, session } from "./api.js";
import { KIND_LABEL, ago, h, progressBar, readyCondition, readyPill, reasonBadge } from "./dom.js";

const KINDS = ["Dataset", "Model", "ModelServer", "Notebook"];
const TABS = [["all", "All"], ["Dataset", "Datasets"], ["Model", "Models"], ["ModelServer", "Servers"],
  ["Notebook", "Notebooks"]];
const view = { tab: "all", filter: "" };

function sorted() {
  return [...objects.values()].sort((a, b) =>
    KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind) || a.metadata.namespace.localeCompare(b.metadata.namespace)
    || a.metadata.name.localeCompare(b.metadata.name));
}

function visible(obj) {
  if (view.tab !== "all" && obj.kind !== view.tab) return false;
  const f = view.filter.trim().toLowerCase();
  return !f || `${obj.metadata.name} ${obj.metadata.namespace} ${readyCondition(obj).reason || ""}`.toLowerCase().includes(f);
}

function href(obj) {
  return `#/o/${obj.kind}/${encodeURIComponent(obj.metadata.namespace)}/${encodeURIComponent(obj.metadata.name)}`;
}

function row(obj) {
  const cond = readyCondition(obj);
  return h("tr", { dataset: { key: keyOf(obj), reason: cond.reason || "Pending", ready: String(!!obj.status?.ready) } },
    h("td", {}, h("span", { class: `kind kind-${obj.kind}` }, KIND_LABEL[obj.kind] || obj.kind)),
    h("td", { class: "name" }, h("a", { href: href(obj) }, obj.metadata.name)),
    h("td", { class: "muted" }, obj.metadata.namespace),
    h("td", {}, readyPill(obj)),
    h("td", { class: "reason-cell", title: cond.message || "" }, reasonBadge(cond.reason, session.reasons),
      cond.message ? h("div", { class: "message" }, cond.message.split("\n")[0]) : null),
    h("td", { class: "progress-cell" }, progressBar(obj.status?.progress)),
    h("td", { class: "age muted", dataset: { created: obj.metadata.creationTimestamp } }, ago(obj.metadata.creationTimestamp)));
}

function summary(all) {
  const count = (pred) => all.filter(pred).length;
  const failed = count((o) => session.reasons[readyCondition(o).reason]?.category === "failed");
  const ready = count((o) => o.status?.ready);
  return h("div", { class: "summary" },
    h("div", { class: "stat" }, h("b", {}, String(all.length)), " objects"),
    h("div", { class: "stat ok" }, h("b", {}, String(ready)), " ready"),
    h("div", { class: "stat busy" }, h("b", {}, String(all.length - ready - failed)), " in progress"),
    h("div", { class: `stat ${failed ? "bad" : ""}` }, h("b", {}, String(failed)), " failed"));
}

export function renderList(main) {
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const filter = h("input", { type: "search", placeholder: "Filter by name or reason", value: view.filter,
    "aria-label": "filter", oninput: (e) => { view.filter = e.target.value; draw(); } });
  const head = h("div", { class: "list-head" });
  const tbody = h("tbody");
  const empty = h("div", { class: "empty", hidden: true },
    h("p", {}, "No objects yet."), h("p", { class: "muted" }, "Apply some: ", h("code", {}, "sub apply -f examples/demo/")));
  main.append(h("section", { class: "page" }, head, h("div", { class: "toolbar" }, tabs, filter),
    h("div", { class: "card flush" }, h("table", { class: "objects", id: "objects" },
      h("thead", {}, h("tr", {}, ...["Kind", "Name", "Namespace", "Ready", "Reason", "Progress", "Age"].map((t) => h("th", {}, t)))),
      tbody), empty)));

  function drawTabs(all) {
    tabs.replaceChildren(...TABS.map(([id, label]) => h("button", {
      type: "button", role: "tab", class: view.tab === id ? "tab active" : "tab", "aria-selected": String(view.tab === id),
      onclick: () => { view.tab = id; draw(); },
    }, label, h("span", { class: "count" }, String(id === "all" ? all.length : all.filter((o) => o.kind === id).length)))));
  }

  function draw(changed) {
    const all = sorted();
    head.replaceChildren(h("h1", {}, "Objects"), summary(all));
    drawTabs(all);
    const rows = all.filter(visible).map(row);
    tbody.replaceChildren(...rows);
    empty.hidden = all.length > 0;
    if (changed) tbody.querySelector(`tr[data-key="${CSS.escape(changed)}"]`)?.classList.add("flash");
  }

  draw();
  const off = onChange((type, key) => draw(type === "DELETED" ? null : key));
  const timer = setInterval(() => {
    for (const cell of tbody.querySelectorAll("td.age")) cell.textContent = ago(cell.dataset.created);
  }, 5000);
  return () => { off(); clearInterval(timer); };
}
