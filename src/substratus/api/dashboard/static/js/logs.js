// The live log tail on an object's page: refreshed every few seconds while the page is open and visible,
// kept scrolled to the bottom unless the reader has scrolled up to read something.
import { getJSON, objectPath } from "./api.js";
import { h } from "./dom.js";

const EVERY_MS = 4000;  // each refresh runs `podman logs --tail` per container: keep an open tab cheap

export function logTail(kind, namespace, name) {
  const pre = h("pre", { class: "logs", id: "logs", tabindex: 0 }, "loading…");
  const note = h("p", { class: "muted small" }, "The last 200 lines; ", h("code", {}, `sub logs ${kind.toLowerCase()} ${name}`),
    " prints everything.");
  let stopped = false;
  let timer = null;
  let last = "";

  async function refresh() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const { lines } = await getJSON(objectPath(kind, namespace, name, "/logs?lines=200"));
        const text = lines.join("\n") || "(no log lines yet)";
        if (text !== last) {
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
          pre.textContent = text;
          last = text;
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
      } catch (err) {
        pre.dataset.error = err.message;
      }
    }
    if (!stopped) timer = setTimeout(refresh, EVERY_MS);
  }

  refresh();
  return { element: h("div", {}, pre, note), stop: () => { stopped = true; clearTimeout(timer); } };
}
