// API reference: example tabs, and a small OpenAPI viewer with "Try it" (a pasted key stays in this tab's memory).
"use strict";

(() => {
  const { el } = Dash;

  // --- Example tabs ---
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      for (const other of tabs) {
        const selected = other === tab;
        other.setAttribute("aria-selected", String(selected));
        document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
      }
    });
  }

  // --- OpenAPI viewer ---
  const box = document.getElementById("openapi-ops");
  const keyInput = document.getElementById("try-key");
  const schemaUrl = document.getElementById("reference-script").dataset.schemaUrl;
  const model = (document.querySelector("#ex-curl code")?.textContent.match(/"model": "([^"]+)"/) || [])[1] || "";

  function describe(schema) {
    if (!schema) return "any";
    const alternatives = schema.anyOf || schema.oneOf;
    if (alternatives) return alternatives.map(describe).join(" | ") + (schema.nullable ? ", nullable" : "");
    if (schema.type === "array") return `array of ${describe(schema.items)}`;
    if (schema.enum) return schema.enum.join(" | ");
    if (schema.format === "binary") return "file";
    let text = schema.type || "any";
    if (schema.minimum !== undefined || schema.maximum !== undefined) text += ` [${schema.minimum ?? ""}, ${schema.maximum ?? ""}]`;
    if (schema.nullable) text += ", nullable";
    return text;
  }

  function fieldsTable(schema) {
    const required = new Set(schema.required || []);
    return el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "required"))),
      el("tbody", {}, ...Object.entries(schema.properties || {}).map(([name, field]) =>
        el("tr", {}, el("td", { class: "mono" }, name), el("td", {}, describe(field)), el("td", {}, required.has(name) ? "yes" : "")))),
    );
  }

  function example(path) {
    if (path === "/v1/chat/completions") return { model, messages: [{ role: "user", content: "Hello" }], max_tokens: 32 };
    if (path === "/v1/completions") return { model, prompt: "The capital of France is", max_tokens: 16 };
    if (path === "/v1/embeddings") return { model: document.getElementById("openapi").dataset.embedModel, input: "hello" };
    if (path === "/v1/rerank") return { model: "<a rerank model>", query: "What is a panda?", documents: ["hi", "it is a bear"] };
    return {};
  }

  async function tryIt(method, path, form, output) {
    let url = path;
    const headers = { Accept: "application/json" };
    const key = keyInput.value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const options = { method, headers, credentials: key ? "omit" : "same-origin" };
    const query = new URLSearchParams();
    for (const input of form.querySelectorAll("input[data-in]")) {
      if (!input.value) continue;
      if (input.dataset.in === "path") url = url.replace(`{${input.name}}`, encodeURIComponent(input.value));
      else query.set(input.name, input.value);
    }
    if (query.toString()) url += `?${query}`;
    const body = form.querySelector("textarea");
    if (body) {
      headers["Content-Type"] = "application/json";
      options.body = body.value;
    }
    output.textContent = `${method} ${url} …`;
    try {
      const response = await fetch(url, options);
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* an event stream, or plain text */ }
      output.textContent = `${response.status} ${response.statusText}\n\n${shown}`;
    } catch (error) {
      output.textContent = `Request failed: ${error.message}`;
    }
  }

  function operationView(path, method, operation) {
    const parts = [];
    for (const parameter of operation.parameters || []) {
      parts.push(el("label", {}, `${parameter.name} (${parameter.in})${parameter.description ? ": " + parameter.description : ""}`,
        el("input", { type: "text", name: parameter.name, "data-in": parameter.in })));
    }
    const requestSchema = operation.requestBody?.content?.["application/json"]?.schema;
    // A multipart upload (a transcription's audio) is described, not tried here: send it with curl or an SDK.
    const formSchema = operation.requestBody?.content?.["multipart/form-data"]?.schema;
    const form = el("form", { class: "row" }, ...parts);
    if (requestSchema) {
      const textarea = el("textarea", { rows: "5", class: "mono", "aria-label": "request body" });
      textarea.value = JSON.stringify(example(path), null, 2);
      form.append(textarea);
    }
    const output = el("pre", { "aria-live": "polite" });
    form.append(el("button", { type: "submit" }, "Try it"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      tryIt(method.toUpperCase(), path, form, output);
    });
    if (requestSchema || formSchema) form.prepend(fieldsTable(requestSchema || formSchema));
    const auth = operation.security ? "API key" : "public";
    return el("details", { class: "op" },
      el("summary", {}, el("span", { class: "method" }, method.toUpperCase()), el("code", {}, path), el("span", { class: "muted" }, `${operation.summary || ""} · ${auth}`)),
      el("div", { class: "body" }, form, output),
    );
  }

  async function load() {
    try {
      const schema = await Dash.getJSON(schemaUrl);
      const views = [];
      for (const [path, operations] of Object.entries(schema.paths)) {
        for (const [method, operation] of Object.entries(operations)) views.push(operationView(path, method, operation));
      }
      box.replaceChildren(...views);
    } catch (error) {
      box.replaceChildren(el("p", { class: "muted" }, `Schema unavailable: ${error.message}`));
    }
  }
  load();
})();
