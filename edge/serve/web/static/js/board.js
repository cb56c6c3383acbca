// The line board: every machine's state, the current orders, shift OEE, the stops
// timeline and the downtime Pareto, live from /api/v1/live.

import { connectLive } from "./live.js";
import { kpi, orderCard } from "./cards.js";
import { clock, count, duration, grade, h, percent, setTimeZone, stateWord } from "./format.js";
import { pareto, timeline } from "./svg.js";
import { setupSession } from "./session.js";

const kiosk = new URLSearchParams(location.search).has("kiosk");
document.body.classList.toggle("kiosk", kiosk);

let line = null;
const timelines = {};

function tile(machine, now) {
  const shift = machine.shift;
  const open = (timelines[machine.id] || []).find((segment) => segment[1] == null);
  const planned = machine.state === "stopped" && open && open[2] === "planned";
  const since = machine.since == null ? "–" : `${clock(machine.since)} · ${duration(now - machine.since)}`;
  const reason = machine.state === "stopped"
    ? machine.stop_reason
    : machine.state === "unknown" ? "no data from the PLC" : machine.order_id ? `order ${machine.order_id}` : "";
  return h("a", {
    class: `tile ${machine.state}${planned ? " planned" : ""}`,
    href: `/machines/${encodeURIComponent(machine.id)}${kiosk ? "?kiosk=1" : ""}`,
    "data-machine": machine.id,
    "data-state": machine.state,
  },
    h("div", { class: "state" }, h("span", { class: "name" }, machine.name), h("span", { class: "word" }, stateWord(machine.state))),
    h("div", { class: "body" },
      h("div", { class: "since" }, "since ", h("b", {}, since)),
      h("div", { class: "reason", "data-role": "reason" }, reason || " "),
      h("div", { class: "kpis" },
        kpi("OEE", percent(shift && shift.oee), grade(shift && shift.oee), true),
        kpi("A", percent(shift && shift.availability), grade(shift && shift.availability, 0.9, 0.75)),
        kpi("P", percent(shift && shift.performance), grade(shift && shift.performance, 0.95, 0.8)),
        kpi("Q", percent(shift && shift.quality), grade(shift && shift.quality, 0.99, 0.95))),
      h("div", { class: "counts" },
        h("span", {}, "good ", h("span", { class: "good" }, count(shift && shift.good))),
        h("span", {}, "reject ", h("span", { class: "reject" }, count(shift && shift.reject))),
        h("span", {}, "stops ", h("b", {}, shift ? `${shift.downtime_events} + ${shift.micro_stops} micro` : "–")))));
}

function render() {
  if (!line) return;
  const now = Date.now() / 1000;
  setTimeZone(line.timezone);
  document.getElementById("line-name").textContent = line.line.name;
  document.title = `${line.line.name} — line board`;
  const shift = line.shift;
  const shiftNode = document.getElementById("shift");
  shiftNode.replaceChildren(
    shift ? h("span", {}, "Shift ", h("b", {}, shift.name), ` ${clock(shift.start)}–${clock(shift.end)}`) : h("span", {}, "not scheduled now"),
    h("div", { class: "shift-bar" }, h("div", { style: `width:${shift ? Math.min(100, ((now - shift.start) / (shift.end - shift.start)) * 100) : 0}%` })));
  document.getElementById("tiles").replaceChildren(...line.machines.map((m) => tile(m, now)));
  const orders = line.orders.filter((o) => o.status === "running" || o.status === "held");
  document.getElementById("orders").replaceChildren(
    ...(orders.length ? orders.map((o) => orderCard(o, now)) : [h("div", { class: "empty" }, "no order running")]));
  document.getElementById("pareto").replaceChildren(
    line.pareto.length ? pareto(line.pareto) : h("div", { class: "empty" }, "no downtime this shift"));
  document.getElementById("alarms").replaceChildren(
    ...(line.alarms.length
      ? line.alarms.slice(0, 3).map((a) => h("div", { class: "alarm" }, h("div", { class: "what" }, a.description, h("small", {}, `rule ${a.rule} · ${a.count}× · last ${clock(a.last)}`))))
      : [h("div", { class: "empty" }, "no active alarm")]));
  const rows = line.machines.map((m) => ({ name: m.name, segments: timelines[m.id] || [], observed: m.shift && m.shift.start }));
  document.getElementById("timeline").replaceChildren(timeline(rows, shift, now));
}

setupSession();
connectLive("", (message) => {
  if (message.type !== "line") return;
  Object.assign(timelines, message.timelines);
  line = message;
  render();
});
setInterval(render, 1000);
document.getElementById("clock").textContent = clock(Date.now() / 1000);
setInterval(() => (document.getElementById("clock").textContent = clock(Date.now() / 1000)), 1000);
