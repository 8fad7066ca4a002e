// An object's page: what it is and where it stands (ready, reason, message), its links (API docs, metrics,
// open notebook), training or loading progress as a chart, lineage as a graph, a server's playground, the
// conditions as a timeline, spec and status, and a live log tail. Sections update in place when the live feed
// reports a change, so the playground's prompt and the log's scroll position survive updates.
import { getJSON, objectPath, onChange, session } from "./api.js";
import { KIND_LABEL, ago, h, readyCondition, readyPill, reasonBadge } from "./dom.js";
import { lineageGraph } from "./lineage.js";
import { logTail } from "./logs.js";
import { playground } from "./playground.js";
import { progressSection } from "./progress.js";
import { toYaml } from "./yaml.js";

function card(title, id, ...body) {
  return h("section", { class: "card", id }, h("h2", {}, title), ...body);
}

function header(obj) {
  const cond = readyCondition(obj);
  return [
    h("a", { href: "#/", class: "back" }, "← All objects"),
    h("div", { class: "title-row" },
      h("span", { class: `kind kind-${obj.kind}` }, KIND_LABEL[obj.kind] || obj.kind),
      h("h1", {}, obj.metadata.name), h("span", { class: "muted" }, obj.metadata.namespace),
      readyPill(obj), reasonBadge(cond.reason, session.reasons),
      h("span", { class: "muted small" }, `created ${ago(obj.metadata.creationTimestamp)} ago · generation ${obj.metadata.generation}`)),
    cond.message ? h("pre", { class: "message-box" }, cond.message) : null,
  ];
}

function linkBar(detail) {
  const links = detail.links.map((l) => h("a", {
    href: l.href, class: l.rel === "open" ? "button primary" : "button", "data-rel": l.rel,
    target: l.rel === "open" ? "_blank" : null, rel: "noopener noreferrer",
  }, l.name));
  return links.length ? h("div", { class: "links" }, ...links) : null;
}

function timeline(obj) {
  const conds = [...(obj.status?.conditions || [])]
    .sort((a, b) => (a.lastTransitionTime || "").localeCompare(b.lastTransitionTime || ""));
  if (!conds.length) return h("p", { class: "muted" }, "No conditions yet.");
  return h("ol", { class: "timeline" }, ...conds.map((c) => h("li", {
    class: `tl ${c.status === "True" ? "true" : session.reasons[c.reason]?.category === "failed" ? "failed" : "false"}`,
    dataset: { type: c.type },
  },
  h("div", { class: "tl-head" }, h("b", {}, c.type), " ", h("span", { class: "muted" }, c.status), " ",
    reasonBadge(c.reason, session.reasons),
    h("time", { class: "muted small", datetime: c.lastTransitionTime, title: c.lastTransitionTime },
      c.lastTransitionTime ? `${ago(c.lastTransitionTime)} ago` : "")),
  c.message ? h("div", { class: "tl-message" }, c.message) : null)));
}

function statusYaml(obj) {
  const { conditions, ...rest } = obj.status || {};
  return h("pre", { class: "yaml" }, toYaml(rest));
}

function containers(detail) {
  if (!detail.containers.length) return null;
  return h("ul", { class: "containers" }, ...detail.containers.map((c) =>
    h("li", {}, h("code", {}, c.name), ` ${c.status}`, c.exitCode !== null && c.exitCode !== undefined ? ` (exit ${c.exitCode})` : "",
      h("span", { class: "muted small" }, ` ${c.image}`))));
}

export function renderObject(main, kind, namespace, name) {
  const head = h("div", { class: "object-head" });
  const links = h("div");
  const progress = progressSection(kind, namespace, name);
  const lineage = card("Lineage", "lineage", h("p", { class: "muted" }, "loading…"));
  const conds = card("Conditions", "conditions");
  const spec = card("Spec", "spec");
  const status = card("Status", "status");
  const logs = logTail(kind, namespace, name);
  const play = h("div");
  const page = h("section", { class: "page object" }, head, links, h("div", { class: "grid" },
    h("div", { class: "col-main" }, play, progress.element, lineage, card("Logs", "logs-card", logs.element)),
    h("div", { class: "col-side" }, conds, spec, status)));
  main.append(page);
  let playShown = false;

  async function refresh() {
    let detail;
    try {
      detail = await getJSON(objectPath(kind, namespace, name));
    } catch (err) {
      head.replaceChildren(h("a", { href: "#/", class: "back" }, "← All objects"), h("p", { class: "error" }, err.message));
      return;
    }
    const obj = detail.object;
    head.replaceChildren(...header(obj).filter(Boolean));
    links.replaceChildren(...[linkBar(detail)].filter(Boolean));
    conds.replaceChildren(h("h2", {}, "Conditions"), timeline(obj));
    spec.replaceChildren(h("h2", {}, "Spec"), h("pre", { class: "yaml" }, toYaml(obj.spec || {})));
    status.replaceChildren(...[h("h2", {}, "Status"), statusYaml(obj), containers(detail)].filter(Boolean));
    if (obj.kind === "ModelServer" && obj.status?.ready && !playShown) {
      play.replaceChildren(card("Playground", "playground", playground(obj)));
      playShown = true;
    }
    progress.update(obj);
    const graph = await getJSON(objectPath(kind, namespace, name, "/lineage")).catch(() => null);
    if (graph) lineage.replaceChildren(h("h2", {}, "Lineage"), lineageGraph(graph));
  }

  let pending = null;
  const off = onChange(() => {
    if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 400);
  });
  refresh();
  return () => { off(); logs.stop(); progress.stop(); clearTimeout(pending); };
}
