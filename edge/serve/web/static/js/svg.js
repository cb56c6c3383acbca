// Hand-drawn SVG charts: the shift timeline, the downtime Pareto, pieces per hour, SPC.

import { clock, duration, kindWord } from "./format.js";

const NS = "http://www.w3.org/2000/svg";
const COLOURS = {
  running: "var(--running)",
  downtime: "var(--downtime)",
  micro_stop: "var(--micro)",
  planned: "var(--planned)",
  unknown: "var(--unknown)",
  break: "#24303f",
};

export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) if (value != null) node.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function title(text) {
  return s("title", {}, text);
}

// One row per machine across the shift: running unless a stop or an unknown span says otherwise.
export function timeline(rows, shift, now) {
  const label = 190;
  const width = 1640;
  const rowH = 34;
  const axis = 26;
  const height = rows.length * (rowH + 6) + axis;
  const start = shift ? shift.start : now - 8 * 3600;
  const end = shift ? shift.end : now;
  const x = (t) => label + ((Math.min(Math.max(t, start), end) - start) / (end - start)) * (width - label - 50);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  rows.forEach((row, i) => {
    const y = i * (rowH + 6);
    svg.append(s("text", { x: 0, y: y + rowH * 0.7, "font-size": 22, "font-weight": 700 }, row.name));
    svg.append(s("rect", { x: label, y, width: width - label - 50, height: rowH, fill: "var(--panel-2)" }));
    // Running from when the machine was first observed in this shift (before: not seen).
    const seen = Math.max(row.observed ?? start, start);
    if (now > seen) {
      svg.append(s("rect", { x: x(seen), y, width: x(now) - x(seen), height: rowH, fill: COLOURS.running }, title("running")));
    }
    for (const [a, b] of shift ? shift.breaks : []) {
      if (a >= now) continue;
      svg.append(s("rect", { x: x(a), y, width: Math.max(x(Math.min(b, now)) - x(a), 1), height: rowH, fill: COLOURS.break }, title(`break ${clock(a)}–${clock(b)}`)));
    }
    for (const [a, b, kind, reason] of row.segments) {
      const stop = b == null ? now : b;
      if (stop < start || a > end) continue;
      const w = Math.max(x(stop) - x(a), 2);
      svg.append(
        s(
          "rect",
          { x: x(a), y, width: w, height: rowH, fill: COLOURS[kind] || COLOURS.downtime },
          title(`${kindWord(kind)}: ${reason}, ${clock(a)}${b == null ? " (open)" : "–" + clock(b)}, ${duration(stop - a)}`),
        ),
      );
    }
  });
  // The hours of the shift under the rows, and a marker at now.
  const y0 = rows.length * (rowH + 6);
  const firstHour = Math.ceil(start / 3600) * 3600;
  for (let t = firstHour; t <= end; t += 3600) {
    svg.append(s("line", { x1: x(t), x2: x(t), y1: 0, y2: y0, stroke: "rgba(0,0,0,0.35)", "stroke-width": 1 }));
    svg.append(s("text", { x: x(t), y: y0 + 20, "font-size": 18, "text-anchor": "middle", class: "muted" }, clock(t)));
  }
  if (now >= start && now <= end) {
    svg.append(s("line", { x1: x(now), x2: x(now), y1: 0, y2: y0, stroke: "white", "stroke-width": 3 }));
  }
  return svg;
}

// The line's top downtime reasons: bars by seconds, and the cumulative share as a line.
export function pareto(items) {
  const width = 600;
  const barH = 34;
  const gap = 8;
  const height = Math.max(items.length, 1) * (barH + gap);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  // The summed tail is a line of text, not a bar: it is no single reason to act on.
  const named = items.filter((i) => !i.other);
  const most = Math.max(...named.map((i) => i.seconds), 1);
  items.forEach((item, n) => {
    const y = n * (barH + gap);
    if (!item.other) {
      const w = (item.seconds / most) * (width - 230);
      svg.append(s("rect", { x: 0, y, width: Math.max(w, 2), height: barH, fill: n === 0 ? "var(--downtime)" : "#b53a34", rx: 3 }, title(`${item.reason}: ${duration(item.seconds)}`)));
    }
    svg.append(s("text", { x: 8, y: y + barH * 0.68, "font-size": 21, "font-weight": 700, class: item.other ? "muted" : null }, item.reason));
    svg.append(
      s("text", { x: width, y: y + barH * 0.68, "font-size": 21, "text-anchor": "end" },
        `${duration(item.seconds)} · ${(item.cumulative * 100).toFixed(0)}%`),
    );
  });
  return svg;
}

// Pieces per hour: good stacked under rejects, the hour's local time below.
export function hourly(hours) {
  const width = 800;
  const height = 260;
  const bottom = 30;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const most = Math.max(...hours.map((h) => h.total), 1);
  const slot = (width - 10) / Math.max(hours.length, 1);
  hours.forEach((hour, n) => {
    const x = 5 + n * slot + slot * 0.12;
    const w = slot * 0.76;
    const scale = (height - bottom - 30) / most;
    const good = hour.good * scale;
    const reject = hour.reject * scale;
    const base = height - bottom;
    svg.append(s("rect", { x, y: base - good, width: w, height: good, fill: "var(--good)" }, title(`${clock(hour.start)}: ${hour.good} good`)));
    svg.append(s("rect", { x, y: base - good - reject, width: w, height: reject, fill: "var(--reject)" }, title(`${clock(hour.start)}: ${hour.reject} rejects`)));
    svg.append(s("text", { x: x + w / 2, y: base - good - reject - 6, "font-size": 18, "text-anchor": "middle" }, hour.total));
    svg.append(s("text", { x: x + w / 2, y: height - 8, "font-size": 17, "text-anchor": "middle", class: "muted" }, clock(hour.start)));
  });
  return svg;
}

// An SPC chart: the plotted points, centre line and control limits, spec limits dashed,
// points that broke a rule in red with the rule numbers.
export function spc(chart) {
  const width = 1500;
  const height = 330;
  const left = 70;
  const right = 130;
  const top = 14;
  const bottom = 26;
  const points = chart.points;
  const limits = chart.limits;
  const values = points.map((p) => p.value);
  // The scale is the process's: points and control limits. Specification limits far
  // outside them would squash the chart; they are drawn only when they fall inside.
  const marks = limits ? [limits.ucl, limits.lcl, limits.center] : [];
  let lo = Math.min(...values, ...marks);
  let hi = Math.max(...values, ...marks);
  if (!isFinite(lo) || !isFinite(hi)) {
    lo = chart.lsl ?? 0;
    hi = chart.usl ?? 1;
  }
  const pad = (hi - lo || 1) * 0.08;
  lo -= pad;
  hi += pad;
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  const n = Math.max(points.length - 1, 1);
  const x = (i) => left + (i / n) * (width - left - right);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  svg.append(s("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, fill: "var(--panel-2)" }));
  const line = (value, label, colour, dash) => {
    if (value == null) return;
    svg.append(s("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), stroke: colour, "stroke-width": 2, "stroke-dasharray": dash }));
    svg.append(s("text", { x: width - right + 6, y: y(value) + 6, "font-size": 17, fill: colour }, `${label} ${value.toPrecision(4)}`));
  };
  if (limits) {
    line(limits.ucl, "UCL", "#ff8a84");
    line(limits.lcl, "LCL", "#ff8a84");
    line(limits.center, "CL", "#9af5b7");
  }
  const inside = (v) => v != null && v >= lo && v <= hi;
  if (inside(chart.usl)) line(chart.usl, "USL", "#8ab4ff", "8 6");
  if (inside(chart.lsl)) line(chart.lsl, "LSL", "#8ab4ff", "8 6");
  if (points.length) {
    svg.append(s("polyline", { points: points.map((p, i) => `${x(i)},${y(p.value)}`).join(" "), fill: "none", stroke: "var(--accent)", "stroke-width": 2 }));
  }
  points.forEach((p, i) => {
    const broke = p.rules.length > 0 || p.range_out;
    svg.append(s("circle", { cx: x(i), cy: y(p.value), r: broke ? 7 : 4, fill: broke ? "var(--downtime)" : "var(--accent)" },
      title(`#${p.n} ${clock(p.ts, true)}: ${p.value.toPrecision(5)}${broke ? " — rule " + (p.rules.join(", ") || "range") : ""}`)));
    if (broke) {
      svg.append(s("text", { x: x(i), y: y(p.value) - 12, "font-size": 16, "text-anchor": "middle", fill: "#ff8a84", "font-weight": 700 },
        p.rules.length ? `R${p.rules.join(",")}` : "MR"));
    }
  });
  svg.append(s("text", { x: 4, y: top + 14, "font-size": 16, class: "muted" }, chart.unit || ""));
  if (points.length) {
    svg.append(s("text", { x: left, y: height - 6, "font-size": 16, class: "muted" }, `#${points[0].n}`));
    svg.append(s("text", { x: width - right, y: height - 6, "font-size": 16, class: "muted", "text-anchor": "end" }, `#${points[points.length - 1].n}`));
  }
  return svg;
}
