// Charts: uPlot line charts for the curves (fast on thousands of points),
// a hand-drawn SVG scatter for accuracy against rate with its Pareto front
// (every point a link, so the scatter is keyboard-navigable).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./util.js";

export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#6b7280", "#a16207"];

// A line chart in a new figure appended to parent. series: labels of the
// y columns; data: [xs, ys...]. Returns {update(data), destroy()}.
export function lineChart(parent, { title, xLabel, series, yLabel, logY = false, id, intX = true }) {
  const fig = h("figure", { class: "chart", "data-chart": id || title, "data-points": "0" }, h("figcaption", {}, title));
  const box = h("div", { class: "plot" });
  fig.append(box);
  parent.append(fig);
  const opts = {
    width: Math.max(260, box.clientWidth || parent.clientWidth || 400),
    height: 220,
    scales: { x: { time: false }, y: logY ? { distr: 3 } : {} },
    // Epochs and iterations are whole numbers: no ticks between them.
    axes: [{ label: xLabel, size: 40, ...(intX ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] } : {}) }, { label: yLabel, size: 60 }],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    series: [{ label: xLabel }, ...series.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
      points: { show: true, size: 4 },
    }))],
  };
  let data = [[], ...series.map(() => [])];
  const plot = new uPlot(opts, data, box);
  const ro = new ResizeObserver(() => {
    const w = box.clientWidth;
    if (w > 0 && Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 220 });
  });
  ro.observe(box);
  return {
    el: fig,
    update(d) {
      data = d;
      plot.setData(d);
      fig.dataset.points = String(d[0].length);
    },
    destroy() {
      ro.disconnect();
      plot.destroy();
    },
  };
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of kids) el.append(c);
  return el;
}

// The points that no other point beats on both axes (higher x and higher
// y are better), sorted by x.
export function paretoFront(points) {
  const sorted = [...points].sort((a, b) => b.x - a.x || b.y - a.y);
  const front = [];
  let best = -Infinity;
  for (const p of sorted) if (p.y > best) { front.push(p); best = p.y; }
  return front.sort((a, b) => a.x - b.x);
}

// points: [{x, y, label, href}]; returns the figure.
export function scatter(parent, { title, xLabel, yLabel, points, logX = true }) {
  const W = 640, H = 340, L = 60, R = 20, T = 16, B = 44;
  const fig = h("figure", { class: "chart scatter", "data-chart": "pareto", "data-points": String(points.length) }, h("figcaption", {}, title));
  parent.append(fig);
  if (!points.length) {
    fig.append(h("p", { class: "muted" }, "No finished job with a report yet."));
    return fig;
  }
  const fx = (v) => (logX ? Math.log(Math.max(v, 1e-9)) : v);
  const xs = points.map((p) => fx(p.x)), ys = points.map((p) => p.y);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 - x0 < 1e-9) { x0 -= 0.5; x1 += 0.5; }
  if (y1 - y0 < 1e-9) { y0 -= 0.01; y1 += 0.01; }
  const px = (v) => L + ((fx(v) - x0) / (x1 - x0)) * (W - L - R);
  const py = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "scatter-svg" });
  svg.append(s("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.append(s("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, xv = logX ? Math.exp(x0 + ((x1 - x0) * i) / 4) : x0 + ((x1 - x0) * i) / 4;
    svg.append(s("text", { x: L - 6, y: py(yv) + 4, class: "tick", "text-anchor": "end" }, (100 * yv).toFixed(1) + "%"));
    svg.append(s("text", { x: px(xv), y: H - B + 16, class: "tick", "text-anchor": "middle" }, xv.toFixed(1) + "×"));
  }
  svg.append(s("text", { x: (L + W - R) / 2, y: H - 6, class: "label", "text-anchor": "middle" }, xLabel));
  svg.append(s("text", { x: 14, y: (T + H - B) / 2, class: "label", "text-anchor": "middle", transform: `rotate(-90 14 ${(T + H - B) / 2})` }, yLabel));
  const front = paretoFront(points);
  svg.append(s("polyline", { points: front.map((p) => `${px(p.x)},${py(p.y)}`).join(" "), class: "front", "data-front": String(front.length) }));
  points.forEach((p, i) => {
    const onFront = front.includes(p);
    const a = s("a", { href: p.href, "aria-label": `${p.label}: ${(100 * p.y).toFixed(2)}% at ${p.x.toFixed(2)}×` },
      s("circle", { cx: px(p.x), cy: py(p.y), r: onFront ? 6 : 4.5, class: onFront ? "pt front-pt" : "pt", fill: COLORS[i % COLORS.length] },
        s("title", {}, `${p.label}: accuracy ${(100 * p.y).toFixed(2)}%, rate ${p.x.toFixed(2)}×`)));
    svg.append(a);
  });
  fig.append(svg);
  return fig;
}
