// Chat playground over /ws/chat/: streamed replies, Stop, images for vision models, multi-turn history.
"use strict";

(() => {
  const { el, number } = Dash;
  const $ = (id) => document.getElementById(id);
  const transcript = $("transcript");
  const form = $("composer");
  const prompt = $("prompt");
  const modelSelect = $("model");
  const imageInput = $("image");
  const sendButton = $("send");
  const stopButton = $("stop");
  const note = $("chat-note");

  const history = []; // OpenAI messages of the conversation so far (without the system prompt)
  let pending = null; // {bubble, text, userMessage} while a reply streams

  function bubble(role, text) {
    const body = el("span", { class: "text" }, text || "");
    const meta = el("span", { class: "meta" });
    const node = el("div", { class: `message ${role}`, "data-role": role }, body, meta);
    transcript.append(node);
    transcript.scrollTop = transcript.scrollHeight;
    return { node, body, meta };
  }

  function busy(on) {
    sendButton.disabled = on;
    stopButton.disabled = !on;
  }

  function isVision() {
    const option = modelSelect.options[modelSelect.selectedIndex];
    return option && option.dataset.kind === "vision";
  }
  function syncImageInput() {
    $("image-label").hidden = !isVision();
    if (!isVision()) imageInput.value = "";
  }
  modelSelect.addEventListener("change", syncImageInput);
  syncImageInput();

  // Models whose backend's GGUF has no chat template (llama-server falls back to ChatML): only the "server" prompt
  // format uses it, so only those models get the note. The status endpoint reads each GGUF's header.
  const noTemplate = new Set();
  function syncTemplateNote() {
    $("template-note").hidden = !noTemplate.has(modelSelect.value);
  }
  modelSelect.addEventListener("change", syncTemplateNote);
  Dash.getJSON($("chat-script").dataset.statusUrl)
    .then((data) => {
      for (const model of data.models) {
        const backends = model.backends.filter((backend) => backend.enabled);
        if (model.prompt_format === "server" && backends.some((backend) => backend.chat_template === false)) {
          noTemplate.add(model.model_id);
        }
      }
      syncTemplateNote();
    })
    .catch(() => {}); // the note is a hint: without the status, the page works as before

  function readImage(file) {
    return new Promise((resolve, reject) => {
      const limit = Number(imageInput.dataset.maxBytes || 0);
      if (limit && file.size > limit) {
        reject(new Error(`The image is larger than ${Dash.bytes(limit)}.`));
        return;
      }
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error("The image could not be read."));
      reader.readAsDataURL(file);
    });
  }

  function finish(metaText, keep) {
    if (!pending) return;
    const { text, view } = pending;
    if (keep && text) history.push({ role: "assistant", content: text });
    view.meta.textContent = metaText;
    pending = null;
    busy(false);
  }

  const channel = Dash.socket("/ws/chat/", {
    statusNode: $("live-status"),
    onOpen: () => {
      // A reply cannot survive a reconnect: the server cancelled it when the old socket closed.
      if (pending) finish("connection lost: reply interrupted", true);
    },
    onMessage: (message) => {
      if (!pending && message.type !== "error") return;
      switch (message.type) {
        case "started":
          pending.view.meta.textContent = `${message.model} · generating…`;
          break;
        case "delta":
          pending.text += message.content;
          pending.view.body.textContent = pending.text;
          transcript.scrollTop = transcript.scrollHeight;
          break;
        case "done": {
          const usage = message.usage || {};
          const parts = [
            `${number(usage.prompt_tokens)} prompt + ${number(usage.completion_tokens)} completion tokens`,
            message.tokens_per_second ? `${number(message.tokens_per_second, 1)} tokens/s` : null,
            message.finish_reason ? `finish: ${message.finish_reason}` : null,
          ];
          finish(parts.filter(Boolean).join(" · "), true);
          break;
        }
        case "stopped":
          finish("stopped", true);
          break;
        case "error":
          if (pending) {
            pending.view.node.classList.add("error");
            if (!pending.text) {
              pending.view.body.textContent = message.message;
              // The model never answered: take the question back out of the history, so it can be asked again.
              history.splice(history.indexOf(pending.userMessage), 1);
              finish(message.status ? `error ${message.status}` : "error", false);
            } else {
              finish(`error: ${message.message}`, true);
            }
          } else {
            note.textContent = message.message;
          }
          break;
        default:
          break;
      }
    },
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (pending) return;
    const text = prompt.value.trim();
    if (!text || !modelSelect.value) return;
    note.textContent = "";
    let content = text;
    let image = null;
    if (isVision() && imageInput.files.length) {
      try {
        image = await readImage(imageInput.files[0]);
      } catch (error) {
        note.textContent = error.message;
        return;
      }
      content = [{ type: "text", text }, { type: "image_url", image_url: { url: image } }];
    }
    const userMessage = { role: "user", content };
    history.push(userMessage);
    const userView = bubble("user", text);
    if (image) userView.node.insertBefore(el("img", { src: image, alt: "attached image" }), userView.meta);
    pending = { text: "", view: bubble("assistant", ""), userMessage };
    busy(true);
    const maxTokens = parseInt($("max-tokens").value, 10);
    const temperature = parseFloat($("temperature").value);
    const sent = channel.send({
      type: "chat",
      model: modelSelect.value,
      system: $("system").value,
      messages: history,
      temperature: Number.isNaN(temperature) ? undefined : temperature,
      max_tokens: Number.isNaN(maxTokens) ? undefined : maxTokens,
    });
    if (!sent) {
      history.pop();
      pending.view.node.classList.add("error");
      pending.view.body.textContent = "Not connected to the server: try again in a moment.";
      finish("", false);
      return;
    }
    prompt.value = "";
    imageInput.value = "";
  });

  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", () => channel.send({ type: "stop" }));

  $("clear").addEventListener("click", () => {
    if (pending) {
      channel.send({ type: "stop" });
      pending = null;
      busy(false);
    }
    history.length = 0;
    transcript.replaceChildren();
  });
})();
