// Numbers and times as the line display shows them (times in the line's time zone).

let zone;

export function setTimeZone(name) {
  zone = name;
}

export function clock(ts, seconds = false) {
  if (ts == null) return "–";
  const options = { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: zone };
  if (seconds) options.second = "2-digit";
  return new Intl.DateTimeFormat("en-GB", options).format(new Date(ts * 1000));
}

export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function percent(ratio) {
  return ratio == null ? "–" : `${(ratio * 100).toFixed(1)}%`;
}

export function count(n) {
  return n == null ? "–" : n.toLocaleString("en-US");
}

// A ratio's colour class: the usual world-class-OEE thresholds, only a hint.
export function grade(ratio, good = 0.85, fair = 0.6) {
  if (ratio == null) return "";
  return ratio >= good ? "ok" : ratio >= fair ? "warn" : "bad";
}

export function stateWord(state) {
  return { running: "Running", stopped: "Stopped", unknown: "No data" }[state] || state;
}

export function kindWord(kind) {
  return {
    micro_stop: "micro-stop",
    downtime: "downtime",
    planned: "planned",
    unknown: "no data",
  }[kind] || kind;
}

// Build DOM without innerHTML: h("div", {class: "x"}, "text", child, ...).
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    // Through the CSSOM: the page's CSP allows no inline style attributes.
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
