// The taskloom dashboard: a small app over the server's HTTP API, with no framework and no build step.
//
// The token the user types is kept in this tab's sessionStorage and sent as `Authorization: Bearer` on
// every call; it never goes into a URL, a cookie or localStorage. Pages are chosen by the URL's hash
// (#/executions, #/executions/ID, #/sessions, #/sessions/ID, #/schedules, #/queues, #/workers,
// #/secrets), which the browser never sends to the server. Text from the server is always set as text
// (textContent), never as HTML. graph.js draws graphs; related.js has messages, children, schedules, queues.
"use strict";

const TOKEN_KEY = "taskloom.token";
const PAGE_SIZE = 50;
const POLL_MS = 2000;
const STATUSES = ["queued", "running", "paused", "completed", "failed", "cancelled"];
const FINISHED = new Set(["completed", "failed", "cancelled"]);
const QUIET = new Set([...FINISHED, "paused"]); // nothing happens in these until someone acts
const MAX_TIMELINE_ROWS = 500;
const MAX_LOG_LINES = 1000;

// -- small helpers ------------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { hour12: false });
}

function ago(seconds) {
  if (seconds < 1) return "just now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function badge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status);
}

function progressBar(fraction, label) {
  const percent = Math.max(0, Math.min(100, fraction * 100));
  return h(
    "div",
    { class: "progress", role: "progressbar", "aria-valuenow": percent.toFixed(0), "aria-valuemin": 0, "aria-valuemax": 100 },
    h("div", { class: "progress-fill", style: { width: `${percent}%` } }),
    h("span", { class: "progress-label" }, label ?? `${percent.toFixed(0)}%`),
  );
}

function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

function showError(where, error) {
  where.replaceChildren(h("p", { class: "error", role: "alert" }, error.message || String(error)));
}

// -- the API ------------------------------------------------------------------------------------------
class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    logout("The token was refused: log in again.");
    throw new Unauthorized("the API token was refused");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && data.error) || `${method} ${path}: HTTP ${response.status}`);
  return data;
}

// Server-Sent Events over fetch (an EventSource cannot send the Authorization header). Calls
// onMessage({event, data, id}) for each message; reconnects after a dropped connection, waiting longer
// each time (capped), until `end` arrives or `signal` aborts. Two messages may share an id (a step's
// start and outcome stored as one row share its seq), so after a `step_started` a reconnect resumes just
// before its id, and the messages of that id already delivered (told apart by their event) are skipped.
async function follow(path, onMessage, signal) {
  let lastId = null;
  let seenAtLast = new Set();
  let latest = "";
  let wait = 250;
  while (!signal.aborted) {
    const separator = path.includes("?") ? "&" : "?";
    const after = latest === "step_started" ? lastId - 1 : lastId;
    const url = lastId === null ? path : `${path}${separator}after=${after}`;
    try {
      const response = await fetch(url, {
        headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
        cache: "no-store",
        signal,
      });
      if (response.status === 401) {
        logout("The token was refused: log in again.");
        return;
      }
      if (response.status >= 400 && response.status < 500) return; // no such execution or session: no retry
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let message = { event: "message", data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split(/\r\n|\n|\r/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            const id = message.id === null ? null : Number(message.id);
            const repeated = id !== null && lastId !== null && (id < lastId || (id === lastId && seenAtLast.has(message.event)));
            if (message.data.length && !repeated) {
              if (id !== null) {
                if (id !== lastId) seenAtLast = new Set();
                lastId = id;
                seenAtLast.add(message.event);
                latest = message.event;
              }
              const ended = message.event === "end";
              onMessage({ event: message.event, data: JSON.parse(message.data.join("\n")), id: message.id });
              if (ended) return;
            }
            message = { event: "message", data: [], id: null };
            wait = 250;
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") message.data.push(text);
            else if (field === "event") message.event = text;
            else if (field === "id") message.id = text;
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 5000);
  }
}

// -- login and pages ----------------------------------------------------------------------------------
const main = () => document.getElementById("main");
let cleanup = [];

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

function showLogin(message) {
  for (const stop of cleanup.splice(0)) stop();
  document.getElementById("nav").hidden = true;
  const form = document.getElementById("login-template").content.firstElementChild.cloneNode(true);
  main().replaceChildren(form);
  const error = form.querySelector("#login-error");
  error.textContent = message || "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = form.querySelector("#token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, value);
    const response = await fetch("/executions?limit=1", { headers: { Authorization: `Bearer ${value}` } });
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      error.textContent = "That token is not this server's.";
      return;
    }
    route();
  });
  form.querySelector("#token").focus();
}

function route() {
  for (const stop of cleanup.splice(0)) stop();
  if (!token()) {
    showLogin();
    return;
  }
  document.getElementById("nav").hidden = false;
  const hash = location.hash.replace(/^#/, "") || "/executions";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  const page = parts[0] || "executions";
  for (const link of document.querySelectorAll("#nav a[data-page]")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  const root = h("div", { class: "page", "data-page": page });
  main().replaceChildren(root);
  const pages = {
    executions: parts[1] ? executionPage : executionsPage,
    sessions: parts[1] ? sessionPage : sessionsPage,
    schedules: schedulesPage,
    queues: queuesPage,
    workers: workersPage,
    secrets: secretsPage,
  };
  const render = pages[page];
  if (!render) {
    root.append(h("p", { class: "error" }, `No page ${hash}.`));
    return;
  }
  const stops = render(root, parts[1], params);
  if (stops) cleanup.push(...[stops].flat());
}

// A repeated refresh that stops with the page; it skips a turn while the tab is hidden or a call runs.
function every(ms, refresh) {
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      await refresh();
    } finally {
      busy = false;
    }
  };
  tick();
  const timer = setInterval(tick, ms);
  return () => clearInterval(timer);
}

// -- executions ---------------------------------------------------------------------------------------
function executionsPage(root, _id, params) {
  const filters = { status: params.get("status") || "", workflow: params.get("workflow") || "", id: params.get("id") || "" };
  const cursors = [null]; // cursors[i] opens page i + 1
  let next = null;

  const status = h("select", { id: "filter-status", "aria-label": "status" }, h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  status.value = filters.status;
  const workflow = h("input", { id: "filter-workflow", placeholder: "workflow", list: "workflow-names", value: filters.workflow, "aria-label": "workflow" });
  const names = h("datalist", { id: "workflow-names" });
  const search = h("input", { id: "search-id", type: "search", placeholder: "execution id (or its start)", value: filters.id, "aria-label": "search by id" });
  const older = h("button", { type: "button", id: "older", disabled: true }, "Older →");
  const newer = h("button", { type: "button", id: "newer", disabled: true }, "← Newer");
  const pageLabel = h("span", { class: "muted", id: "page-number" });
  const body = h("tbody", { id: "executions" });
  const message = h("div");

  root.append(
    h("h1", {}, "Executions"),
    h("div", { class: "toolbar" }, status, workflow, names, search, h("span", { class: "spacer" }), newer, pageLabel, older),
    message,
    h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "workflow"), h("th", {}, "status"), h("th", {}, "created"), h("th", {}, "updated"))), body),
  );

  const load = async () => {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (filters.status) query.set("status", filters.status);
    if (filters.workflow) query.set("workflow", filters.workflow);
    if (filters.id) query.set("id_prefix", filters.id);
    const cursor = cursors[cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    try {
      const page = await api("GET", `/executions?${query}`);
      message.replaceChildren();
      next = page.next_cursor;
      body.replaceChildren(
        ...page.executions.map((e) =>
          h("tr", { "data-id": e.execution_id },
            h("td", {}, h("a", { href: `#/executions/${encodeURIComponent(e.execution_id)}` }, e.execution_id)),
            h("td", {}, e.workflow),
            h("td", {}, badge(e.status)),
            h("td", {}, when(e.created_at)),
            h("td", {}, when(e.updated_at)),
          ),
        ),
      );
      if (!page.executions.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No executions match.")));
      older.disabled = !next;
      newer.disabled = cursors.length < 2;
      pageLabel.textContent = `page ${cursors.length}`;
    } catch (error) {
      if (!(error instanceof Unauthorized)) showError(message, error);
    }
  };

  const refilter = () => {
    filters.status = status.value;
    filters.workflow = workflow.value.trim();
    filters.id = search.value.trim();
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/executions${query.toString() ? `?${query}` : ""}`);
    cursors.splice(1);
    load();
  };
  let typing = null;
  const debounced = () => {
    clearTimeout(typing);
    typing = setTimeout(refilter, 250);
  };
  status.addEventListener("change", refilter);
  workflow.addEventListener("input", debounced);
  search.addEventListener("input", debounced);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") refilter();
  });
  older.addEventListener("click", () => {
    if (next) cursors.push(next);
    load();
  });
  newer.addEventListener("click", () => {
    if (cursors.length > 1) cursors.pop();
    load();
  });

  api("GET", "/workers").then((list) => {
    const known = new Set(list.workers.flatMap((w) => w.workflows));
    names.replaceChildren(...[...known].sort().map((name) => h("option", { value: name })));
  }, () => {});
  return [every(POLL_MS, load), () => clearTimeout(typing)];
}

// The steps of an execution, folded from its events: what the timeline, progress and logs show.
class ExecutionModel {
  constructor() {
    this.steps = new Map();
    this.logs = [];
    this.runs = []; // when each run began: the start, and each resume
    this.first = null;
    this.last = null;
    this.lastSeq = 0;
    this.typesAtLastSeq = new Set(); // a step's start and outcome share a seq (one stored row): both count
    this.graphs = new GraphModel(); // graph.js
  }

  add(event) {
    if (event.seq < this.lastSeq || (event.seq === this.lastSeq && this.typesAtLastSeq.has(event.type))) return;
    if (event.seq !== this.lastSeq) this.typesAtLastSeq = new Set();
    this.lastSeq = event.seq;
    this.typesAtLastSeq.add(event.type);
    const at = Date.parse(event.timestamp);
    this.first = this.first === null ? at : Math.min(this.first, at);
    this.last = this.last === null ? at : Math.max(this.last, at);
    if (event.type === "execution_started" || event.type === "execution_resumed") this.runs.push(at);
    if (event.type.startsWith("graph_")) this.graphs.add(event);
    if (!event.step_id || !event.type.startsWith("step_")) return;
    let step = this.steps.get(event.step_id);
    if (!step) {
      step = { id: event.step_id, name: event.name, start: at, end: null, state: "running", retries: [], notes: [], progress: null, status: "" };
      this.steps.set(event.step_id, step);
    }
    const data = event.data || {};
    switch (event.type) {
      case "step_started":
        step.start = Math.min(step.start, at);
        if (event.name) step.name = event.name;
        if (data.child) step.child = data.child; // a child workflow (taskloom/children.py)
        break;
      case "step_completed":
        step.end = at;
        step.state = "completed";
        break;
      case "step_failed":
        step.end = at;
        step.state = "failed";
        step.error = event.value;
        break;
      case "step_retrying":
        step.retries.push({ at, attempt: data.attempt, error: data.error, delay: data.delay });
        break;
      case "step_fallback":
      case "step_rollback":
        step.notes.push(`${event.type.slice(5)}: ${data.error || ""}`);
        break;
      case "step_progress":
        if (typeof data.progress === "number") step.progress = data.progress;
        if (data.status) step.status = data.status;
        break;
      case "step_log":
        this.logs.push({ at, step: step.id, name: event.name, level: data.level || "info", message: data.message ?? "" });
        if (this.logs.length > MAX_LOG_LINES) this.logs.shift();
        break;
    }
  }

  // A step that had settled before a later run began was replayed by that run from the store, not run again.
  replayed(step) {
    return step.end !== null && this.runs.some((start) => start > step.end);
  }

  ordered() {
    return [...this.steps.values()].sort((a, b) => a.start - b.start || compareStepIds(a.id, b.id));
  }
}

function compareStepIds(a, b) {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? -1) !== (y[i] ?? -1)) return (x[i] ?? -1) - (y[i] ?? -1);
  }
  return 0;
}

function executionPage(root, executionId) {
  const aborter = new AbortController();
  const model = new ExecutionModel();
  let record = null;
  let streaming = false;
  let drawn = false;

  const header = h("div", { class: "execution-header" });
  const actions = h("div", { class: "actions" });
  const notice = h("div");
  const timeline = h("div", { class: "timeline", id: "timeline" });
  const running = h("div", { id: "running-steps" });
  const logs = h("div", { class: "logs", id: "logs" });
  const input = h("pre", { id: "input" });
  const output = h("pre", { id: "output" });
  const failure = h("div", { id: "failure" });
  const graphs = section("Graph", h("div", { class: "graphs", id: "graphs" }));
  graphs.hidden = true;
  const links = new ExecutionLinks(executionId);
  root.append(
    h("p", {}, h("a", { href: "#/executions" }, "← Executions")),
    header, actions, notice,
    graphs,
    section("Timeline", timeline),
    section("Progress", running),
    section("Logs", logs),
    h("div", { class: "columns" }, section("Input", input), section("Output", output)),
    links.children, links.messages,
    failure,
  );

  const draw = () => {
    if (drawn) return;
    drawn = true;
    requestAnimationFrame(() => {
      drawn = false;
      drawGraphs(graphs, model, record);
      drawTimeline(timeline, model, record);
      drawRunning(running, model);
      drawLogs(logs, model);
    });
  };

  const drawRecord = () => {
    header.replaceChildren(
      h("h1", {}, "Execution ", h("code", { id: "execution-id" }, record.execution_id)),
      h("dl", { class: "facts" },
        h("dt", {}, "status"), h("dd", { id: "execution-status" }, badge(record.status)),
        h("dt", {}, "workflow"), h("dd", {}, record.workflow),
        h("dt", {}, "code"), h("dd", {}, record.target || ""),
        h("dt", {}, "created"), h("dd", {}, when(record.created_at)),
        h("dt", {}, "updated"), h("dd", {}, when(record.updated_at)),
        ...(record.parent_id ? [h("dt", {}, "parent"), h("dd", {}, h("a", { id: "parent-link", href: `#/executions/${encodeURIComponent(record.parent_id)}` }, record.parent_id))] : []),
      ),
    );
    input.textContent = json(record.input);
    output.textContent = record.status === "completed" ? json(record.output) : record.status === "failed" ? "(failed: see the error)" : "(not finished)";
    drawActions();
  };

  const drawActions = () => {
    const parts = [];
    if (record.status === "paused") {
      const box = h("textarea", { id: "resume-input", rows: 3, spellcheck: "false", "aria-label": "resume input (JSON)" }, "null");
      const error = h("span", { class: "error", role: "alert" });
      const resume = h("button", { type: "button", id: "resume" }, "Resume");
      resume.addEventListener("click", async () => {
        let value;
        try {
          value = JSON.parse(box.value);
        } catch (problem) {
          error.textContent = `not JSON: ${problem.message}`;
          return;
        }
        resume.disabled = true;
        try {
          await api("POST", `/executions/${encodeURIComponent(executionId)}/resume`, { input: value });
          await refresh();
        } catch (problem) {
          error.textContent = problem.message;
          resume.disabled = false;
        }
      });
      parts.push(h("div", { class: "resume" }, h("label", { for: "resume-input" }, "Resume with input (JSON): what the pending pause() returns"), box, h("div", {}, resume, " ", error)));
    }
    if (!FINISHED.has(record.status)) {
      const error = h("span", { class: "error", role: "alert" });
      const cancel = h("button", { type: "button", id: "cancel", class: "danger" }, "Cancel execution");
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try {
          await api("POST", `/executions/${encodeURIComponent(executionId)}/cancel`);
          await refresh();
        } catch (problem) {
          error.textContent = problem.message;
          cancel.disabled = false;
        }
      });
      parts.push(h("div", {}, cancel, " ", error));
    }
    actions.replaceChildren(...parts);
  };

  const drawFailure = async () => {
    if (record.status !== "failed") {
      failure.replaceChildren();
      return;
    }
    try {
      const error = await api("GET", `/executions/${encodeURIComponent(executionId)}/error`);
      failure.replaceChildren(
        section("Error",
          h("p", { class: "error", id: "error-message" }, `${error.type}: ${error.message}`),
          error.causes.map((cause) => h("p", { class: "muted" }, `caused by ${cause.type}: ${cause.message}`)),
          tracebackView(error.traceback),
        ),
      );
    } catch (problem) {
      if (!(problem instanceof Unauthorized)) showError(failure, problem);
    }
  };

  // Follow the events while there may be more; the stream ends when the execution finishes or pauses.
  const stream = async () => {
    if (streaming) return;
    streaming = true;
    try {
      await follow(
        `/executions/${encodeURIComponent(executionId)}/stream?after=${model.lastSeq}`,
        (message) => {
          if (message.event === "end") return;
          model.add(message.data);
          draw();
        },
        aborter.signal,
      );
    } finally {
      streaming = false;
    }
    if (!aborter.signal.aborted) await refresh();
  };

  const refresh = async () => {
    try {
      const previous = record;
      record = await api("GET", `/executions/${encodeURIComponent(executionId)}`);
      notice.replaceChildren();
      const changed = !previous || previous.status !== record.status || previous.updated_at !== record.updated_at;
      if (!previous || previous.status !== record.status) {
        drawRecord();
        drawFailure();
      }
      draw();
      links.refresh(record, model);
      // Follow while it runs; and read what was written since the last look whenever the record moved,
      // even if it has finished meanwhile (a resume the worker finished before this look).
      if (!streaming && (changed || !QUIET.has(record.status))) stream();
    } catch (problem) {
      if (!(problem instanceof Unauthorized)) showError(notice, problem);
    }
  };

  // The stream carries the steps; this slower look notices what changes the record without an event
  // (a resume from elsewhere, queued -> running) and moves the timeline's "now" while steps run.
  return [every(POLL_MS, refresh), () => aborter.abort()];
}

function drawTimeline(where, model, record) {
  const steps = model.ordered();
  if (!steps.length) {
    where.replaceChildren(h("p", { class: "muted" }, "No steps yet."));
    return;
  }
  const live = record && !FINISHED.has(record.status) && record.status !== "paused";
  const start = model.first;
  const end = Math.max(model.last, live ? Date.now() : model.last, start + 1);
  const span = end - start;
  const x = (at) => `${(((at - start) / span) * 100).toFixed(3)}%`;
  const shown = steps.slice(0, MAX_TIMELINE_ROWS);
  const rows = shown.map((step) => {
    const stepEnd = step.end ?? (live ? end : model.last);
    const replayed = model.replayed(step);
    const waiting = record && record.status === "paused" ? "paused" : "interrupted";
    const state = step.end === null ? (live ? "running" : waiting) : step.state;
    const tags = [];
    if (replayed) tags.push(h("span", { class: "tag replayed", title: "settled before a later run began: that run took its result from the store" }, "↺ replayed"));
    if (step.retries.length) tags.push(h("span", { class: "tag retried", title: step.retries.map((r) => `attempt ${r.attempt}: ${r.error}`).join("\n") }, `${step.retries.length} ${step.retries.length === 1 ? "retry" : "retries"}`));
    if (state === "failed") tags.push(h("span", { class: "tag failed" }, "failed"));
    for (const note of step.notes) tags.push(h("span", { class: "tag note", title: note }, note.split(":")[0]));
    const depth = step.id.split(".").length - 1;
    const bar = h("div", {
      class: `bar state-${state}${replayed ? " replayed" : ""}`,
      style: { left: x(step.start), width: `max(3px, ${(((stepEnd - step.start) / span) * 100).toFixed(3)}%)` },
      title: `${step.name} (step ${step.id}): ${state}, ${duration(stepEnd - step.start)}`,
    });
    for (const retry of step.retries) bar.append(h("span", { class: "retry-mark", style: { left: `${(((retry.at - step.start) / Math.max(stepEnd - step.start, 1)) * 100).toFixed(2)}%` } }));
    if (step.progress !== null && step.end === null) bar.append(h("span", { class: "bar-progress", style: { width: `${Math.min(100, step.progress)}%` } }));
    return h("div", { class: "row", "data-step": step.id, "data-state": state, "data-replayed": replayed ? "true" : "false" },
      h("div", { class: "label", style: { paddingLeft: `${depth * 1.2}em` } }, h("span", { class: "step-id" }, step.id), " ", step.name || "", " ", tags),
      h("div", { class: "lane" }, bar),
      h("div", { class: "took muted" }, duration(stepEnd - step.start)),
    );
  });
  const marks = model.runs.slice(1).map((at) => h("div", { class: "run-mark", style: { left: x(at) }, title: "a run began here (resumed)" }));
  where.replaceChildren(
    h("div", { class: "axis muted" }, h("span", {}, new Date(start).toLocaleTimeString(undefined, { hour12: false })), h("span", {}, duration(span))),
    h("div", { class: "rows" }, h("div", { class: "marks" }, marks), rows),
    ...(steps.length > shown.length ? [h("p", { class: "muted" }, `${steps.length - shown.length} more steps not drawn.`)] : []),
  );
}

function drawRunning(where, model) {
  const active = model.ordered().filter((step) => step.end === null && (step.progress !== null || step.status));
  if (!active.length) {
    where.replaceChildren(h("p", { class: "muted" }, "No step reports progress right now."));
    return;
  }
  where.replaceChildren(
    ...active.map((step) =>
      h("div", { class: "step-progress", "data-step": step.id },
        h("div", {}, h("span", { class: "step-id" }, step.id), " ", step.name, " ", h("span", { class: "muted status-message" }, step.status)),
        progressBar((step.progress ?? 0) / 100),
      ),
    ),
  );
}

function drawLogs(where, model) {
  if (!model.logs.length) {
    where.replaceChildren(h("p", { class: "muted" }, "No log lines."));
    return;
  }
  const stick = where.scrollTop + where.clientHeight >= where.scrollHeight - 4;
  where.replaceChildren(
    ...model.logs.map((line) =>
      h("div", { class: `log level-${line.level}` },
        h("span", { class: "muted" }, new Date(line.at).toLocaleTimeString(undefined, { hour12: false })), " ",
        h("span", { class: "step-id" }, line.step), " ", h("span", { class: "level" }, line.level), " ", line.message),
    ),
  );
  if (stick) where.scrollTop = where.scrollHeight;
}

// A stored traceback with the frames of taskloom and Python folded away (one click shows them): the
// user's own frames are the ones to act on. A frame is "File "PATH", line N, in NAME" and its source lines.
const FRAME = /^ {2}File "([^"]+)", line \d+/;
function hiddenFrame(path) {
  if (path.startsWith("<")) return path.startsWith("<frozen");
  if (/\/lib\/python3\.\d+\//.test(path) || path.includes("/site-packages/")) return true;
  return path.includes("/taskloom/") && !path.includes("/tests/");
}

function userFrames(text) {
  const kept = [];
  let hidden = 0;
  let keeping = true;
  const flush = () => {
    if (hidden) kept.push(`  [${hidden} frame${hidden > 1 ? "s" : ""} of taskloom and Python hidden]`);
    hidden = 0;
  };
  for (const line of text.split("\n")) {
    const frame = FRAME.exec(line);
    if (frame) {
      keeping = !hiddenFrame(frame[1]);
      if (!keeping) {
        hidden += 1;
        continue;
      }
      flush();
    } else if (line.startsWith("    ") && !keeping) {
      continue;
    } else {
      keeping = true;
      flush();
    }
    kept.push(line);
  }
  flush();
  return kept.join("\n");
}

function tracebackView(text) {
  if (!text) return h("p", { class: "muted" }, "No traceback was stored.");
  const pre = h("pre", { class: "traceback", id: "traceback" }, userFrames(text));
  const toggle = h("button", { type: "button", class: "link" }, "show every frame");
  toggle.addEventListener("click", () => {
    const all = toggle.textContent === "show every frame";
    pre.textContent = all ? text : userFrames(text);
    toggle.textContent = all ? "show only your frames" : "show every frame";
  });
  return h("div", {}, h("div", { class: "muted" }, "Traceback ", toggle), pre);
}

// -- sessions and task instances ----------------------------------------------------------------------
function sessionsPage(root) {
  const body = h("tbody", { id: "sessions" });
  const message = h("div");
  const form = h("form", { class: "toolbar", id: "open-session" }, h("input", { id: "session-id", placeholder: "session id", "aria-label": "session id", required: true }), h("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/sessions/${encodeURIComponent(form.querySelector("input").value.trim())}`;
  });
  root.append(
    h("h1", {}, "Sessions"),
    h("p", { class: "muted" }, "Task instances run by workers for a Session (TASKLOOM_BACKEND=remote), newest sessions first."),
    form, message,
    h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "session"), h("th", {}, "name"), h("th", {}, "instances"), h("th", {}, "unfinished"), h("th", {}, "created"))), body),
  );
  return every(POLL_MS, async () => {
    try {
      const list = await api("GET", "/sessions");
      message.replaceChildren();
      body.replaceChildren(
        ...list.sessions.map((s) =>
          h("tr", { "data-id": s.session_id },
            h("td", {}, h("a", { href: `#/sessions/${encodeURIComponent(s.session_id)}` }, s.session_id)),
            h("td", {}, s.name), h("td", {}, String(s.instances)), h("td", {}, String(s.unfinished)), h("td", {}, when(s.created_at))),
        ),
      );
      if (!list.sessions.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No sessions yet.")));
    } catch (error) {
      if (!(error instanceof Unauthorized)) showError(message, error);
    }
  });
}

function sessionPage(root, sessionId) {
  const aborter = new AbortController();
  const instances = new Map();
  const list = h("div", { id: "instances" });
  const state = h("p", { class: "muted", id: "session-state" }, "Following the session's updates…");
  root.append(h("p", {}, h("a", { href: "#/sessions" }, "← Sessions")), h("h1", {}, "Session ", h("code", {}, sessionId)), state, list);

  const instance = (id) => {
    let item = instances.get(id);
    if (!item) {
      item = { id, task: "", status: "queued", progress: 0, message: "", logs: [], result: undefined, error: null, node: null };
      instances.set(id, item);
      api("GET", `/instances/${encodeURIComponent(id)}`).then((record) => {
        item.task = record.task;
        if (item.status === "queued" || FINISHED.has(record.status)) item.status = record.status;
        item.result = record.result;
        item.error = record.error;
        drawItem(item);
      }, () => {});
    }
    return item;
  };

  const drawItem = (item) => {
    const stop = h("button", { type: "button", class: "danger stop", "data-instance": item.id }, "Stop");
    stop.addEventListener("click", async () => {
      stop.disabled = true;
      try {
        await api("POST", `/instances/${encodeURIComponent(item.id)}/stop`);
        stop.textContent = "Stop requested";
      } catch (problem) {
        stop.textContent = problem.message;
      }
    });
    const node = h("div", { class: "card instance", "data-instance": item.id, "data-status": item.status },
      h("div", { class: "instance-head" }, h("code", {}, item.id), " ", item.task, " ", badge(item.status), h("span", { class: "spacer" }), FINISHED.has(item.status) ? null : stop),
      progressBar(item.progress / 100),
      h("div", { class: "status-message" }, item.message),
      item.error ? h("p", { class: "error" }, `${item.error.type}: ${item.error.message}`) : null,
      item.status === "completed" && item.result !== undefined ? h("pre", {}, json(item.result)) : null,
      item.logs.length ? h("div", { class: "logs small" }, item.logs.map((line) => h("div", { class: `log level-${line.level}` }, h("span", { class: "level" }, line.level), " ", line.message))) : null,
    );
    if (item.node) item.node.replaceWith(node);
    else list.append(node);
    item.node = node;
  };

  follow(
    `/sessions/${encodeURIComponent(sessionId)}/updates`,
    (message) => {
      if (message.event === "end") {
        state.textContent = "Every instance of this session has finished.";
        return;
      }
      const touched = new Set();
      for (const update of message.data) {
        const item = instance(update.instance_id);
        const data = update.data || {};
        if (update.kind === "running") item.status = "running";
        else if (update.kind === "progress") {
          item.progress = data.progress ?? item.progress;
          if (data.status) item.message = data.status;
        } else if (update.kind === "status") item.message = data.status ?? "";
        else if (update.kind === "log") {
          item.logs.push({ level: data.level || "info", message: data.message ?? "" });
          if (item.logs.length > 50) item.logs.shift();
        } else if (FINISHED.has(update.kind)) {
          item.status = update.kind;
          if (update.kind === "completed") item.progress = 100;
          if (data.result !== undefined) item.result = data.result;
          if (data.error) item.error = data.error;
        }
        touched.add(item);
      }
      for (const item of touched) drawItem(item);
    },
    aborter.signal,
  );
  return () => aborter.abort();
}

// -- workers ------------------------------------------------------------------------------------------
function workersPage(root) {
  const body = h("tbody", { id: "workers" });
  const message = h("div");
  const note = h("p", { class: "muted" });
  root.append(
    h("h1", {}, "Workers"), note, message,
    h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "worker"), h("th", {}, "last seen"), h("th", {}, "workflows"), h("th", {}, "tasks"), h("th", {}, "holds"))), body),
  );
  return every(POLL_MS, async () => {
    try {
      const list = await api("GET", "/workers");
      message.replaceChildren();
      note.textContent = `Alive: seen within the last ${list.seen_within_seconds} s. A worker that stops removes itself; one that dies drops out then.`;
      body.replaceChildren(
        ...list.workers.map((w) =>
          h("tr", { "data-id": w.worker_id },
            h("td", {}, h("code", {}, w.worker_id)),
            h("td", { title: when(w.last_seen) }, ago(w.seconds_since_seen)),
            h("td", {}, w.workflows.join(", ")),
            h("td", {}, w.tasks.join(", ")),
            h("td", {}, w.holds.length ? w.holds.flatMap((id, i) => [i ? ", " : "", h("a", { href: `#/executions/${encodeURIComponent(id)}` }, id)]) : h("span", { class: "muted" }, "nothing")),
          ),
        ),
      );
      if (!list.workers.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No live worker. Start one: taskloom worker MODULE")));
    } catch (error) {
      if (!(error instanceof Unauthorized)) showError(message, error);
    }
  });
}

// -- secrets ------------------------------------------------------------------------------------------
function secretsPage(root) {
  const list = h("ul", { id: "secrets", class: "names" });
  const message = h("p", { class: "error", role: "alert" });
  const name = h("input", { id: "secret-name", placeholder: "name", required: true, "aria-label": "secret name" });
  const value = h("input", { id: "secret-value", type: "password", placeholder: "value", required: true, autocomplete: "off", "aria-label": "secret value" });
  const form = h("form", { class: "toolbar", id: "set-secret" }, name, value, h("button", { type: "submit" }, "Set"));
  root.append(h("h1", {}, "Secrets"), h("p", { class: "muted" }, "Names only: a value goes in encrypted and never comes back."), form, message, list);

  const load = async () => {
    try {
      const names = (await api("GET", "/secrets")).names;
      list.replaceChildren(
        ...names.map((secret) => {
          const remove = h("button", { type: "button", class: "danger small", "data-name": secret }, "Remove");
          remove.addEventListener("click", async () => {
            try {
              await api("DELETE", `/secrets/${encodeURIComponent(secret)}`);
              await load();
            } catch (error) {
              message.textContent = error.message;
            }
          });
          return h("li", { "data-name": secret }, h("code", {}, secret), " ", remove);
        }),
      );
      if (!names.length) list.append(h("li", { class: "muted" }, "No secrets."));
    } catch (error) {
      if (!(error instanceof Unauthorized)) message.textContent = error.message;
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PUT", `/secrets/${encodeURIComponent(name.value.trim())}`, { value: value.value });
      message.textContent = "";
      name.value = "";
      value.value = "";
      await load();
    } catch (error) {
      message.textContent = error.message;
    }
  });
  load();
}

// -- start --------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => {
    logout("Logged out.");
    history.replaceState(null, "", "#/executions");
  });
  window.addEventListener("hashchange", route);
  route();
});
