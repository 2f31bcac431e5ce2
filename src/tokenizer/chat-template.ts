// Renders a conversation into a prompt with the model's Jinja chat template (tokenizer.chat_template),
// run by @huggingface/jinja. Our camelCase messages become the HF/OpenAI field names templates read.
import { Template } from '@huggingface/jinja';
import type { ChatMessage, ChatTemplateOptions } from '../engine/types.ts';

/** A template that does not parse or fails while rendering; the message names the template and the cause. */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
}

/** Special-token strings some templates print (`{{ bos_token }}`); Qwen3's uses none. */
export interface ChatTemplateTokens {
  bosToken?: string;
  eosToken?: string;
}

/** The message shape HF chat templates expect (transformers apply_chat_template). */
function toTemplateMessage(m: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role, content: m.content };
  if (m.reasoningContent !== undefined) out.reasoning_content = m.reasoningContent;
  if (m.toolCalls?.length) {
    out.tool_calls = m.toolCalls.map((c) => ({
      ...(c.id !== undefined ? { id: c.id } : {}),
      type: 'function',
      function: { name: c.name, arguments: c.arguments },
    }));
  }
  if (m.toolCallId !== undefined) out.tool_call_id = m.toolCallId;
  if (m.name !== undefined) out.name = m.name;
  return out;
}

/** A parsed chat template. Example: `new ChatTemplate(tokenizer.chatTemplate!).render(msgs, opts)`. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    private readonly tokens: ChatTemplateTokens = {},
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ChatTemplateError(`chat template (${source.length} chars, starting ${JSON.stringify(source.slice(0, 40))}): does not parse: ${(e as Error).message}`);
    }
  }

  /** The prompt text for `messages`; with addGenerationPrompt it ends where the assistant's reply starts. */
  render(messages: ChatMessage[], opts: ChatTemplateOptions): string {
    try {
      return this.template.render({
        messages: messages.map(toTemplateMessage),
        // Templates test `{% if tools %}`; an empty list must read as no tools.
        tools: opts.tools?.length ? opts.tools : undefined,
        add_generation_prompt: opts.addGenerationPrompt,
        enable_thinking: opts.enableThinking,
        bos_token: this.tokens.bosToken ?? '',
        eos_token: this.tokens.eosToken ?? '',
      });
    } catch (e) {
      throw new ChatTemplateError(`chat template: rendering ${messages.length} messages failed: ${(e as Error).message}`);
    }
  }
}
