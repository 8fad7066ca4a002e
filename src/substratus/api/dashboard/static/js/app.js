// The dashboard's entry point: start the session, open the live feed, and route between the objects list
// (#/) and an object's page (#/o/Kind/namespace/name). Each page is a function that renders into <main> and
// returns a cleanup function, called when the route changes.
import { connectEvents, logout, session, startSession } from "./api.js";
import { h } from "./dom.js";
import { renderList } from "./list.js";
import { renderObject } from "./object.js";

const main = document.getElementById("main");
let cleanup = () => {};

function setLive(state) {
  const el = document.getElementById("live");
  el.className = `live ${state}`;
  el.dataset.state = state;
  el.textContent = state === "live" ? "live" : "reconnecting…";
}

function route() {
  cleanup();
  main.replaceChildren();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", parts[0] !== "o");
  try {
    if (parts[0] === "o" && parts.length === 4) {
      document.title = `${parts[3]} · ${parts[1]} · Substratus`;
      cleanup = renderObject(main, parts[1], parts[2], parts[3]) || (() => {});
    } else {
      document.title = "Objects · Substratus";
      cleanup = renderList(main) || (() => {});
    }
  } catch (err) {
    main.append(h("p", { class: "error pad" }, String(err)));
    cleanup = () => {};
  }
  window.scrollTo(0, 0);
}

async function boot() {
  await startSession();
  document.getElementById("whoami").textContent = `${session.engine} · v${session.version}`;
  document.getElementById("logout").addEventListener("click", logout);
  connectEvents(setLive);
  window.addEventListener("hashchange", route);
  route();
}

boot().catch((err) => {
  main.replaceChildren(h("p", { class: "error pad" }, `The dashboard could not start: ${err.message}`));
});
