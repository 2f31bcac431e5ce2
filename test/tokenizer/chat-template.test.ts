// The Qwen3 chat template (as stored in our GGUFs) renders the exact prompts Qwen3 was trained on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatTemplate, ChatTemplateError } from '../../src/tokenizer/chat-template.ts';
import { qwen3TokenizerMetadata } from '../../src/tokenizer/qwen3-vocab.ts';
import type { ChatMessage, ChatTool } from '../../src/engine/types.ts';

const qwen3 = new ChatTemplate(qwen3TokenizerMetadata().get('tokenizer.chat_template') as string);
const on = { addGenerationPrompt: true, enableThinking: true };
const off = { addGenerationPrompt: true, enableThinking: false };

test('single turn, thinking on and off', () => {
  const msgs: ChatMessage[] = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Hi' },
  ];
  const base = '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
  assert.equal(qwen3.render(msgs, on), base);
  assert.equal(qwen3.render(msgs, off), base + '<think>\n\n</think>\n\n');
  assert.equal(qwen3.render(msgs, { addGenerationPrompt: false, enableThinking: true }), base.slice(0, -'<|im_start|>assistant\n'.length));
});

test('multi-turn: reasoning of earlier turns is dropped, reasoningContent or inline <think> alike', () => {
  const msgs: ChatMessage[] = [
    { role: 'user', content: 'What is 2+2?' },
    { role: 'assistant', content: '4', reasoningContent: 'Add them.' },
    { role: 'user', content: 'And 3+3?' },
    { role: 'assistant', content: '<think>\nAdd again.\n</think>\n\n6' },
    { role: 'user', content: 'Thanks' },
  ];
  assert.equal(
    qwen3.render(msgs, on),
    '<|im_start|>user\nWhat is 2+2?<|im_end|>\n' +
      '<|im_start|>assistant\n4<|im_end|>\n' +
      '<|im_start|>user\nAnd 3+3?<|im_end|>\n' +
      '<|im_start|>assistant\n6<|im_end|>\n' +
      '<|im_start|>user\nThanks<|im_end|>\n' +
      '<|im_start|>assistant\n',
  );
});

test('an assistant turn after the last user message keeps its reasoning', () => {
  const msgs: ChatMessage[] = [
    { role: 'user', content: 'Q' },
    { role: 'assistant', content: 'A', reasoningContent: '\nWhy.\n' },
  ];
  assert.equal(qwen3.render(msgs, { addGenerationPrompt: false, enableThinking: true }), '<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nWhy.\n</think>\n\nA<|im_end|>\n');
});

test('tools, a tool call and its result', () => {
  const tools: ChatTool[] = [
    {
      type: 'function',
      function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
    },
  ];
  const msgs: ChatMessage[] = [
    { role: 'system', content: 'Be helpful.' },
    { role: 'user', content: 'Weather in Zürich?' },
    { role: 'assistant', content: 'Let me check.', toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: { city: 'Zürich' } }] },
    { role: 'tool', content: '{"temp": 21}', toolCallId: 'call_1' },
    { role: 'tool', content: 'sunny' },
  ];
  const expected =
    '<|im_start|>system\nBe helpful.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
    'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n' +
    '</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
    '<|im_start|>user\nWeather in Zürich?<|im_end|>\n' +
    '<|im_start|>assistant\nLet me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call><|im_end|>\n' +
    '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n' +
    '<|im_start|>assistant\n<think>\n\n</think>\n\n';
  assert.equal(qwen3.render(msgs, { ...off, tools }), expected);
  // An empty tool list is no tools: the plain system prompt comes back.
  assert.match(qwen3.render(msgs.slice(0, 2), { ...on, tools: [] }), /^<\|im_start\|>system\nBe helpful\.<\|im_end\|>\n/);
});

test('template errors name the template and the cause', () => {
  assert.throws(() => new ChatTemplate('{% if %}'), (e: unknown) => e instanceof ChatTemplateError && /does not parse/.test(e.message));
  const t = new ChatTemplate('{{ raise_exception("no system role") }}');
  assert.throws(() => t.render([{ role: 'user', content: 'x' }], on), /rendering 1 messages failed/);
});
