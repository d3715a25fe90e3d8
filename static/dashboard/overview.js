// Overview: metric cards per node pushed over /ws/metrics/, a live chart of the newest samples, a history chart.
"use strict";

(() => {
  const { el, number, bytes } = Dash;
  const nodesBox = document.getElementById("nodes");
  const empty = document.getElementById("nodes-empty");
  const nodes = new Map(); // name -> {section, cards: Map(key -> value node)}
  const LIVE_POINTS = 150;
  const live = { node: null, times: [], cpu: [], gpu: [], chart: null };

  const percent = (v) => (v === null || v === undefined ? "–" : `${number(v, 1)} %`);

  // Each card: label, how to show the value from a sample's summary, and an optional sub-line.
  const CARDS = [
    ["cpu", "CPU", (s) => percent(s.cpu_percent), (s) => `load ${number(s.load_1, 2)}`],
    ["ram", "RAM", (s) => bytes(s.ram_used), (s) => (s.ram_total ? `of ${bytes(s.ram_total)}` : "")],
    ["gpu", "GPU", (s) => percent(s.gpu_percent), (s) => (s.gpu_mem_used !== null && s.gpu_mem_used !== undefined ? `memory ${bytes(s.gpu_mem_used)}` : "")],
    ["power", "Power", (s) => (s.power_mw === null || s.power_mw === undefined ? "–" : `${number(s.power_mw / 1000, 1)} W`), () => ""],
    ["temp", "Hottest sensor", (s) => (s.temp_max === null || s.temp_max === undefined ? "–" : `${number(s.temp_max, 1)} °C`), () => ""],
    ["swap", "Swap", (s) => bytes(s.swap_used), () => ""],
    ["net", "Network", (s) => `↓ ${bytes(s.net_rx_bps)}/s`, (s) => `↑ ${bytes(s.net_tx_bps)}/s`],
    ["slots", "Slots busy", (s) => number(s.slots_busy), () => "llama-server"],
  ];

  function card(label) {
    const value = el("div", { class: "value" }, "–");
    const sub = el("div", { class: "sub" });
    return { node: el("div", { class: "card" }, el("div", { class: "label" }, label), value, sub), value, sub };
  }

  function nodeView(name) {
    let view = nodes.get(name);
    if (view) return view;
    const when = el("span", { class: "sub" });
    const board = el("span", { class: "sub" });
    const cards = new Map();
    const grid = el("div", { class: "cards" });
    for (const [key, label] of CARDS) {
      const c = card(label);
      cards.set(key, c);
      grid.append(c.node);
    }
    const temps = el("div", { class: "cards", "aria-label": "Temperatures" });
    const tempsTitle = el("h2", { hidden: "" }, "Temperatures");
    const section = el("section", { class: "node panel", "data-node": name }, el("h2", {}, el("span", { text: name }), board, when), grid, tempsTitle, temps);
    nodesBox.append(section);
    empty.hidden = true;
    view = { section, cards, when, board, temps, tempsTitle, tempCards: new Map() };
    nodes.set(name, view);
    return view;
  }

  function showSample(sample) {
    if (!sample || typeof sample.node !== "string") return;
    const view = nodeView(sample.node);
    const summary = sample.summary || {};
    for (const [key, , value, sub] of CARDS) {
      const c = view.cards.get(key);
      c.value.textContent = value(summary);
      c.sub.textContent = sub(summary);
    }
    view.when.textContent = `sampled ${Dash.time(sample.time)}`;
    const board = sample.board || {};
    view.board.textContent = [board.model, board.power_mode].filter(Boolean).join(" · ");
    const temperatures = sample.temperatures && typeof sample.temperatures === "object" ? sample.temperatures : {};
    for (const [sensor, celsius] of Object.entries(temperatures).slice(0, 24)) {
      let c = view.tempCards.get(sensor);
      if (!c) {
        c = card(sensor);
        view.tempCards.set(sensor, c);
        view.temps.append(c.node);
        view.tempsTitle.hidden = false;
      }
      c.value.textContent = `${number(celsius, 1)} °C`;
    }
    addLivePoint(sample);
  }

  function chartOptions(target, series, height = 220) {
    const colours = Dash.palette();
    const axis = { stroke: colours.muted, grid: { stroke: colours.border, width: 1 }, ticks: { stroke: colours.border } };
    return {
      width: Math.max(target.clientWidth, 280),
      height,
      series: [{}, ...series.map((s, i) => ({ label: s, stroke: [colours.accent, colours.warn, colours.ok][i % 3], width: 2 }))],
      axes: [axis, axis],
      // A lone point would stretch the time axis over years: give it a minute either side.
      scales: { x: { time: true, range: (u, min, max) => (u.data[0].length === 1 ? [u.data[0][0] - 60, u.data[0][0] + 60] : [min, max]) } },
    };
  }

  function addLivePoint(sample) {
    // The live chart follows the first node seen; the cards show every node.
    if (live.node === null) live.node = sample.node;
    if (sample.node !== live.node) return;
    const summary = sample.summary || {};
    live.times.push(Date.parse(sample.time) / 1000);
    live.cpu.push(summary.cpu_percent ?? null);
    live.gpu.push(summary.gpu_percent ?? null);
    for (const list of [live.times, live.cpu, live.gpu]) if (list.length > LIVE_POINTS) list.shift();
    const target = document.getElementById("live-chart");
    const data = [live.times, live.cpu, live.gpu];
    if (!live.chart) live.chart = new uPlot(chartOptions(target, [`${live.node} CPU %`, `${live.node} GPU %`]), data, target);
    else live.chart.setData(data);
  }

  // --- History ---
  const form = document.getElementById("history-form");
  const nodeSelect = document.getElementById("history-node");
  const metricSelect = document.getElementById("history-metric");
  const message = document.getElementById("history-message");
  const historyTarget = document.getElementById("history-chart");
  let historyChart = null;

  async function loadNodes() {
    let data;
    try {
      data = await Dash.getJSON("/api/nodes");
    } catch (error) {
      message.textContent = `Nodes unavailable: ${error.message}`;
      return;
    }
    nodeSelect.replaceChildren(...data.nodes.map((n) => el("option", { value: n.name }, n.name)));
    metricSelect.replaceChildren(...Object.entries(data.metrics).map(([name, label]) => el("option", { value: name }, label)));
    // A first look at every node before the first push arrives.
    await Promise.all(data.nodes.map(async (n) => {
      try {
        showSample(await Dash.getJSON(`/system/stats?node=${encodeURIComponent(n.name)}`));
      } catch { /* a node without samples yet */ }
    }));
    if (data.nodes.length) loadHistory();
    else message.textContent = "No node has been sampled yet.";
  }

  async function loadHistory() {
    const params = new URLSearchParams({ metric: metricSelect.value, node: nodeSelect.value, since: form.since.value });
    let data;
    try {
      data = await Dash.getJSON(`/api/metrics/history?${params}`);
    } catch (error) {
      message.textContent = `History unavailable: ${error.message}`;
      return;
    }
    const points = data.points || [];
    message.textContent = `${points.length} points, ${number(data.step)} s each, from ${data.source === "rollup" ? "minute rollups" : "raw samples"}.`;
    const chartData = [points.map((p) => p[0]), points.map((p) => p[1]), points.map((p) => p[2])];
    if (historyChart) historyChart.destroy();
    const label = metricSelect.options[metricSelect.selectedIndex]?.textContent || data.metric;
    historyChart = new uPlot(chartOptions(historyTarget, [`${label} (average)`, "maximum"], 260), chartData, historyTarget);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    loadHistory();
  });

  function resize() {
    if (live.chart) live.chart.setSize({ width: Math.max(document.getElementById("live-chart").clientWidth, 280), height: 220 });
    if (historyChart) historyChart.setSize({ width: Math.max(historyTarget.clientWidth, 280), height: 260 });
  }
  window.addEventListener("resize", resize);
  window.addEventListener("dashboard-theme", () => {
    // Canvas colours come from the theme: rebuild the charts in the new one.
    if (live.chart) {
      live.chart.destroy();
      const target = document.getElementById("live-chart");
      live.chart = new uPlot(chartOptions(target, [`${live.node} CPU %`, `${live.node} GPU %`]), [live.times, live.cpu, live.gpu], target);
    }
    if (historyChart) loadHistory();
  });

  Dash.socket("/ws/metrics/", {
    statusNode: document.getElementById("live-status"),
    onMessage: (data) => { if (data.type === "sample") showSample(data.sample); },
  });
  loadNodes();
})();
