// Ollama-compatible routes: /api/chat, /api/generate (NDJSON streams, durations in ns), /api/tags,
// /api/show, /api/ps, /api/version. keep_alive goes to the ModelHost, which unloads and reloads.
import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import type { ChatMessage, ChatTool, GenerateRequest, GenerateStats, ModelInfo } from '../engine/types.ts';
import { ApiError, badRequest, toApiError } from './errors.ts';
import { parseKeepAlive } from './host.ts';
import { DEMO_NOTE } from './openai.ts';
import { collectReply, startReply, type ReplyEvent } from './reply.ts';
import { checkModel, maxTokensFor, readJson, samplingFrom, jsonTopLevelOf, withJsonInstruction, type ServerContext } from './request.ts';
import { ndjsonResponse } from './sse.ts';

// ---- schemas -----------------------------------------------------------------------------------

const Options = z
  .object({
    temperature: z.number().min(0).optional(),
    top_k: z.int().min(0).optional(),
    top_p: z.number().min(0).max(1).optional(),
    min_p: z.number().min(0).max(1).optional(),
    seed: z.int().optional(),
    num_predict: z.int().optional(),
    stop: z.array(z.string()).optional(),
    repeat_penalty: z.number().positive().optional(),
    repeat_last_n: z.int().min(-1).optional(),
    presence_penalty: z.number().optional(),
    frequency_penalty: z.number().optional(),
  })
  // num_ctx, num_thread, num_gpu, …: load-time settings fixed by `mixtile serve` flags; ignored here.
  .loose();

const KeepAlive = z.union([z.string(), z.number()]).optional();
/** "json", or a JSON schema object. */
const Format = z.union([z.literal('json'), z.literal(''), z.record(z.string(), z.unknown())]).optional();

const Common = {
  model: z.string().optional(),
  stream: z.boolean().optional(),
  options: Options.optional(),
  keep_alive: KeepAlive,
  format: Format,
  think: z.union([z.boolean(), z.enum(['low', 'medium', 'high'])]).optional(),
};

const OllamaToolCall = z.object({ function: z.object({ name: z.string().min(1), arguments: z.record(z.string(), z.unknown()).default({}) }) });

const OllamaMessage = z.object({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  content: z.string().default(''),
  thinking: z.string().optional(),
  images: z.array(z.string()).nullish(),
  tool_calls: z.array(OllamaToolCall).optional(),
  tool_name: z.string().optional(),
});

const Tool = z.object({
  type: z.literal('function'),
  function: z.object({ name: z.string().min(1), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional() }),
});

const ChatBody = z.object({ ...Common, messages: z.array(OllamaMessage).default([]), tools: z.array(Tool).optional() });
const GenerateBody = z.object({
  ...Common,
  prompt: z.string().default(''),
  system: z.string().optional(),
  raw: z.boolean().optional(),
  images: z.array(z.string()).nullish(),
  suffix: z.string().optional(),
  template: z.string().optional(),
  context: z.array(z.int()).optional(),
});
const ShowBody = z.object({ model: z.string().optional(), name: z.string().optional() });

// ---- wire → engine -----------------------------------------------------------------------------

function keepAliveMs(v: string | number | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseKeepAlive(v);
  if (ms === undefined) throw badRequest(`keep_alive: expected a duration such as "5m", "30s", "-1" or a number of seconds, got ${JSON.stringify(v)}`, 'keep_alive');
  return ms;
}

function chatMessages(messages: z.infer<typeof OllamaMessage>[]): ChatMessage[] {
  return messages.map((m, i) => {
    if (m.images?.length) throw badRequest(`messages[${i}].images: image input is not supported by this model`, `messages[${i}].images`);
    const out: ChatMessage = { role: m.role, content: m.content };
    if (m.thinking) out.reasoningContent = m.thinking;
    if (m.tool_name) out.name = m.tool_name;
    if (m.tool_calls?.length) out.toolCalls = m.tool_calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments }));
    return out;
  });
}

function request(o: z.infer<typeof Options> | undefined, prompt: number[], info: ModelInfo, format: z.infer<typeof Format>): GenerateRequest {
  const opts = o ?? {};
  // Ollama: num_predict -1 (or absent) = until done; -2 = fill the context.
  const n = opts.num_predict !== undefined && opts.num_predict > 0 ? opts.num_predict : undefined;
  return {
    prompt,
    maxTokens: maxTokensFor(n, prompt.length, info.contextLength, 'options.num_predict'),
    sampling: samplingFrom(opts),
    stop: (opts.stop ?? []).filter((s) => s.length > 0),
    stopAtEog: true,
    // "json" is an object, as in Ollama's own JSON grammar (root ::= object).
    ...(format ? { json: format === 'json' ? 'object' : jsonTopLevelOf(format) } : {}),
  };
}

function withFormat(messages: ChatMessage[], format: z.infer<typeof Format>): ChatMessage[] {
  if (!format) return messages;
  return withJsonInstruction(messages, format === 'json' ? undefined : format);
}

// ---- engine → wire -----------------------------------------------------------------------------

const ns = (ms: number) => Math.round(ms * 1e6);

/** Ollama's final counters; load_duration is the wait for a (re)load, when this request caused one. */
function counters(s: GenerateStats, t0: number, loadMs: number) {
  return {
    total_duration: ns(performance.now() - t0),
    load_duration: ns(loadMs),
    prompt_eval_count: s.promptTokens,
    prompt_eval_duration: ns(s.promptMs),
    eval_count: s.completionTokens,
    eval_duration: ns(s.decodeMs),
  };
}

function doneReason(reason: string): string {
  return reason === 'length' ? 'length' : 'stop';
}

export function ollamaErrorBody(err: unknown) {
  return { error: toApiError(err).message };
}

/** Sizes and names as Ollama lists them; the digest stands for the file (path, size), not its bytes. */
function describe(info: ModelInfo) {
  return {
    name: `${info.name}:latest`,
    model: `${info.name}:latest`,
    size: info.sizeBytes,
    digest: createHash('sha256').update(`${info.path}\0${info.sizeBytes}`).digest('hex'),
    details: {
      parent_model: '',
      format: 'gguf',
      family: info.architecture,
      families: [info.architecture],
      parameter_size: paramSize(info.nParams),
      quantization_level: info.fileType,
    },
  };
}

function paramSize(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : `${(n / 1e6).toFixed(1)}M`;
}

// ---- routes ------------------------------------------------------------------------------------

export function ollamaRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  const host = ctx.host;

  app.get('/api/version', (c) => c.json({ version: ctx.version }));

  app.get('/api/tags', (c) => {
    const info = host.info;
    return c.json({ models: info ? [{ ...describe(info), modified_at: new Date().toISOString() }] : [] });
  });

  app.get('/api/ps', (c) => {
    const engine = host.engine;
    if (!engine) return c.json({ models: [] });
    // A model kept forever reports a far-future expiry, as Ollama does.
    const expires = host.expiresAt ?? new Date('2318-01-01T00:00:00Z');
    return c.json({ models: [{ ...describe(engine.info), expires_at: expires.toISOString(), size_vram: 0, context_length: engine.info.contextLength }] });
  });

  app.post('/api/show', async (c) => {
    const body = await readJson(c, ShowBody);
    const info = host.info ?? host.loaded().info;
    checkModel(info, body.model ?? body.name);
    const engine = host.engine;
    // Ollama shows a Go template; ours is Jinja, so show what it renders around a placeholder prompt.
    const template = engine?.applyChatTemplate([{ role: 'user', content: '{{ .Prompt }}' }], { addGenerationPrompt: true, enableThinking: true }) ?? '';
    return c.json({
      license: '',
      modelfile: `# Modelfile for ${info.name}\nFROM ${info.path}\n`,
      parameters: '',
      template,
      details: describe(info).details,
      model_info: {
        'general.architecture': info.architecture,
        'general.parameter_count': info.nParams,
        'general.file_type': info.fileType,
        [`${info.architecture}.context_length`]: info.contextLength,
        'mixtile.active_parameter_count': info.nActiveParams,
        'mixtile.is_demo': info.isDemo,
      },
      ...(info.isDemo ? { system: DEMO_NOTE } : {}),
      capabilities: ['completion', 'tools', 'thinking'],
      modified_at: new Date().toISOString(),
    });
  });

  app.post('/api/chat', async (c) => {
    const t0 = performance.now();
    const body = await readJson(c, ChatBody);
    const keepAlive = keepAliveMs(body.keep_alive);
    if (body.messages.length === 0) return c.json(await loadOnly(body.model, keepAlive, 'chat'));
    const wasLoaded = host.engine !== undefined;
    const lease = await host.acquire(keepAlive);
    try {
      const { engine } = lease;
      const loadMs = wasLoaded ? 0 : performance.now() - t0;
      checkModel(engine.info, body.model);
      const messages = withFormat(chatMessages(body.messages), body.format);
      const tools: ChatTool[] = body.tools ?? [];
      // Constrained JSON output leaves no room for a <think> block: the template gets thinking off.
      const promptText = engine.applyChatTemplate(messages, { tools, addGenerationPrompt: true, enableThinking: body.think !== false && !body.format });
      const prompt = engine.tokenize(promptText, { addSpecial: true, parseSpecial: true });
      const events = startReply({ engine, metrics: ctx.metrics, request: request(body.options, prompt, engine.info, body.format), signal: c.req.raw.signal, reasoning: { promptText }, tools: tools.length > 0 });
      const model = body.model ?? `${engine.info.name}:latest`;
      const head = () => ({ model, created_at: new Date().toISOString() });
      // think: false hides reasoning even if the model writes some.
      const showThinking = body.think !== false;
      if (body.stream !== false) {
        return ndjsonResponse(
          (async function* () {
            try {
              for await (const ev of events) {
                const line = chatLine(ev, showThinking);
                if (line) yield { ...head(), ...line };
                if (ev.type === 'done') yield { ...head(), message: { role: 'assistant', content: '' }, done: true, done_reason: doneReason(ev.reason), ...counters(ev.stats, t0, loadMs) };
              }
            } finally {
              lease.release();
            }
          })(),
          ollamaErrorBody,
        );
      }
      const r = await collectReply(events).finally(lease.release);
      if (r.reason === 'error') throw new ApiError(500, 'server_error', `generation failed: ${r.error}`);
      return c.json({
        ...head(),
        message: {
          role: 'assistant',
          content: r.content,
          ...(showThinking && r.reasoning ? { thinking: r.reasoning } : {}),
          ...(r.toolCalls.length ? { tool_calls: r.toolCalls.map((call) => ({ function: call })) } : {}),
        },
        done: true,
        done_reason: doneReason(r.reason),
        ...counters(r.stats, t0, loadMs),
      });
    } catch (err) {
      lease.release();
      throw err;
    }
  });

  app.post('/api/generate', async (c) => {
    const t0 = performance.now();
    const body = await readJson(c, GenerateBody);
    const keepAlive = keepAliveMs(body.keep_alive);
    if (!body.prompt && !body.system) return c.json(await loadOnly(body.model, keepAlive, 'generate'));
    if (body.images?.length) throw badRequest('images: image input is not supported by this model', 'images');
    if (body.suffix) throw new ApiError(400, 'not_supported_error', 'suffix (fill-in-the-middle) is not supported by this model', 'suffix');
    if (body.template) throw new ApiError(400, 'not_supported_error', 'template: a per-request template is not supported; the model\'s own chat template is used (or send raw: true)', 'template');
    const wasLoaded = host.engine !== undefined;
    const lease = await host.acquire(keepAlive);
    try {
      const { engine } = lease;
      const loadMs = wasLoaded ? 0 : performance.now() - t0;
      checkModel(engine.info, body.model);
      let promptText: string;
      if (body.raw) promptText = body.prompt;
      else {
        const messages: ChatMessage[] = [...(body.system ? [{ role: 'system' as const, content: body.system }] : []), { role: 'user', content: body.prompt }];
        promptText = engine.applyChatTemplate(withFormat(messages, body.format), { addGenerationPrompt: true, enableThinking: body.think !== false && !body.format });
      }
      const promptIds = engine.tokenize(promptText, { addSpecial: true, parseSpecial: true });
      // `context` from an earlier reply continues that conversation (Ollama's older API).
      const prompt = body.context?.length ? [...body.context, ...promptIds] : promptIds;
      const events = startReply({ engine, metrics: ctx.metrics, request: request(body.options, prompt, engine.info, body.format), signal: c.req.raw.signal, reasoning: body.raw ? undefined : { promptText }, tools: false });
      const model = body.model ?? `${engine.info.name}:latest`;
      const head = () => ({ model, created_at: new Date().toISOString() });
      const showThinking = body.think !== false;
      if (body.stream !== false) {
        return ndjsonResponse(
          (async function* () {
            try {
              for await (const ev of events) {
                if (ev.type === 'content') yield { ...head(), response: ev.text, done: false };
                else if (ev.type === 'reasoning' && showThinking) yield { ...head(), response: '', thinking: ev.text, done: false };
                else if (ev.type === 'done') yield { ...head(), response: '', done: true, done_reason: doneReason(ev.reason), ...counters(ev.stats, t0, loadMs) };
              }
            } finally {
              lease.release();
            }
          })(),
          ollamaErrorBody,
        );
      }
      const r = await collectReply(events).finally(lease.release);
      if (r.reason === 'error') throw new ApiError(500, 'server_error', `generation failed: ${r.error}`);
      return c.json({
        ...head(),
        response: r.content,
        ...(showThinking && r.reasoning ? { thinking: r.reasoning } : {}),
        done: true,
        done_reason: doneReason(r.reason),
        ...counters(r.stats, t0, loadMs),
      });
    } catch (err) {
      lease.release();
      throw err;
    }
  });

  /** Ollama's "load / unload only" request (no prompt or messages): apply keep_alive, answer done. */
  async function loadOnly(model: string | undefined, keepAlive: number | undefined, kind: 'chat' | 'generate') {
    const created_at = new Date().toISOString();
    if (keepAlive === 0) {
      if (host.info) checkModel(host.info, model);
      host.setKeepAlive(0);
      return { model: model ?? '', created_at, ...(kind === 'chat' ? { message: { role: 'assistant', content: '' } } : { response: '' }), done: true, done_reason: 'unload' };
    }
    const lease = await host.acquire(keepAlive);
    checkModel(lease.engine.info, model);
    lease.release();
    return { model: model ?? `${lease.engine.info.name}:latest`, created_at, ...(kind === 'chat' ? { message: { role: 'assistant', content: '' } } : { response: '' }), done: true, done_reason: 'load' };
  }

  return app;
}

/** One streamed /api/chat line for an event (undefined for `done`, which has its own line). */
function chatLine(ev: ReplyEvent, showThinking: boolean) {
  switch (ev.type) {
    case 'content':
      return { message: { role: 'assistant', content: ev.text }, done: false };
    case 'reasoning':
      return showThinking ? { message: { role: 'assistant', content: '', thinking: ev.text }, done: false } : undefined;
    case 'tool_call':
      return { message: { role: 'assistant', content: '', tool_calls: [{ function: ev.call }] }, done: false };
    case 'done':
      if (ev.reason === 'error') throw new ApiError(500, 'server_error', `generation failed: ${ev.error}`);
      return undefined;
  }
}
