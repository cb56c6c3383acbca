// Pieces both pages show: a KPI figure and an order's card.

import { clock, count, duration, h } from "./format.js";

export function kpi(label, value, cls = "", big = false) {
  return h("div", { class: `kpi${big ? " big" : ""}` },
    h("span", { class: "label" }, label),
    h("span", { class: `value ${cls}` }, value));
}

export function orderCard(order, now) {
  const done = Math.min(order.good / Math.max(order.target, 1), 1);
  const rejected = Math.min(order.reject / Math.max(order.target, 1), 1 - done);
  const end = order.expected_end == null ? "–" : `${clock(order.expected_end)} (in ${duration(order.expected_end - now)})`;
  return h("div", { class: "order-card", "data-order": order.id, "data-status": order.status },
    h("div", { class: "title" }, h("span", {}, order.id, " · ", order.product), h("span", { class: `status ${order.status}` }, order.status)),
    h("div", { class: "progress" }, h("div", { class: "g", style: `width:${done * 100}%` }), h("div", { class: "r", style: `width:${rejected * 100}%` })),
    h("div", { class: "numbers" },
      h("span", {}, h("b", { class: "good" }, count(order.good)), ` / ${count(order.target)} good`),
      h("span", {}, h("b", { class: "reject" }, count(order.reject)), " rejects"),
      h("span", {}, "expected end ", h("b", {}, end))));
}
