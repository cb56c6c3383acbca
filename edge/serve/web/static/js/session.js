// The header's login: a dialog with the user's name and password or PIN (a keypad
// for a touch screen), the logged-in user with a logout button, and the toast that
// tells the outcome of every command.

import { login, logout, onSession, refreshSession } from "./api.js";
import { h } from "./format.js";

export function toast(ok, text) {
  const node = document.getElementById("toast");
  node.className = ok ? "ok" : "bad";
  node.textContent = text;
  clearTimeout(node.timer);
  node.timer = setTimeout(() => (node.className = ""), ok ? 3000 : 6000);
}

// A command's reply in words for the toast.
export function report(reply, done) {
  if (reply.status === "accepted") toast(true, done);
  else toast(false, `Refused: ${reply.reason}`);
  return reply.status === "accepted";
}

function dialog() {
  const name = h("input", { id: "login-user", autocomplete: "username", required: true });
  const secret = h("input", { id: "login-secret", type: "password", autocomplete: "current-password", inputmode: "numeric", required: true });
  const error = h("div", { class: "error", id: "login-error" });
  const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "⌫", "0", "C"].map((key) =>
    h("button", {
      type: "button",
      onclick: () => {
        if (key === "⌫") secret.value = secret.value.slice(0, -1);
        else if (key === "C") secret.value = "";
        else secret.value += key;
      },
    }, key),
  );
  const form = h("form", { method: "dialog" },
    h("h2", {}, "Log in"),
    h("label", { for: "login-user" }, "User"), name,
    h("label", { for: "login-secret" }, "PIN or password"), secret,
    h("div", { class: "keypad" }, keys),
    error,
    h("div", { class: "dialog-actions" },
      h("button", { type: "button", value: "cancel", onclick: () => box.close() }, "Cancel"),
      h("button", { type: "submit", class: "primary", id: "login-submit" }, "Log in")),
  );
  const box = h("dialog", { id: "login" }, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reply = await login(name.value, secret.value);
    if (reply.user) {
      secret.value = "";
      error.textContent = "";
      box.close();
      toast(true, `Logged in as ${reply.user}`);
    } else {
      error.textContent = reply.reason || "login failed";
    }
  });
  document.body.append(box);
  return box;
}

export function setupSession() {
  const place = document.getElementById("user");
  const box = dialog();
  onSession((session) => {
    place.replaceChildren();
    if (session.user) {
      place.append(
        h("span", {}, "👤 ", h("b", { id: "user-name" }, session.user), ` (${session.roles.join(", ")})`),
        h("button", { class: "control", id: "logout", onclick: () => logout().then(() => toast(true, "Logged out")) }, "Log out"),
      );
    } else {
      place.append(h("button", { class: "control primary", id: "login-open", onclick: () => box.showModal() }, "Log in"));
    }
  });
  refreshSession();
}
