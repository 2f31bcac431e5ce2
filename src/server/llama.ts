// llama-server's utility routes: GET /health, GET /metrics, POST /tokenize, /detokenize, /apply-template.
import { Hono } from 'hono';
import { z } from 'zod';
import { ApiError, badRequest } from './errors.ts';
import { chatMessages, ChatMessageSchema, ToolSchema } from './openai.ts';
import { readJson, type ServerContext } from './request.ts';

const TokenizeBody = z.object({
  content: z.string(),
  add_special: z.boolean().optional(),
  parse_special: z.boolean().optional(),
  with_pieces: z.boolean().optional(),
});
const DetokenizeBody = z.object({ tokens: z.array(z.int().min(0)) });
const ApplyTemplateBody = z.object({
  messages: z.array(ChatMessageSchema).min(1),
  tools: z.array(ToolSchema).optional(),
  chat_template_kwargs: z.object({ enable_thinking: z.boolean().optional() }).loose().optional(),
});

export function llamaRoutes(ctx: ServerContext): Hono {
  const app = new Hono();
  const host = ctx.host;

  // Answered from the event loop alone (the model runs in a worker), so it stays fast during prefill.
  app.get('/health', (c) => {
    if (host.state === 'loading' && !host.info) throw new ApiError(503, 'unavailable_error', 'Loading model');
    if (host.state === 'failed') throw new ApiError(503, 'unavailable_error', `the model failed to load: ${host.loadError?.message}`);
    return c.json({ status: 'ok', ...(host.state === 'unloaded' ? { model: 'unloaded' } : {}) });
  });

  app.get('/metrics', async (c) => {
    return c.text(await ctx.metrics.registry.metrics(), 200, { 'content-type': ctx.metrics.registry.contentType });
  });

  app.post('/tokenize', async (c) => {
    const body = await readJson(c, TokenizeBody);
    const engine = host.loaded();
    const ids = engine.tokenize(body.content, { addSpecial: body.add_special ?? false, parseSpecial: body.parse_special ?? true });
    return c.json({ tokens: body.with_pieces ? ids.map((id) => ({ id, piece: engine.detokenize([id]) })) : ids });
  });

  app.post('/detokenize', async (c) => {
    const body = await readJson(c, DetokenizeBody);
    try {
      return c.json({ content: host.loaded().detokenize(body.tokens) });
    } catch (err) {
      // The tokenizer names the id that is out of range.
      if (err instanceof RangeError) throw badRequest(`tokens: ${err.message}`, 'tokens');
      throw err;
    }
  });

  app.post('/apply-template', async (c) => {
    const body = await readJson(c, ApplyTemplateBody);
    const engine = host.loaded();
    const prompt = engine.applyChatTemplate(chatMessages(body.messages), {
      tools: body.tools,
      addGenerationPrompt: true,
      enableThinking: body.chat_template_kwargs?.enable_thinking ?? true,
    });
    return c.json({ prompt });
  });

  return app;
}
