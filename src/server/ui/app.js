// Mixtile chat page: streams /v1/chat/completions (SSE), shows thinking in a collapsible block,
// Stop aborts the fetch (the server then cancels the request). Plain browser JS, no build step.
const $ = (id) => document.getElementById(id);
const log = $('log');
const input = $('input');
const sendButton = $('send');
const stopButton = $('stop');
/** The conversation as OpenAI messages; assistant turns are added when their reply ends. */
let messages = [];
let controller = null;
let modelName = '';
/** The random-weight demo never writes an end-of-turn token; its replies are capped instead. */
const DEMO_MAX_TOKENS = 512;
let isDemo = false;

function apiHeaders() {
  const h = { 'content-type': 'application/json' };
  const key = localStorage.getItem('mixtile-api-key');
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

/** fetch with the stored API key; on 401 asks for a key once and retries. */
async function api(path, init = {}) {
  let r = await fetch(path, { ...init, headers: apiHeaders() });
  if (r.status === 401) {
    const key = prompt('This server needs an API key (mixtile serve --api-key):');
    if (key) {
      localStorage.setItem('mixtile-api-key', key);
      r = await fetch(path, { ...init, headers: apiHeaders() });
    }
  }
  return r;
}

async function loadModel() {
  try {
    const r = await api('/v1/models');
    if (r.status === 503) {
      $('model').textContent = 'model loading…';
      setTimeout(loadModel, 1000);
      return;
    }
    const body = await r.json();
    const m = body.data?.[0];
    if (!m) throw new Error(body.error?.message ?? 'no model');
    modelName = m.id;
    $('model').textContent = `${m.id} · ${m.meta?.architecture ?? ''} ${m.meta?.file_type ?? ''} · ctx ${m.meta?.n_ctx ?? '?'}`;
    isDemo = Boolean(m.meta?.is_demo);
    $('demo').hidden = !isDemo;
  } catch (e) {
    $('model').textContent = `cannot reach the server: ${e.message}`;
  }
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.dataset.testid = `msg-${role}`;
  if (text) div.textContent = text;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

/** Reads an SSE body and calls onData with each parsed `data:` JSON until [DONE]. */
async function readSse(body, onData) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, at);
      buf = buf.slice(at + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return;
        onData(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  messages.push({ role: 'user', content: text });
  addMessage('user', text);
  const box = addMessage('assistant', '');
  box.dataset.state = 'streaming';
  const think = document.createElement('details');
  const thinkText = document.createElement('div');
  think.innerHTML = '<summary>Thinking…</summary>';
  think.appendChild(thinkText);
  think.hidden = true;
  const answer = document.createElement('div');
  answer.dataset.testid = 'answer';
  const meta = document.createElement('div');
  meta.className = 'meta';
  box.append(think, answer, meta);

  controller = new AbortController();
  sendButton.disabled = true;
  stopButton.disabled = false;
  let content = '';
  let reasoning = '';
  let nTokens = 0;
  const t0 = performance.now();
  let tFirst = 0;
  const showSpeed = () => {
    const s = (performance.now() - tFirst) / 1000;
    if (nTokens > 1 && s > 0) $('speed').textContent = `${((nTokens - 1) / s).toFixed(1)} tok/s`;
  };
  try {
    const r = await api('/v1/chat/completions', {
      method: 'POST',
      signal: controller.signal,
      body: JSON.stringify({
        model: modelName || undefined,
        messages,
        stream: true,
        stream_options: { include_usage: true },
        ...(isDemo ? { max_tokens: DEMO_MAX_TOKENS } : {}),
        chat_template_kwargs: { enable_thinking: $('thinking').checked },
      }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error?.message ?? `HTTP ${r.status}`);
    }
    await readSse(r.body, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices?.[0];
      if (chunk.timings?.predicted_per_second) $('speed').textContent = `${chunk.timings.predicted_per_second.toFixed(1)} tok/s`;
      if (chunk.usage) meta.textContent = `${chunk.usage.prompt_tokens} prompt tokens (${chunk.usage.prompt_tokens_details?.cached_tokens ?? 0} cached), ${chunk.usage.completion_tokens} generated`;
      const d = choice?.delta;
      if (!d) return;
      if (d.reasoning_content || d.content || d.tool_calls) {
        nTokens++;
        if (!tFirst) tFirst = performance.now();
        showSpeed();
      }
      if (d.reasoning_content) {
        reasoning += d.reasoning_content;
        think.hidden = false;
        thinkText.textContent = reasoning;
      }
      if (d.content) {
        content += d.content;
        answer.textContent = content;
      }
      if (d.tool_calls) for (const c of d.tool_calls) answer.textContent += `\n[tool call ${c.function.name}(${c.function.arguments})]`;
      log.scrollTop = log.scrollHeight;
    });
    think.querySelector('summary').textContent = 'Thinking';
    box.dataset.state = 'done';
  } catch (e) {
    if (e.name === 'AbortError') {
      box.dataset.state = 'stopped';
      meta.textContent = `stopped after ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    } else {
      box.dataset.state = 'error';
      box.classList.add('error');
      meta.textContent = `error: ${e.message}`;
    }
  } finally {
    messages.push({ role: 'assistant', content, ...(reasoning ? { reasoning_content: reasoning } : {}) });
    controller = null;
    sendButton.disabled = false;
    stopButton.disabled = true;
  }
}

$('form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = '';
  send(text);
});
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('form').requestSubmit();
  }
});
stopButton.addEventListener('click', () => controller?.abort());
$('clear').addEventListener('click', () => {
  controller?.abort();
  messages = [];
  log.replaceChildren();
});
loadModel();
