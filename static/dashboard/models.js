// Models: every model and backend with up/down, latency and slots, refreshed from the dashboard's status endpoint.
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
})();
