// A machine page: its state and shift KPIs, its orders (start, hold, resume, complete),
// the shift's stops with their reasons (an operator names the reason of a stop the PLC
// did not name), pieces per hour, and the SPC charts and alarms of its quality stations.

import { command, currentSession, onSession } from "./api.js";
import { kpi, orderCard } from "./cards.js";
import { connectLive } from "./live.js";
import { clock, count, duration, grade, h, kindWord, percent, setTimeZone, stateWord } from "./format.js";
import { hourly, spc, timeline } from "./svg.js";
import { report, setupSession } from "./session.js";

const machineId = decodeURIComponent(location.pathname.split("/").pop());
const kiosk = new URLSearchParams(location.search).has("kiosk");
document.body.classList.toggle("kiosk", kiosk);
let page = null;
const chosen = {}; // stop id -> the reason picked but not yet set (kept across re-renders)

function may(name) {
  return Boolean(currentSession().may && currentSession().may[name]);
}

function stateTile(machine, now, openStop) {
  const planned = machine.state === "stopped" && openStop && openStop.kind === "planned";
  return h("div", { class: `tile ${machine.state}${planned ? " planned" : ""}`, id: "state-tile", "data-state": machine.state },
    h("div", { class: "state" }, h("span", { class: "name" }, machine.name), h("span", { class: "word" }, stateWord(machine.state))),
    h("div", { class: "body" },
      h("div", { class: "since" }, "since ", h("b", {}, machine.since == null ? "–" : `${clock(machine.since)} · ${duration(now - machine.since)}`)),
      h("div", { class: "reason" }, machine.state === "stopped" ? machine.stop_reason : machine.order_id ? `order ${machine.order_id}` : " ")));
}

function shiftPanel(shift) {
  return h("div", { class: "panel" }, h("h2", {}, shift ? `Shift ${shift.name} — OEE` : "Shift OEE"),
    h("div", { class: "kpis" },
      kpi("OEE", percent(shift && shift.oee), grade(shift && shift.oee), true),
      kpi("Availability", percent(shift && shift.availability), grade(shift && shift.availability, 0.9, 0.75)),
      kpi("Performance", percent(shift && shift.performance), grade(shift && shift.performance, 0.95, 0.8)),
      kpi("Quality", percent(shift && shift.quality), grade(shift && shift.quality, 0.99, 0.95))),
    h("div", { class: "counts", style: "margin-top:0.6rem" },
      h("span", {}, "good ", h("span", { class: "good" }, count(shift && shift.good))),
      h("span", {}, "reject ", h("span", { class: "reject" }, count(shift && shift.reject))),
      h("span", {}, "downtime ", h("b", {}, shift ? duration(shift.downtime_s) : "–")),
      h("span", {}, "micro-stops ", h("b", {}, shift ? `${shift.micro_stops} (${duration(shift.micro_stop_s)})` : "–"))));
}

async function orderAction(order, action) {
  let body = {};
  if (action === "hold") {
    const reason = prompt(`Why is order ${order.id} held?`);
    if (!reason) return;
    body = { reason };
  }
  const reply = await command(`/api/v1/orders/${encodeURIComponent(order.id)}/${action}`, body);
  report(reply, `Order ${order.id}: ${action} accepted`);
}

function ordersPanel(orders, now) {
  const buttons = (order) => {
    const list = [];
    const add = (action, label, command, cls = "") => list.push(h("button", {
      class: `control ${cls}`, "data-action": action, disabled: !may(command), title: may(command) ? null : "log in with a role that may",
      onclick: () => orderAction(order, action),
    }, label));
    if (order.status === "released") add("start", "Start", "start_order", "primary");
    if (order.status === "running") add("hold", "Hold", "hold_order");
    if (order.status === "held") add("resume", "Resume", "resume_order", "primary");
    if (order.status === "running" || order.status === "held") add("complete", "Complete", "complete_order", "danger");
    return h("div", { class: "actions" }, list);
  };
  return h("div", { class: "panel", id: "orders" }, h("h2", {}, "Orders"),
    orders.length ? orders.map((o) => h("div", {}, orderCard(o, now), buttons(o))) : h("div", { class: "empty" }, "no open order on this machine"));
}

async function nameReason(stop, select) {
  const reason = select.value;
  if (!reason) return;
  const reply = await command(`/api/v1/machines/${encodeURIComponent(machineId)}/stop-reason`, { reason, stop_id: stop.id });
  if (report(reply, `Stop at ${clock(stop.start)} is now “${reason}”`)) delete chosen[stop.id];
}

function stopsPanel(stops, reasons) {
  const rows = stops.map((stop) => {
    let name = "";
    if (stop.nameable && reasons.length) {
      const picked = chosen[stop.id] ?? stop.operator_reason ?? "";
      const select = h("select", {
        class: "control", "aria-label": "reason", disabled: !may("set_stop_reason"),
        onchange: (event) => (chosen[stop.id] = event.target.value),
      }, h("option", { value: "" }, "— reason —"), reasons.map((r) => h("option", { value: r, selected: r === picked }, r)));
      name = h("div", { class: "name-reason" }, select,
        h("button", { class: "control primary", disabled: !may("set_stop_reason"), onclick: () => nameReason(stop, select) }, "Set"));
    } else if (!stop.nameable) {
      name = h("span", { class: "empty" }, `PLC code ${stop.fault_code}`);
    }
    return h("tr", { class: stop.end == null ? "open" : "", "data-stop": stop.id },
      h("td", {}, clock(stop.start, true)),
      h("td", {}, stop.end == null ? h("b", {}, `${duration(stop.duration_s)} (open)`) : duration(stop.duration_s)),
      h("td", {}, h("span", { class: `chip ${stop.kind}` }, kindWord(stop.kind))),
      h("td", { "data-role": "reason" }, stop.reason),
      h("td", {}, name));
  });
  return h("div", { class: "panel" }, h("h2", {}, `Stops this shift (${stops.length})`),
    stops.length
      ? h("div", { class: "scroll" }, h("table", { class: "stops" },
          h("thead", {}, h("tr", {}, ["Start", "Length", "Kind", "Reason", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, rows)))
      : h("div", { class: "empty" }, "no stop this shift"));
}

async function acknowledge(alarm) {
  const reply = await command("/api/v1/alarms/acknowledge", { alarm_id: alarm.id });
  report(reply, `Alarm ${alarm.characteristic} acknowledged`);
}

function qualityPanel(charts, alarms) {
  if (!charts.length) return null;
  return h("div", { class: "panel chart" }, h("h2", {}, "SPC"),
    alarms.map((a) => h("div", { class: "alarm", "data-alarm": a.id },
      h("div", { class: "what" }, a.description, h("small", {}, `rule ${a.rule} · ${a.count}× · last ${clock(a.last)} · value ${a.last_value == null ? "–" : a.last_value.toPrecision(4)}`)),
      h("button", { class: "control", disabled: !may("acknowledge_alarm"), onclick: () => acknowledge(a) }, "Acknowledge"))),
    charts.map((c) => h("div", {},
      h("div", { class: "counts" }, h("b", {}, `${c.station_name} · ${c.characteristic}`),
        h("span", { class: "empty" }, c.limits ? `${c.subgroup_size > 1 ? "X̄-R" : "I-MR"}, limits from ${c.limits.source}` : "warming up: no control limits yet"),
        h("span", { class: "empty" }, `spec ${c.lsl ?? "–"} … ${c.usl ?? "–"} ${c.unit}`)),
      spc(c))));
}

function render() {
  if (!page) return;
  const now = Date.now() / 1000;
  setTimeZone(page.timezone);
  const machine = page.machine;
  document.title = `${machine.name} — ${page.line.name}`;
  document.getElementById("line-name").textContent = `${machine.name}`;
  document.getElementById("back").href = `/${kiosk ? "?kiosk=1" : ""}`;
  const openStop = page.stops.find((s) => s.end == null);
  document.getElementById("top").replaceChildren(stateTile(machine, now, openStop), shiftPanel(machine.shift), ordersPanel(page.orders, now));
  document.getElementById("timeline").replaceChildren(timeline([{ name: machine.name, segments: page.timeline, observed: machine.shift && machine.shift.start }], page.shift, now));
  document.getElementById("stops").replaceChildren(stopsPanel(page.stops, machine.reasons));
  document.getElementById("hours").replaceChildren(h("h2", {}, "Pieces per hour"), page.hours.length ? hourly(page.hours) : h("div", { class: "empty" }, "none yet"));
  const quality = qualityPanel(page.charts, page.alarms);
  document.getElementById("quality").replaceChildren(...(quality ? [quality] : []));
}

setupSession();
onSession(() => render());
connectLive(`?machine=${encodeURIComponent(machineId)}`, (message) => {
  if (message.type === "machine") {
    page = message;
    render();
  }
});
setInterval(() => {
  // The clocks move between pushes; a select the operator has open stays as it is.
  if (!document.activeElement || document.activeElement.tagName !== "SELECT") render();
}, 1000);
document.getElementById("clock").textContent = clock(Date.now() / 1000);
setInterval(() => (document.getElementById("clock").textContent = clock(Date.now() / 1000)), 1000);
