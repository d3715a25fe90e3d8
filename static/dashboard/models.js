// Models: managed models live over /ws/models/ (state, memory, requests, each node's budget; load and unload for
// staff), then every model and backend with up/down, latency and slots, refreshed from the dashboard's status endpoint.
"use strict";

(() => {
  const { el, number } = Dash;
  const script = document.getElementById("models-script");
  const body = document.querySelector("#models-table tbody");
  const updated = document.getElementById("models-updated");

  function backendRow(model, backend, first) {
    let state = "off";
    let label = "disabled";
    if (!model.enabled) label = "model disabled";
    else if (backend && backend.enabled) {
      state = backend.up ? "up" : "down";
      label = backend.up ? "up" : "down";
    }
    return el("tr", { "data-model": model.model_id },
      el("td", {}, first ? model.model_id : ""),
      el("td", {}, first ? model.kind : ""),
      el("td", { class: "mono" }, backend ? backend.url : "no backend"),
      el("td", {}, el("span", { class: `status ${state}` }, label)),
      el("td", { class: "num" }, backend && backend.latency_ms !== null && backend.latency_ms !== undefined ? `${number(backend.latency_ms, 1)} ms` : "–"),
      el("td", { class: "num" }, number(backend ? backend.slots_busy : null)),
      el("td", { class: "num" }, number(backend ? backend.slots_idle : null)),
      el("td", { class: "num" }, number(backend ? backend.in_flight : null)),
      el("td", { class: "hide-narrow muted" }, backend && backend.error ? backend.error : ""),
    );
  }

  async function refresh() {
    try {
      const data = await Dash.getJSON(script.dataset.statusUrl);
      const rows = [];
      for (const model of data.models) {
        if (!model.backends.length) rows.push(backendRow(model, null, true));
        model.backends.forEach((backend, i) => rows.push(backendRow(model, backend, i === 0)));
      }
      if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No model registered yet (Django admin → Models).")));
      body.replaceChildren(...rows);
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      updated.textContent = `update failed: ${error.message}`;
    }
  }
  refresh();
  setInterval(refresh, 10000);

  // --- Managed models ---
  const { bytes, time } = Dash;
  const managed = new Map(); // backend id -> state
  const budgets = new Map(); // node -> budget
  let staff = false;
  const managedBody = document.querySelector("#managed-table tbody");
  const budgetsBox = document.getElementById("budgets");
  const note = document.getElementById("managed-note");
  const apiBase = script.dataset.runningUrl.replace(/running$/, "");
  const STATE_CLASS = { ready: "up", failed: "down", stopped: "off", starting: "busy", stopping: "busy" };
  const csrfToken = () => (document.cookie.match(/(?:^|; )csrftoken=([^;]*)/) || [])[1] || "";

  async function operate(model, operation, button) {
    button.disabled = true;
    try {
      const url = `${apiBase}${encodeURIComponent(model.id)}/${operation}?node=${encodeURIComponent(model.node)}&wait=false`;
      const response = await fetch(url, { method: "POST", credentials: "same-origin", headers: { Accept: "application/json", "X-CSRFToken": csrfToken() } });
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch { body = null; }
        note.textContent = `${model.id}: ${body && body.error ? body.error.message : response.status}`;
      }
    } catch (error) {
      note.textContent = `${model.id}: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  function memoryText(memory) {
    if (!memory) return "–";
    if (memory.measured_bytes) return `${bytes(memory.measured_bytes)} measured`;
    if (memory.estimated_bytes) return `${bytes(memory.estimated_bytes)} estimated`;
    return "–";
  }

  function managedRow(model) {
    const cells = [
      el("td", {}, model.id),
      el("td", {}, model.node),
      el("td", {}, el("span", { class: `status ${STATE_CLASS[model.state] || "off"}` }, model.state)),
      el("td", { class: "hide-narrow" }, time(model.since)),
      el("td", { class: "num" }, memoryText(model.memory)),
      el("td", { class: "num" }, number(model.in_flight)),
      el("td", { class: "num" }, number(model.waiting)),
      el("td", { class: "hide-narrow" }, time(model.last_used)),
      el("td", { class: "hide-narrow" }, model.pinned ? "pinned" : time(model.unload_at)),
    ];
    if (staff) {
      const load = el("button", { type: "button", "data-action": "load" }, "Load");
      const unload = el("button", { type: "button", class: "danger", "data-action": "unload" }, "Unload");
      load.addEventListener("click", () => operate(model, "load", load));
      unload.addEventListener("click", () => operate(model, "unload", unload));
      cells.push(el("td", { class: "actions" }, load, " ", unload));
    }
    cells.push(el("td", { class: "hide-narrow muted" }, model.last_error || ""));
    return el("tr", { "data-backend": String(model.backend), "data-state": model.state }, ...cells);
  }

  function showManaged() {
    const rows = [...managed.values()].sort((a, b) => a.id.localeCompare(b.id) || a.node.localeCompare(b.node)).map(managedRow);
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "11", class: "muted" }, "No managed model: `manage.py addmodel <id> --gguf <file>` registers one.")));
    managedBody.replaceChildren(...rows);
    const cards = [];
    for (const [node, budget] of [...budgets.entries()].sort()) {
      const meter = el("meter", { min: "0", max: String(budget.total_bytes || 0), value: String(budget.used_bytes || 0), high: String((budget.total_bytes || 0) * 0.9) });
      cards.push(el("div", { class: "card budget", "data-node": node },
        el("div", { class: "label" }, `${node} memory budget`),
        el("div", { class: "value" }, `${bytes(budget.used_bytes)} of ${bytes(budget.total_bytes)}`),
        meter,
        el("div", { class: "sub" }, budget.source || "")));
    }
    budgetsBox.replaceChildren(...cards);
  }

  Dash.socket("/ws/models/", {
    statusNode: document.getElementById("managed-live"),
    onMessage(message) {
      if (message.type === "snapshot") {
        staff = Boolean(message.staff);
        managed.clear();
        budgets.clear();
        for (const model of message.data) managed.set(model.backend, model);
        for (const node of message.nodes) budgets.set(node.node, node.budget);
      } else if (message.type === "state") {
        managed.set(message.model.backend, { ...(managed.get(message.model.backend) || {}), ...message.model });
        if (message.budget && message.budget.node) budgets.set(message.budget.node, message.budget);
      } else {
        return;
      }
      showManaged();
    },
  });
})();
