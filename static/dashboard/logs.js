// Request log: history from /api/logs with filters, and a live tail of new rows over /ws/logs/. All values as text.
"use strict";

(() => {
  const { el, number } = Dash;
  const api = document.getElementById("logs-script").dataset.apiUrl;
  const form = document.getElementById("filters");
  const body = document.querySelector("#logs-table tbody");
  const message = document.getElementById("logs-message");
  const older = document.getElementById("older");
  const MAX_ROWS = 1000;
  let next = null;
  let filters = {};

  function row(entry, fresh) {
    const model = entry.model_used || entry.model_requested || "";
    const tokens = entry.prompt_tokens === null && entry.completion_tokens === null ? "–" : `${number(entry.prompt_tokens)} / ${number(entry.completion_tokens)}`;
    const kind = entry.error_code ? `${entry.error_type} (${entry.error_code})` : entry.error_type;
    const error = [kind, entry.error_message].filter(Boolean).join(": ");
    // A request's energy is its node's sampler's own fact, joined when rows are read: the live line has none, the history does.
    const energy = entry.energy_mj === null || entry.energy_mj === undefined ? "–" : number(entry.energy_mj / 1000, 2);
    const net = entry.energy_net_mj === null || entry.energy_net_mj === undefined ? "" : `net ${number(entry.energy_net_mj / 1000, 2)} J above idle`;
    const classes = [entry.status >= 400 ? "error" : "", fresh ? "fresh" : ""].filter(Boolean).join(" ");
    return el("tr", { class: classes || undefined, "data-request-id": String(entry.request_id) },
      el("td", { title: entry.request_id || "" }, Dash.time(entry.created)),
      el("td", {}, entry.client_gone ? `${entry.status} (client gone)` : String(entry.status)),
      el("td", { class: "mono" }, `${entry.method || ""} ${entry.endpoint || ""}`.trim()),
      el("td", {}, model),
      el("td", {}, entry.key_name || ""),
      // A request that waited for its model to load says how long (cold start).
      el("td", { class: "num" }, entry.cold_start_ms ? `${number(entry.latency_ms, 0)} (cold ${number(entry.cold_start_ms, 0)})` : number(entry.latency_ms, 0)),
      el("td", { class: "num" }, tokens),
      el("td", { class: "num" }, number(entry.tokens_per_second, 1)),
      el("td", { class: "num", title: net || undefined }, energy),
      el("td", { title: entry.user_agent || "" }, entry.client_ip || ""),
      el("td", {}, error),
    );
  }

  function readFilters() {
    const data = new FormData(form);
    const result = {};
    for (const name of ["model", "key", "status", "endpoint"]) {
      const value = String(data.get(name) || "").trim();
      if (value) result[name] = value;
    }
    for (const name of ["since", "until"]) {
      const value = String(data.get(name) || "");
      // datetime-local is the browser's local time; the API wants an unambiguous instant.
      if (value) result[name] = new Date(value).toISOString();
    }
    return result;
  }

  function matches(entry) {
    if (!form.live.checked || filters.until) return false;
    if (filters.since && Date.parse(entry.created) < Date.parse(filters.since)) return false;
    if (filters.model && entry.model_used !== filters.model && entry.model_requested !== filters.model) return false;
    if (filters.endpoint && entry.endpoint !== filters.endpoint) return false;
    if (filters.key && String(entry.api_key_id) !== filters.key && !(entry.key_name || "").includes(filters.key)) return false;
    if (filters.status) {
      const wanted = filters.status.toLowerCase();
      const status = String(entry.status);
      if (/^[1-5]xx$/.test(wanted) ? status[0] !== wanted[0] : status !== wanted) return false;
    }
    return true;
  }

  async function load(url, append) {
    let data;
    try {
      data = await Dash.getJSON(url);
    } catch (error) {
      message.textContent = `History unavailable: ${error.message}`;
      return;
    }
    const rows = data.results.map((entry) => row(entry, false));
    if (append) body.append(...rows);
    else body.replaceChildren(...rows);
    next = data.next;
    older.hidden = !next;
    message.textContent = body.children.length ? "" : "No request matches these filters.";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters = readFilters();
    load(`${api}?${new URLSearchParams({ ...filters, limit: "100" })}`, false);
  });
  older.addEventListener("click", () => {
    // `next` comes from the API as an absolute URL; only its path and query are used, on this origin.
    if (next) {
      const url = new URL(next, location.href);
      load(url.pathname + url.search, true);
    }
  });

  Dash.socket("/ws/logs/", {
    statusNode: document.getElementById("live-status"),
    onMessage: (data) => {
      if (data.type !== "entry" || !matches(data.entry)) return;
      if (body.querySelector(`tr[data-request-id="${CSS.escape(String(data.entry.request_id))}"]`)) return;
      body.prepend(row(data.entry, true));
      while (body.children.length > MAX_ROWS) body.lastElementChild.remove();
      message.textContent = "";
    },
  });
  load(`${api}?limit=100`, false);
})();
