// Talking to the control plane from the page: JSON reads, CSRF-checked posts, and the live object feed.
// Every request is same-origin; the session is an HttpOnly cookie the page never sees. A 401 anywhere means the
// session ended: go back to the login page.

let csrfToken = "";
export let session = null;

function toLogin() {
  location.assign("/ui/login");
}

async function check(resp) {
  if (resp.status === 401) {
    toLogin();
    throw new Error("not logged in");
  }
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try {
      const body = await resp.json();
      message = body.error?.message || body.detail?.[0]?.msg || body.detail || message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  return resp;
}

export async function getJSON(path) {
  const resp = await check(await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }));
  return resp.json();
}

export async function post(path, body) {
  return check(await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: JSON.stringify(body ?? {}),
  }));
}

export async function startSession() {
  session = await getJSON("/ui/api/session");
  csrfToken = session.csrfToken;
  return session;
}

export async function logout() {
  try { await post("/ui/logout"); } finally { toLogin(); }
}

export function objectPath(kind, namespace, name, suffix = "") {
  return `/ui/api/objects/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}${suffix}`;
}

export function keyOf(obj) {
  return `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`;
}

// The live object store: filled by server-sent events (reset, ADDED, MODIFIED, DELETED), read by the pages.
export const objects = new Map();
const listeners = new Set();

export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(type, key) {
  for (const fn of [...listeners]) fn(type, key);
}

export function connectEvents(status) {
  const source = new EventSource("/ui/api/events");
  let resetting = false;
  source.addEventListener("open", () => status("live"));
  source.addEventListener("reset", () => { resetting = true; objects.clear(); });
  for (const type of ["ADDED", "MODIFIED"]) {
    source.addEventListener(type, (e) => {
      const obj = JSON.parse(e.data);
      objects.set(keyOf(obj), obj);
      if (!resetting) emit(type, keyOf(obj));
    });
  }
  source.addEventListener("DELETED", (e) => {
    const obj = JSON.parse(e.data);
    objects.delete(keyOf(obj));
    emit("DELETED", keyOf(obj));
  });
  source.addEventListener("BOOKMARK", () => {
    if (resetting) { resetting = false; emit("reset", null); }
  });
  source.addEventListener("error", async () => {
    status("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      await getJSON("/ui/api/session").catch(() => {});  // sends us to the login page if the session ended
      setTimeout(() => connectEvents(status), 2000);
    }
  });
  return source;
}
