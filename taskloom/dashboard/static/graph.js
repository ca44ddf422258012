// A Graph's nodes drawn as a graph (SVG), each coloured by its state, from the execution's events.
//
// A graph run records its shape once (`graph_started`: nodes, edges, start, ends) and, per wave, which
// step runs which node and which nodes were skipped (`graph_wave`); taskloom/tasks/graph.py writes both.
// A node's state then comes from its step, as the timeline folds it: running, completed, failed,
// replayed (settled before a later run began), paused; or skipped, or pending (no wave reached it yet).
// Nodes are laid out by level (the longest path from a root), left to right; conditional edges are dashed.
// Loaded before app.js, which owns the page; everything here is drawn as SVG elements and text, never HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 150;
const NODE_H = 44;
const GAP_X = 56;
const GAP_Y = 16;
const PAD = 8;

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The graphs of one execution, by graph_id, in the order they started.
class GraphModel {
  constructor() {
    this.graphs = new Map();
  }

  add(event) {
    const data = event.data || {};
    if (event.type === "graph_started") {
      if (this.graphs.has(data.graph_id)) return; // recorded again by a later run: the same graph
      this.graphs.set(data.graph_id, {
        id: data.graph_id,
        name: event.name,
        nodes: data.nodes || [],
        edges: data.edges || [],
        start: data.start,
        ends: data.ends || [],
        steps: new Map(), // node -> step id (null: a plain function, which has no step of its own)
        wave: new Map(), // node -> the number of the wave that ran it
        skipped: new Set(),
        waves: 0,
      });
    } else if (event.type === "graph_wave") {
      const graph = this.graphs.get(data.graph_id);
      if (!graph) return; // its shape was recorded before graphs were (an older execution): not drawn
      for (const [node, step] of Object.entries(data.nodes || {})) {
        graph.steps.set(node, step);
        graph.wave.set(node, graph.waves);
      }
      for (const node of data.skipped || []) graph.skipped.add(node);
      graph.waves += 1;
    }
  }
}

// The state of one node: pending, running, paused, completed, replayed, failed or skipped.
function nodeState(graph, node, model, record) {
  if (graph.skipped.has(node)) return "skipped";
  if (!graph.steps.has(node)) return "pending";
  const status = record ? record.status : "running";
  const waiting = status === "paused" ? "paused" : status === "running" || status === "queued" ? "running" : "pending";
  const stepId = graph.steps.get(node);
  if (stepId === null) {
    // a plain function: done once a later wave began or the graph ended; else as the execution is
    const later = graph.wave.get(node) < graph.waves - 1 || graph.nodes.every((n) => graph.skipped.has(n) || graph.steps.has(n));
    return later && status !== "failed" ? "completed" : waiting;
  }
  const step = model.steps.get(stepId);
  if (!step || step.end === null) return waiting;
  if (step.state === "failed") return "failed";
  return model.replayed(step) ? "replayed" : "completed";
}

// Levels by the longest path from a root (a node with no incoming edge), in the order nodes were added.
function levels(graph) {
  const level = new Map(graph.nodes.map((n) => [n, 0]));
  const incoming = new Map(graph.nodes.map((n) => [n, 0]));
  for (const edge of graph.edges) incoming.set(edge.target, (incoming.get(edge.target) || 0) + 1);
  const ready = graph.nodes.filter((n) => !incoming.get(n));
  while (ready.length) {
    const node = ready.shift();
    for (const edge of graph.edges.filter((e) => e.source === node)) {
      level.set(edge.target, Math.max(level.get(edge.target) || 0, level.get(node) + 1));
      incoming.set(edge.target, incoming.get(edge.target) - 1);
      if (!incoming.get(edge.target)) ready.push(edge.target);
    }
  }
  return level;
}

function drawGraph(graph, model, record) {
  const level = levels(graph);
  const columns = [];
  for (const node of graph.nodes) (columns[level.get(node)] ||= []).push(node);
  const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X;
  const at = new Map();
  columns.forEach((column, i) => {
    const top = (height - (column.length * NODE_H + (column.length - 1) * GAP_Y)) / 2;
    column.forEach((node, j) => at.set(node, { x: PAD + i * (NODE_W + GAP_X), y: top + j * (NODE_H + GAP_Y) }));
  });
  const marker = `arrow-${graph.id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const edges = graph.edges.filter((e) => at.has(e.source) && at.has(e.target)).map((edge) => {
    const from = at.get(edge.source);
    const to = at.get(edge.target);
    const [x1, y1, x2, y2] = [from.x + NODE_W, from.y + NODE_H / 2, to.x, to.y + NODE_H / 2];
    const bend = Math.max(20, (x2 - x1) / 2);
    const untaken = graph.skipped.has(edge.source) || graph.skipped.has(edge.target);
    return svg("path", {
      class: `edge${edge.condition ? " conditional" : ""}${untaken ? " untaken" : ""}`,
      "data-edge": `${edge.source}->${edge.target}`,
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
      "marker-end": `url(#${marker})`,
    }, svg("title", {}, edge.condition ? `${edge.source} → ${edge.target} when ${edge.condition}` : `${edge.source} → ${edge.target}`));
  });
  const nodes = graph.nodes.map((node) => {
    const state = nodeState(graph, node, model, record);
    const { x, y } = at.get(node);
    const stepId = graph.steps.get(node);
    const role = node === graph.start ? "start" : graph.ends.includes(node) ? "end" : "";
    return svg("g", { class: `node state-${state}${role ? ` ${role}` : ""}`, "data-node": node, "data-state": state, transform: `translate(${x},${y})` },
      svg("title", {}, `${node}: ${state}${stepId ? ` (step ${stepId})` : ""}`),
      svg("rect", { width: NODE_W, height: NODE_H, rx: 7 }),
      svg("text", { x: 10, y: 18, class: "node-name" }, node.length > 20 ? `${node.slice(0, 19)}…` : node),
      svg("text", { x: 10, y: 35, class: "node-state" }, stepId ? `${state} · step ${stepId}` : state),
    );
  });
  const defs = svg("defs", {}, svg("marker", { id: marker, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" })));
  return svg("svg", { class: "graph-svg", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `graph ${graph.name}` }, defs, edges, nodes);
}

// Every graph of the execution into `where` (a section, hidden while there is none).
function drawGraphs(where, model, record) {
  const graphs = [...model.graphs.graphs.values()];
  where.hidden = !graphs.length;
  const states = ["pending", "running", "paused", "completed", "replayed", "failed", "skipped"];
  const legend = h("div", { class: "graph-legend muted" }, states.map((s) => h("span", { class: `key state-${s}` }, s)));
  where.querySelector(".graphs").replaceChildren(
    ...graphs.map((graph) => h("div", { class: "graph", "data-graph": graph.id }, h("div", { class: "muted" }, `Graph ${graph.name}, from step ${graph.id.split("@").pop()}`), drawGraph(graph, model, record))),
    graphs.length ? legend : null,
  );
}
