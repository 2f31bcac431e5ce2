// OpenAI-compatible routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models.
// Each route: zod schema → engine request → engine events back as OpenAI JSON or SSE chunks.
import { Hono } from 'hono';
import { z } from 'zod';
import type { ChatMessage, ChatTool, Engine, GenerateRequest } from '../engine/types.ts';
import { ApiError, badRequest, toApiError } from './errors.ts';
import type { EngineLease } from './host.ts';
import { collectReply, llamaTimings, startReply, type CollectedReply, type ReplyEvent, type ReplyFinish } from './reply.ts';
import { checkModel, maxTokensFor, nowSeconds, randomId, readJson, samplingFrom, jsonTopLevelOf, withJsonInstruction, withSystemInstruction, type ServerContext } from './request.ts';
import { mergeStreams, sseResponse } from './sse.ts';
import type { ParsedToolCall } from './tool-calls.ts';

// ---- schemas -----------------------------------------------------------------------------------

const nullish = <T extends z.ZodType>(t: T) => t.nullish();

/** Fields /v1/chat/completions and /v1/completions share (llama-server's extensions included). */
const Common = {
  model: nullish(z.string()),
  stream: nullish(z.boolean()),
  stream_options: nullish(z.object({ include_usage: nullish(z.boolean()) })),
  max_tokens: nullish(z.int().min(1)),
  temperature: nullish(z.number().min(0).max(100)),
  top_p: nullish(z.number().min(0).max(1)),
  top_k: nullish(z.int().min(0)),
  min_p: nullish(z.number().min(0).max(1)),
  seed: nullish(z.int()),
  presence_penalty: nullish(z.number().min(-2).max(2)),
  frequency_penalty: nullish(z.number().min(-2).max(2)),
  repeat_penalty: nullish(z.number().positive()),
  repeat_last_n: nullish(z.int().min(-1)),
  n: nullish(z.int().min(1).max(16)),
  stop: nullish(z.union([z.string(), z.array(z.string()).max(16)])),
  logprobs: nullish(z.boolean()),
};

const TextPart = z.object({ type: z.string(), text: z.string().optional() });
const Content = z.union([z.string(), z.array(TextPart)]).nullish();

const WireToolCall = z.object({
  id: z.string().optional(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string().min(1), arguments: z.union([z.string(), z.record(z.string(), z.unknown())]) }),
});

export const ChatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: Content,
  reasoning_content: z.string().nullish(),
  tool_calls: z.array(WireToolCall).nullish(),
  tool_call_id: z.string().nullish(),
  name: z.string().nullish(),
});

export const ToolSchema = z.object({
  type: z.literal('function'),
  function: z.object({ name: z.string().min(1), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional() }),
});

const ChatBody = z.object({
  ...Common,
  messages: z.array(ChatMessageSchema).min(1),
  max_completion_tokens: nullish(z.int().min(1)),
  tools: nullish(z.array(ToolSchema)),
  tool_choice: nullish(z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) })])),
  parallel_tool_calls: nullish(z.boolean()),
  chat_template_kwargs: nullish(z.object({ enable_thinking: z.boolean().optional() }).loose()),
  /** llama-server: "none" leaves `<think>` blocks in the content. */
  reasoning_format: nullish(z.enum(['none', 'auto', 'deepseek', 'deepseek-legacy'])),
  response_format: nullish(
    z.union([
      z.object({ type: z.literal('text') }),
      z.object({ type: z.literal('json_object') }),
      z.object({ type: z.literal('json_schema'), json_schema: z.object({ name: z.string().optional(), schema: z.record(z.string(), z.unknown()).optional() }).loose() }),
    ]),
  ),
});

const CompletionBody = z.object({
  ...Common,
  prompt: z.union([z.string(), z.array(z.int().min(0)).min(1)]),
  echo: nullish(z.boolean()),
});

// ---- wire → engine -----------------------------------------------------------------------------

type WireMessage = z.infer<typeof ChatMessageSchema>;

function contentText(content: WireMessage['content'], where: string): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content
    .map((p, j) => {
      if (p.type !== 'text' || p.text === undefined) throw badRequest(`${where}[${j}]: content part of type "${p.type}" is not supported; only {"type":"text","text":…} parts are`, `${where}[${j}]`);
      return p.text;
    })
    .join('');
}

/** OpenAI messages to the engine's (developer → system, tool-call arguments parsed to objects). */
export function chatMessages(messages: WireMessage[]): ChatMessage[] {
  return messages.map((m, i) => {
    const out: ChatMessage = { role: m.role === 'developer' ? 'system' : m.role, content: contentText(m.content, `messages[${i}].content`) };
    if (m.reasoning_content) out.reasoningContent = m.reasoning_content;
    if (m.tool_call_id) out.toolCallId = m.tool_call_id;
    if (m.name) out.name = m.name;
    if (m.tool_calls?.length) {
      out.toolCalls = m.tool_calls.map((c, j) => ({
        ...(c.id ? { id: c.id } : {}),
        name: c.function.name,
        arguments: toolArguments(c.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`),
      }));
    }
    return out;
  });
}

function toolArguments(a: string | Record<string, unknown>, where: string): Record<string, unknown> {
  if (typeof a !== 'string') return a;
  try {
    const v: unknown = JSON.parse(a || '{}');
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw badRequest(`${where}: expected a JSON object in a string, got ${JSON.stringify(a.slice(0, 80))}`, where);
}

/**
 * tools after tool_choice: "none" offers none; a named function offers only that one. "required"
 * and a named function are also asked for in words (decoding is not constrained).
 */
function offeredTools(body: z.infer<typeof ChatBody>): ChatTool[] {
  const tools = body.tools ?? [];
  const choice = body.tool_choice;
  if (choice === 'none') return [];
  if (typeof choice === 'object' && choice) {
    const named = tools.filter((t) => t.function.name === choice.function.name);
    if (named.length === 0) throw badRequest(`tool_choice names function "${choice.function.name}" but tools has no such function`, 'tool_choice');
    return named;
  }
  return tools;
}

function stopList(stop: string | string[] | null | undefined): string[] {
  return stop == null ? [] : (Array.isArray(stop) ? stop : [stop]).filter((s) => s.length > 0);
}

function checkCommon(body: { logprobs?: boolean | null }): void {
  if (body.logprobs) throw new ApiError(400, 'not_supported_error', 'logprobs are not supported by this server', 'logprobs');
}

/** `n` requests that differ only in seed (seed + i when a seed was given, so choices differ but repeat). */
function requestsFor(base: GenerateRequest, n: number): GenerateRequest[] {
  return Array.from({ length: n }, (_, i) => {
    const s = base.sampling.seed;
    return { ...base, sampling: { ...base.sampling, ...(s !== undefined ? { seed: s + i } : {}) } };
  });
}

// ---- engine → wire -----------------------------------------------------------------------------

function wireFinish(r: ReplyFinish): 'stop' | 'length' | 'tool_calls' {
  return r === 'length' || r === 'tool_calls' ? r : 'stop';
}

function wireToolCalls(calls: ParsedToolCall[]) {
  return calls.map((c) => ({ id: randomId('call_'), type: 'function' as const, function: { name: c.name, arguments: JSON.stringify(c.arguments) } }));
}

function usage(replies: Array<Pick<CollectedReply, 'stats'>>) {
  const first = replies[0]!.stats;
  const completion = replies.reduce((s, r) => s + r.stats.completionTokens, 0);
  return {
    prompt_tokens: first.promptTokens,
    completion_tokens: completion,
    total_tokens: first.promptTokens + completion,
    prompt_tokens_details: { cached_tokens: first.cachedTokens },
  };
}

/** A reply that ended in an engine fault becomes a 500 (nothing was sent yet). */
function throwIfFailed(r: CollectedReply): void {
  if (r.reason === 'error') throw new ApiError(500, 'server_error', `generation failed: ${r.error ?? 'unknown engine error'}`);
}

export function openaiErrorBody(err: unknown) {
  const e = toApiError(err);
  return { error: { code: e.status, message: e.message, type: e.type, ...(e.param ? { param: e.param } : {}) } };
}

/** The lease is given back when the events end, however they end. */
async function* releasing<T>(events: AsyncIterable<T>, lease: EngineLease): AsyncGenerator<T> {
  try {
    yield* events;
  } finally {
    lease.release();
  }
}

/** Starts all `n` replies; if one is refused (queue full), the others are cancelled and the lease given back. */
function startAll(engine: Engine, ctx: ServerContext, reqs: GenerateRequest[], signal: AbortSignal, lease: EngineLease, opts: { reasoning?: { promptText: string }; tools: boolean }) {
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return reqs.map((request) => startReply({ engine, metrics: ctx.metrics, request, signal: abort.signal, ...opts }));
  } catch (err) {
    abort.abort();
    signal.removeEventListener('abort', onAbort);
    lease.release();
    throw err;
  }
}

// ---- routes ------------------------------------------------------------------------------------

export function openaiRoutes(ctx: ServerContext): Hono {
  const app = new Hono();

  app.get('/v1/models', (c) => {
    // Still listed while keep_alive has unloaded it (the next request loads it again).
    const info = ctx.host.info ?? ctx.host.loaded().info;
    return c.json({
      object: 'list',
      data: [
        {
          id: info.name,
          object: 'model',
          created: nowSeconds(),
          owned_by: 'mixtile',
          meta: {
            architecture: info.architecture,
            file_type: info.fileType,
            n_params: info.nParams,
            n_active_params: info.nActiveParams,
            n_ctx: info.contextLength,
            size: info.sizeBytes,
            is_demo: info.isDemo,
            ...(info.isDemo ? { description: DEMO_NOTE } : {}),
          },
        },
      ],
    });
  });

  app.post('/v1/chat/completions', async (c) => {
    const body = await readJson(c, ChatBody);
    checkCommon(body);
    const lease = await ctx.host.acquire();
    try {
      const { engine } = lease;
      checkModel(engine.info, body.model);
      let messages = chatMessages(body.messages);
      const rf = body.response_format;
      if (rf && rf.type !== 'text') messages = withJsonInstruction(messages, rf.type === 'json_schema' ? rf.json_schema.schema : undefined);
      const tools = offeredTools(body);
      const choice = body.tool_choice;
      if (tools.length > 0 && (choice === 'required' || typeof choice === 'object')) {
        messages = withSystemInstruction(messages, tools.length === 1 ? `You must call the function ${tools[0]!.function.name} now.` : 'You must call one of the functions now.');
      }
      // Constrained JSON output leaves no room for a <think> block: the template gets thinking off.
      const json = !rf || rf.type === 'text' ? undefined : rf.type === 'json_object' ? 'object' : jsonTopLevelOf(rf.json_schema.schema);
      const enableThinking = json === undefined && (body.chat_template_kwargs?.enable_thinking ?? true);
      const promptText = engine.applyChatTemplate(messages, { tools, addGenerationPrompt: true, enableThinking });
      const prompt = engine.tokenize(promptText, { addSpecial: true, parseSpecial: true });
      const field = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
      const base: GenerateRequest = {
        prompt,
        maxTokens: maxTokensFor(body.max_completion_tokens ?? body.max_tokens, prompt.length, engine.info.contextLength, field),
        sampling: samplingFrom(body),
        stop: stopList(body.stop),
        stopAtEog: true,
        ...(json ? { json } : {}),
      };
      const n = body.n ?? 1;
      const replies = startAll(engine, ctx, requestsFor(base, n), c.req.raw.signal, lease, {
        reasoning: body.reasoning_format === 'none' ? undefined : { promptText },
        tools: tools.length > 0,
      });
      const id = randomId('chatcmpl-');
      const model = engine.info.name;
      const created = nowSeconds();
      if (body.stream) {
        return sseResponse(releasing(chatChunks(replies, { id, model, created, includeUsage: body.stream_options?.include_usage ?? false }), lease), openaiErrorBody);
      }
      const done = await Promise.all(replies.map(collectReply)).finally(() => lease.release());
      done.forEach(throwIfFailed);
      return c.json({
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: `mixtile-${ctx.version}`,
        choices: done.map((r, index) => ({
          index,
          message: {
            role: 'assistant',
            content: r.toolCalls.length > 0 && !r.content ? null : r.content,
            ...(r.reasoning ? { reasoning_content: r.reasoning } : {}),
            ...(r.toolCalls.length > 0 ? { tool_calls: wireToolCalls(r.toolCalls) } : {}),
          },
          logprobs: null,
          finish_reason: wireFinish(r.reason),
        })),
        usage: usage(done),
        timings: llamaTimings(done[0]!.stats),
      });
    } catch (err) {
      lease.release();
      throw err;
    }
  });

  app.post('/v1/completions', async (c) => {
    const body = await readJson(c, CompletionBody);
    checkCommon(body);
    if (body.echo) throw new ApiError(400, 'not_supported_error', 'echo is not supported by this server', 'echo');
    const lease = await ctx.host.acquire();
    try {
      const { engine } = lease;
      checkModel(engine.info, body.model);
      // Control-token text such as <|im_start|> becomes its token, as in llama-server and `mixtile generate`.
      const prompt = typeof body.prompt === 'string' ? engine.tokenize(body.prompt, { addSpecial: true, parseSpecial: true }) : body.prompt;
      const base: GenerateRequest = {
        prompt,
        maxTokens: maxTokensFor(body.max_tokens, prompt.length, engine.info.contextLength, 'max_tokens'),
        sampling: samplingFrom(body),
        stop: stopList(body.stop),
        stopAtEog: true,
      };
      const replies = startAll(engine, ctx, requestsFor(base, body.n ?? 1), c.req.raw.signal, lease, { tools: false });
      const id = randomId('cmpl-');
      const model = engine.info.name;
      const created = nowSeconds();
      if (body.stream) {
        return sseResponse(releasing(completionChunks(replies, { id, model, created, includeUsage: body.stream_options?.include_usage ?? false }), lease), openaiErrorBody);
      }
      const done = await Promise.all(replies.map(collectReply)).finally(() => lease.release());
      done.forEach(throwIfFailed);
      return c.json({
        id,
        object: 'text_completion',
        created,
        model,
        system_fingerprint: `mixtile-${ctx.version}`,
        choices: done.map((r, index) => ({ index, text: r.content, logprobs: null, finish_reason: wireFinish(r.reason) })),
        usage: usage(done),
        timings: llamaTimings(done[0]!.stats),
      });
    } catch (err) {
      lease.release();
      throw err;
    }
  });

  return app;
}

export const DEMO_NOTE =
  'Built-in demo: a tiny Qwen3-MoE with RANDOM weights, so its output is meaningless text. Start `mixtile serve --model FILE.gguf` for a real model.';

interface StreamMeta {
  id: string;
  model: string;
  created: number;
  includeUsage: boolean;
}

/** Tags each choice's events with its index, so `n` streams can be merged. */
async function* indexed(replies: AsyncIterable<ReplyEvent>[]): AsyncGenerator<{ index: number; ev: ReplyEvent }> {
  yield* mergeStreams(
    replies.map(async function* (r, index) {
      for await (const ev of r) yield { index, ev };
    }),
  );
}

/** chat.completion.chunk objects: role first, then content / reasoning_content / tool_calls deltas, then finish. */
async function* chatChunks(replies: AsyncIterable<ReplyEvent>[], m: StreamMeta): AsyncGenerator<unknown> {
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({ id: m.id, object: 'chat.completion.chunk', created: m.created, model: m.model, choices, ...extra });
  const delta = (index: number, d: Record<string, unknown>, finish: string | null = null) => chunk([{ index, delta: d, logprobs: null, finish_reason: finish }]);
  for (let i = 0; i < replies.length; i++) yield delta(i, { role: 'assistant', content: '' });
  const finished: CollectedReply['stats'][] = [];
  for await (const { index, ev } of indexed(replies)) {
    switch (ev.type) {
      case 'content':
        yield delta(index, { content: ev.text });
        break;
      case 'reasoning':
        yield delta(index, { reasoning_content: ev.text });
        break;
      case 'tool_call':
        yield delta(index, { tool_calls: [{ index: ev.index, ...wireToolCalls([ev.call])[0]! }] });
        break;
      case 'done':
        if (ev.reason === 'error') throw new ApiError(500, 'server_error', `generation failed: ${ev.error ?? 'unknown engine error'}`);
        finished.push(ev.stats);
        yield { ...delta(index, {}, wireFinish(ev.reason)), timings: llamaTimings(ev.stats) };
        break;
    }
  }
  if (m.includeUsage && finished.length > 0) yield chunk([], { usage: usage(finished.map((stats) => ({ stats }))) });
}

/** text_completion chunks: text pieces, then each choice's finish_reason. */
async function* completionChunks(replies: AsyncIterable<ReplyEvent>[], m: StreamMeta): AsyncGenerator<unknown> {
  const chunk = (index: number, text: string, finish: string | null, extra: Record<string, unknown> = {}) => ({
    id: m.id,
    object: 'text_completion',
    created: m.created,
    model: m.model,
    choices: [{ index, text, logprobs: null, finish_reason: finish }],
    ...extra,
  });
  const finished: CollectedReply['stats'][] = [];
  for await (const { index, ev } of indexed(replies)) {
    if (ev.type === 'content') yield chunk(index, ev.text, null);
    else if (ev.type === 'done') {
      if (ev.reason === 'error') throw new ApiError(500, 'server_error', `generation failed: ${ev.error ?? 'unknown engine error'}`);
      finished.push(ev.stats);
      yield chunk(index, '', wireFinish(ev.reason), { timings: llamaTimings(ev.stats) });
    }
  }
  if (m.includeUsage && finished.length > 0) {
    yield { id: m.id, object: 'text_completion', created: m.created, model: m.model, choices: [], usage: usage(finished.map((stats) => ({ stats }))) };
  }
}
