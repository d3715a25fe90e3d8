// Helpers shared by the dashboard pages. Server data only ever reaches the page through textContent.
"use strict";

const Dash = (() => {
  /** An element with properties set and children appended as nodes or as text (never parsed as HTML). */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    node.append(...children.filter((c) => c !== undefined && c !== null).map((c) => (c instanceof Node ? c : String(c))));
    return node;
  }

  function setStatus(node, text, state) {
    if (!node) return;
    node.textContent = text;
    node.className = "status " + state;
  }

  /**
   * A websocket to a path on this server that reconnects after network trouble. Close code 4403 means the
   * session is no longer allowed (signed out elsewhere): no retry, the page says so.
   */
  function socket(path, { onMessage, onOpen, statusNode } = {}) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let delay = 1000;
    const handle = {
      ws: null,
      /** Send a JSON message; false when the socket is not open (the caller tells the user). */
      send(data) {
        if (!handle.ws || handle.ws.readyState !== WebSocket.OPEN) return false;
        handle.ws.send(JSON.stringify(data));
        return true;
      },
    };
    function open() {
      const ws = new WebSocket(scheme + location.host + path);
      handle.ws = ws;
      ws.addEventListener("open", () => {
        delay = 1000;
        setStatus(statusNode, "live", "live");
        if (onOpen) onOpen();
      });
      ws.addEventListener("message", (event) => {
        let data;
        try { data = JSON.parse(event.data); } catch { return; }
        onMessage(data);
      });
      ws.addEventListener("close", (event) => {
        if (event.code === 4403) {
          setStatus(statusNode, "signed out: reload to sign in", "closed");
          return;
        }
        setStatus(statusNode, "reconnecting", "closed");
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      });
    }
    open();
    return handle;
  }

  /** GET a JSON API of this server with the session cookie; throws an Error carrying the API's message. */
  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (!response.ok) {
      const message = body && body.error && body.error.message ? body.error.message : `${response.status} ${response.statusText}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  const number = (value, digits = 0) =>
    value === null || value === undefined || Number.isNaN(Number(value)) ? "–" : Number(value).toFixed(digits);

  function bytes(value) {
    if (value === null || value === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let size = Number(value);
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
    return `${size.toFixed(unit >= 3 ? 2 : unit ? 1 : 0)} ${units[unit]}`;
  }

  const time = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

  function setupTheme() {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    const order = ["auto", "light", "dark"];
    const current = () => localStorage.getItem("dashboard-theme") || "auto";
    const show = () => { button.textContent = "Theme: " + current(); };
    button.addEventListener("click", () => {
      const next = order[(order.indexOf(current()) + 1) % order.length];
      if (next === "auto") {
        localStorage.removeItem("dashboard-theme");
        delete document.documentElement.dataset.theme;
      } else {
        localStorage.setItem("dashboard-theme", next);
        document.documentElement.dataset.theme = next;
      }
      show();
      window.dispatchEvent(new Event("dashboard-theme"));
    });
    show();
  }
  setupTheme();

  /** The colours of the current theme, for the charts (which draw on a canvas, outside CSS). */
  function palette() {
    const style = getComputedStyle(document.documentElement);
    const get = (name) => style.getPropertyValue(name).trim();
    return { text: get("--text"), muted: get("--muted"), border: get("--border"), accent: get("--accent"), ok: get("--ok"), warn: get("--warn"), bad: get("--bad") };
  }

  // --- Nodes and their admission: polled on every page, shown as a banner when one is soft, hard or stale ---
  const NODES_EVERY_MS = 10000;
  const EFFECT = {
    soft: "new generation requests wait, and each model serves one at a time",
    hard: "new generation requests are refused (503); those running finish",
    stale: "load is admitted normally",
  };
  const nodeListeners = [];
  let latestNodes = null;

  /** Call `listener(nodes)` with /api/nodes' nodes now (if known) and at every poll. */
  function onNodes(listener) {
    nodeListeners.push(listener);
    if (latestNodes) listener(latestNodes);
  }

  function admissionLine(node) {
    const { state, since, reason } = node.admission;
    const stale = state === "stale"; // the server found the sampler silent: what it last decided no longer applies
    return el("p", { class: state, "data-node": node.name },
      el("span", { class: "state" }, stale ? `${node.name}: stale` : `${node.name}: ${state} admission`),
      stale ? `: the sampler is silent since ${time(since)}, ${EFFECT.stale}.` : ` since ${time(since)}: ${EFFECT[state]}.`,
      reason ? ` ${reason}.` : "");
  }

  function showAdmission(banner, nodes) {
    const limited = nodes.filter((node) => node.admission && EFFECT[node.admission.state]);
    banner.replaceChildren(...limited.map(admissionLine));
    banner.className = limited.some((node) => node.admission.state === "hard") ? "banner hard" : "banner";
    banner.hidden = !limited.length;
  }

  function watchNodes() {
    const banner = document.getElementById("admission-banner");
    if (!banner) return; // signed out: nothing to ask
    async function poll() {
      try {
        latestNodes = (await getJSON(banner.dataset.nodesUrl)).nodes;
      } catch {
        return; // keep what is shown until the next poll answers
      }
      showAdmission(banner, latestNodes);
      for (const listener of nodeListeners) listener(latestNodes);
    }
    poll();
    setInterval(poll, NODES_EVERY_MS);
  }
  watchNodes();

  return { el, socket, setStatus, getJSON, number, bytes, time, palette, onNodes };
})();
