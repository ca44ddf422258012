// What an execution is linked to (its messages, its child workflows), and the schedules and queues pages.
//
// Loaded after app.js, whose helpers (h, api, section, badge, when, every, json) it uses. The execution
// page calls ExecutionLinks.refresh with each look at the record; it reads the API only when something
// may have changed: messages while the execution is unfinished (and once after), children once the
// timeline shows a child step, and again while any child is unfinished.
"use strict";

// The messages and children sections of one execution's page.
class ExecutionLinks {
  constructor(executionId) {
    this.id = executionId;
    this.path = `/executions/${encodeURIComponent(executionId)}`;
    this.childList = h("ul", { id: "children", class: "names" });
    this.children = section("Children", this.childList);
    this.children.hidden = true;
    this.messageRows = h("tbody", { id: "messages" });
    this.form = this.sendForm();
    this.messages = section("Messages",
      h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "seq"), h("th", {}, "topic"), h("th", {}, "value"), h("th", {}, "sent"), h("th", {}, "received"))), this.messageRows),
      this.form,
    );
    this.messages.hidden = true;
    this.busy = false;
    this.settled = false; // messages read once the execution had finished: nothing more can arrive
    this.childrenSeen = ""; // the child ids last read, and whether all had finished
  }

  async refresh(record, model) {
    if (this.busy) return;
    this.busy = true;
    try {
      await Promise.all([this.loadMessages(record), this.loadChildren(model)]);
    } catch (problem) {
      if (!(problem instanceof Unauthorized)) showError(this.childList, problem);
    } finally {
      this.busy = false;
    }
  }

  async loadMessages(record) {
    const finished = FINISHED.has(record.status);
    this.form.hidden = finished;
    if (this.settled) return;
    const list = (await api("GET", `${this.path}/messages`)).messages;
    this.settled = finished;
    this.messages.hidden = finished && !list.length;
    this.messageRows.replaceChildren(
      ...list.map((m) =>
        h("tr", { "data-seq": m.seq, "data-topic": m.topic, "data-received": m.received_step ? "true" : "false" },
          h("td", {}, String(m.seq)),
          h("td", {}, h("code", {}, m.topic), m.topic.startsWith("taskloom.") ? h("span", { class: "tag", title: "sent by taskloom itself (a child waking its parent)" }, "internal") : null),
          h("td", {}, h("code", {}, JSON.stringify(m.value))),
          h("td", {}, when(m.sent_at)),
          h("td", { class: "received" }, m.received_step ? `by step ${m.received_step}, ${when(m.received_at)}` : h("span", { class: "muted" }, "pending")),
        ),
      ),
    );
    if (!list.length) this.messageRows.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No messages.")));
  }

  sendForm() {
    const topic = h("input", { id: "message-topic", placeholder: "topic", required: true, "aria-label": "message topic" });
    const value = h("input", { id: "message-value", value: "null", spellcheck: "false", "aria-label": "message value (JSON)" });
    const error = h("span", { class: "error", role: "alert", id: "message-error" });
    const form = h("form", { class: "toolbar send-message", id: "send-message" }, "Send ", topic, value, h("button", { type: "submit" }, "Send message"), error);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let parsed;
      try {
        parsed = JSON.parse(value.value);
      } catch (problem) {
        error.textContent = `not JSON: ${problem.message}`;
        return;
      }
      try {
        await api("POST", `${this.path}/messages`, { topic: topic.value.trim(), value: parsed });
        error.textContent = "";
        this.settled = false;
        await this.loadMessages({ status: "running" });
      } catch (problem) {
        error.textContent = problem.message;
      }
    });
    return form;
  }

  async loadChildren(model) {
    const ids = model.ordered().filter((step) => step.child).map((step) => step.child);
    if (!ids.length || this.childrenSeen === `${ids.join(" ")} finished`) return;
    const list = (await api("GET", `${this.path}/children`)).children;
    const done = list.length === ids.length && list.every((child) => FINISHED.has(child.status));
    this.childrenSeen = `${ids.join(" ")}${done ? " finished" : ""}`;
    this.children.hidden = false;
    this.childList.replaceChildren(
      ...list.map((child) =>
        h("li", { "data-id": child.execution_id },
          h("a", { href: `#/executions/${encodeURIComponent(child.execution_id)}` }, child.execution_id), " ", child.workflow, " ", badge(child.status)),
      ),
    );
    if (!list.length) this.childList.append(h("li", { class: "muted" }, "Starting…"));
  }
}

// -- schedules ----------------------------------------------------------------------------------------
function schedulesPage(root) {
  const body = h("tbody", { id: "schedules" });
  const message = h("div");
  root.append(
    h("h1", {}, "Schedules"),
    h("p", { class: "muted" }, "Declared in code (@workflow(schedule=...), wf.schedule(...)) and stored by the workers that import it. Times in each schedule's time zone. A paused schedule starts nothing; resumed, it skips the ticks it missed."),
    message,
    h("table", { class: "list" }, h("thead", {}, h("tr", {}, ["name", "workflow", "cron", "time zone", "next tick", "last tick", "state", ""].map((title) => h("th", {}, title)))), body),
  );
  const load = async () => {
    try {
      const list = (await api("GET", "/schedules")).schedules;
      message.replaceChildren();
      body.replaceChildren(...list.map((schedule) => scheduleRow(schedule, load, message)));
      if (!list.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No schedules. Declare one: @workflow(schedule=\"*/5 * * * *\")")));
    } catch (error) {
      if (!(error instanceof Unauthorized)) showError(message, error);
    }
  };
  return every(POLL_MS, load);
}

function scheduleRow(schedule, reload, message) {
  const action = schedule.paused ? "resume" : "pause";
  const button = h("button", { type: "button", class: `small${schedule.paused ? "" : " danger"}`, "data-action": action }, schedule.paused ? "Resume" : "Pause");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", `/schedules/${encodeURIComponent(schedule.name)}/${action}`);
      await reload();
    } catch (problem) {
      if (!(problem instanceof Unauthorized)) showError(message, problem);
      button.disabled = false;
    }
  });
  // as the schedule's own zone has it (the API gives its offset): "2027-01-01 03:00:00 +00:00"
  const time = (iso) => (iso ? h("span", { title: iso }, `${iso.slice(0, 10)} ${iso.slice(11, 19)} ${iso.slice(-6)}`) : h("span", { class: "muted" }, "none"));
  return h("tr", { "data-name": schedule.name, "data-paused": schedule.paused ? "true" : "false" },
    h("td", {}, schedule.name),
    h("td", {}, h("a", { href: `#/executions?workflow=${encodeURIComponent(schedule.workflow)}` }, schedule.workflow)),
    h("td", {}, h("code", {}, schedule.cron)),
    h("td", {}, schedule.timezone),
    h("td", { class: "next-tick" }, time(schedule.next_tick)),
    h("td", {}, time(schedule.last_tick)),
    h("td", { class: "state" }, schedule.paused ? badge("paused") : h("span", { class: "badge status-running" }, "active")),
    h("td", {}, button),
  );
}

// -- queues -------------------------------------------------------------------------------------------
function queuesPage(root) {
  const body = h("tbody", { id: "queues" });
  const message = h("div");
  const limit = (value) => (value === null || value === undefined ? h("span", { class: "muted" }, "none") : String(value));
  root.append(
    h("h1", {}, "Queues"),
    h("p", { class: "muted" }, "Declared in code (Queue(name, concurrency=..., worker_concurrency=..., rate_limit=...)); the limits hold across every worker. Depth: executions waiting for a worker that serves the queue."),
    message,
    h("table", { class: "list" }, h("thead", {}, h("tr", {}, ["queue", "concurrency", "per worker", "rate limit", "depth (queued)", "running"].map((title) => h("th", {}, title)))), body),
  );
  return every(POLL_MS, async () => {
    try {
      const list = (await api("GET", "/queues")).queues;
      message.replaceChildren();
      body.replaceChildren(
        ...list.map((queue) =>
          h("tr", { "data-name": queue.name },
            h("td", {}, queue.name),
            h("td", { class: "concurrency" }, limit(queue.concurrency)),
            h("td", { class: "worker-concurrency" }, limit(queue.worker_concurrency)),
            h("td", { class: "rate-limit" }, queue.rate_limit ? `${queue.rate_limit.count} per ${queue.rate_limit.seconds} s` : limit(null)),
            h("td", { class: "queued" }, String(queue.queued)),
            h("td", { class: "running" }, String(queue.running)),
          ),
        ),
      );
      if (!list.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No queues yet.")));
    } catch (error) {
      if (!(error instanceof Unauthorized)) showError(message, error);
    }
  });
}
