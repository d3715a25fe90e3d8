// Models: managed models live over /ws/models/ (state, memory, requests, each node's budget; load and unload for
// staff), then every model and backend with up/down, latency and slots, refreshed from the dashboard's status endpoint;
// energy and prompt caches per model from /api/usage.
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

  // --- Energy: tokens per joule per model over the last hour and day, beside its nodes' power modes ---
  const HOUR_MS = 3600 * 1000;
  const energyBody = document.querySelector("#energy-table tbody");
  const energyUpdated = document.getElementById("energy-updated");
  const powerModes = new Map(); // node -> its power mode now
  let usageBuckets = null; // /api/usage by model and hour, last 24 hours

  /** Joules and tokens per joule over several buckets: each bucket's tokens are its rate times its joules. */
  function combine(buckets) {
    let joules = 0;
    let tokens = 0;
    for (const bucket of buckets) {
      if (bucket.energy_j === null) continue;
      joules += bucket.energy_j;
      tokens += bucket.tokens_per_joule * bucket.energy_j;
    }
    return joules > 0 ? { joules, perJoule: tokens / joules } : null;
  }

  const joulesText = (joules) => (joules >= 10000 ? `${number(joules / 1000, 1)} kJ` : `${number(joules, 1)} J`);

  function showEnergy() {
    if (!usageBuckets) return;
    const nodesOf = new Map(); // model -> nodes whose supervisor runs it
    for (const model of managed.values()) {
      if (!nodesOf.has(model.id)) nodesOf.set(model.id, new Set());
      nodesOf.get(model.id).add(model.node);
    }
    const recent = Date.now() - 2 * HOUR_MS; // an hour bucket that ends within the last hour overlaps it
    const ids = new Set([...nodesOf.keys(), ...usageBuckets.filter((b) => b.energy_j !== null).map((b) => b.model)]);
    const rows = [...ids].sort().map((id) => {
      const buckets = usageBuckets.filter((b) => b.model === id);
      const day = combine(buckets);
      const hour = combine(buckets.filter((b) => Date.parse(b.bucket) > recent));
      const nodes = [...(nodesOf.get(id) || [])].sort().map((node) => `${node} · ${powerModes.get(node) || "power mode unknown"}`);
      return el("tr", { "data-model": id },
        el("td", {}, id),
        el("td", { class: "num" }, hour ? number(hour.perJoule, 2) : "–"),
        el("td", { class: "num" }, day ? number(day.perJoule, 2) : "–"),
        el("td", { class: "num" }, day ? joulesText(day.joules) : "–"),
        el("td", {}, nodes.length ? nodes.join(", ") : "not managed: not measured"));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No managed model, and no request measured in the last day.")));
    energyBody.replaceChildren(...rows);
  }

  // --- Prompt caches: hit rate and prefill saved per model over the last day, beside its caches saved on disk ---
  const cachesBody = document.querySelector("#caches-table tbody");
  const MIB = 1024 * 1024;

  /** Prompt-cache figures over several buckets; the prefill saved adds up the hours that could price it. */
  function cacheTotals(buckets) {
    const total = { restored: 0, live: 0, none: 0, cached: 0, savedMs: null };
    for (const { prompt_cache: cache } of buckets) {
      total.restored += cache.restored;
      total.live += cache.live;
      total.none += cache.none;
      total.cached += cache.cached_tokens;
      if (cache.saved_ms !== null) total.savedMs = (total.savedMs || 0) + cache.saved_ms;
    }
    const known = total.restored + total.live + total.none;
    total.hitRate = known ? (total.restored + total.live) / known : null;
    return total;
  }

  const msText = (ms) => (ms >= 10000 ? `${number(ms / 1000, 1)} s` : `${number(ms)} ms`);

  function showCaches() {
    if (!usageBuckets) return;
    const onDisk = new Map(); // model -> its saved caches over its nodes
    for (const model of managed.values()) {
      const disk = onDisk.get(model.id) || { count: 0, bytes: 0 };
      disk.count += model.saved_caches || 0;
      disk.bytes += model.saved_cache_bytes || 0;
      onDisk.set(model.id, disk);
    }
    const said = usageBuckets.filter((b) => b.prompt_cache.restored + b.prompt_cache.live + b.prompt_cache.none > 0);
    const ids = new Set([...onDisk.keys(), ...said.map((b) => b.model)]);
    const rows = [...ids].sort().map((id) => {
      const total = cacheTotals(said.filter((b) => b.model === id));
      const disk = onDisk.get(id);
      return el("tr", { "data-model": id },
        el("td", {}, id),
        el("td", { class: "num" }, total.hitRate === null ? "–" : `${number(total.hitRate * 100, 1)} %`),
        el("td", { class: "num" }, `${total.restored} · ${total.live} · ${total.none}`),
        el("td", { class: "num" }, number(total.cached)),
        el("td", { class: "num" }, total.savedMs === null ? "–" : msText(total.savedMs)),
        el("td", { class: "num" }, disk ? `${disk.count} · ${number(disk.bytes / MIB, 1)} MiB` : "–"));
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No managed model, and no request that said where its prompt came from in the last day.")));
    cachesBody.replaceChildren(...rows);
  }

  async function refreshEnergy() {
    const since = new Date(Date.now() - 24 * HOUR_MS).toISOString();
    try {
      const data = await Dash.getJSON(`${script.dataset.usageUrl}?group=hour&by=model&since=${encodeURIComponent(since)}`);
      usageBuckets = data.data;
      energyUpdated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      energyUpdated.textContent = `usage unavailable: ${error.message}`;
      return;
    }
    showEnergy();
    showCaches();
  }
  refreshEnergy();
  setInterval(refreshEnergy, 60000);
  Dash.onNodes((nodes) => {
    powerModes.clear();
    for (const node of nodes) powerModes.set(node.name, node.power_mode);
    showEnergy();
  });

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
      showEnergy();
      showCaches();
    },
  });
})();
