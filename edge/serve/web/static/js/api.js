// The JSON API (/api/v1) and the login session: every write carries the CSRF token.

let session = { user: null, roles: [], csrf_token: null, may: {} };
const listeners = new Set();

export function currentSession() {
  return session;
}

export function onSession(listener) {
  listeners.add(listener);
  listener(session);
}

function setSession(next) {
  session = next;
  for (const listener of listeners) listener(session);
}

export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function send(method, path, body) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (session.csrf_token) headers["X-CSRF-Token"] = session.csrf_token;
  let response;
  try {
    response = await fetch(path, { method, headers, body: JSON.stringify(body || {}), cache: "no-store" });
  } catch (error) {
    return { status: "rejected", code: "unavailable", reason: "the edge does not answer" };
  }
  let document;
  try {
    document = await response.json();
  } catch (error) {
    document = { status: "rejected", code: "failed", reason: `HTTP ${response.status}` };
  }
  if (response.status === 401 && session.user) await refreshSession();
  return document;
}

export async function refreshSession() {
  try {
    setSession(await getJson("/api/v1/session"));
  } catch (error) {
    /* the live feed shows the link state */
  }
}

export async function login(user, secret) {
  const document = await send("POST", "/api/v1/session", { user, secret });
  if (document.user) setSession(document);
  return document;
}

export async function logout() {
  await send("DELETE", "/api/v1/session", {});
  setSession({ user: null, roles: [], csrf_token: null, may: {} });
}

export function command(path, body) {
  return send("POST", path, body);
}
