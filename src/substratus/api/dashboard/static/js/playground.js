// A server's playground: prompt, max tokens, temperature; the generation streams in as the control plane
// relays it (OpenAI-style streaming where the server offers /v1/completions, else one piece from /generate).
// The answer is NDJSON: {"text"} pieces, then {"done"} or {"error"}.
import { objectPath, post } from "./api.js";
import { h } from "./dom.js";

async function* ndjson(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

export function playground(obj) {
  const { namespace, name } = obj.metadata;
  const prompt = h("textarea", { id: "pg-prompt", rows: 4, placeholder: "Write the beginning; the model continues it." },
    "Shall I compare thee");
  const maxTokens = h("input", { id: "pg-max-tokens", type: "number", min: 1, max: 2048, value: 32 });
  const temperature = h("input", { id: "pg-temperature", type: "number", min: 0, max: 2, step: 0.1, value: 0.8 });
  const button = h("button", { type: "submit", id: "pg-run" }, "Generate");
  const shown = h("span", { class: "pg-prompt" });
  const generated = h("span", { class: "pg-generated", id: "pg-output" });
  const output = h("div", { class: "pg-output", hidden: true }, shown, generated);
  const info = h("p", { class: "muted small", id: "pg-info" });

  async function run(ev) {
    ev.preventDefault();
    button.disabled = true;
    output.hidden = false;
    output.classList.add("streaming");
    shown.textContent = prompt.value;
    generated.textContent = "";
    info.textContent = "generating…";
    const body = { prompt: prompt.value, max_tokens: Number(maxTokens.value), temperature: Number(temperature.value) };
    try {
      const resp = await post(objectPath("ModelServer", namespace, name, "/generate"), body);
      for await (const msg of ndjson(resp)) {
        if (msg.text) generated.textContent += msg.text;
        if (msg.error) info.textContent = msg.error;
        if (msg.done) {
          const how = msg.api === "openai" ? "streamed from /v1/completions" : "from /generate";
          info.textContent = `${how} · ${msg.pieces} piece${msg.pieces === 1 ? "" : "s"} · ${msg.seconds}s`;
        }
      }
    } catch (err) {
      info.textContent = `failed: ${err.message}`;
    } finally {
      button.disabled = false;
      output.classList.remove("streaming");
    }
  }

  return h("form", { class: "playground", onsubmit: run },
    h("label", { for: "pg-prompt" }, "Prompt"), prompt,
    h("div", { class: "pg-row" },
      h("label", {}, "Max tokens ", maxTokens),
      h("label", {}, "Temperature ", temperature),
      button),
    output, info);
}
