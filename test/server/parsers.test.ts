// The incremental output parsers (reasoning.ts, tool-calls.ts) on recorded Qwen3 outputs: the events
// must be the same whether the text comes whole or split at every possible place (and token by token).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReasoningParser } from '../../src/server/reasoning.ts';
import { ToolCallParser } from '../../src/server/tool-calls.ts';

type Ev = { type: string; text?: string; call?: unknown };

/** Adjacent text events of one type joined, so split points do not change the comparison. */
function merged(events: Ev[]): Ev[] {
  const out: Ev[] = [];
  for (const e of events) {
    const last = out.at(-1);
    if (e.text !== undefined && last && last.type === e.type && last.text !== undefined) last.text += e.text;
    else out.push({ ...e });
  }
  return out;
}

interface Parser {
  push(t: string): Ev[];
  end(): Ev[];
}

function run(make: () => Parser, pieces: string[]): Ev[] {
  const p = make();
  const evs: Ev[] = [];
  for (const x of pieces) evs.push(...p.push(x));
  evs.push(...p.end());
  return merged(evs);
}

/** Whole, every 2-way split, every 3-way split (for short texts), and character by character. */
function checkSplits(make: () => Parser, text: string, expected: Ev[]): void {
  assert.deepEqual(run(make, [text]), expected, 'whole text');
  for (let i = 0; i <= text.length; i++) {
    assert.deepEqual(run(make, [text.slice(0, i), text.slice(i)]), expected, `split at ${i}`);
  }
  if (text.length <= 160) {
    for (let i = 0; i <= text.length; i++)
      for (let j = i; j <= text.length; j++)
        assert.deepEqual(run(make, [text.slice(0, i), text.slice(i, j), text.slice(j)]), expected, `split at ${i}, ${j}`);
  }
  assert.deepEqual(run(make, [...text]), expected, 'char by char');
}

// Outputs as Qwen3 writes them after `<|im_start|>assistant\n` (thinking on, thinking off, tools).
const THINKING = '<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help you today?';
const NO_THINK = 'Hello! How can I help you today?';
const EMPTY_THINK = '<think>\n\n</think>\n\nParis.';
const UNCLOSED = '<think>\nLet me count: 1, 2, 3';
const TOOL_ONE =
  '<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA, USA", "unit": "celsius"}}\n</tool_call>';
const TOOL_TWO =
  'Let me check both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>';
const TOOL_BAD = '<tool_call>\n{"name": "f", "arguments": {"x": 1}\n</tool_call>';

test('reasoning: think block, then answer', () => {
  checkSplits(() => new ReasoningParser(), THINKING, [
    { type: 'reasoning', text: 'The user greets me. I should greet back.' },
    { type: 'content', text: 'Hello! How can I help you today?' },
  ]);
});

test('reasoning: plain answer and an empty think block', () => {
  checkSplits(() => new ReasoningParser(), NO_THINK, [{ type: 'content', text: NO_THINK }]);
  checkSplits(() => new ReasoningParser(), EMPTY_THINK, [{ type: 'content', text: 'Paris.' }]);
  checkSplits(() => new ReasoningParser(), '<thin', [{ type: 'content', text: '<thin' }]);
  checkSplits(() => new ReasoningParser(), 'a <think>b</think>', [{ type: 'content', text: 'a <think>b</think>' }]);
});

test('reasoning: unclosed block (max_tokens) and a prompt that opened the block', () => {
  checkSplits(() => new ReasoningParser(), UNCLOSED, [{ type: 'reasoning', text: 'Let me count: 1, 2, 3' }]);
  checkSplits(() => new ReasoningParser({ startInReasoning: true }), '\nhmm\n</think>\n\nok', [
    { type: 'reasoning', text: 'hmm' },
    { type: 'content', text: 'ok' },
  ]);
});

test('tool calls: one call, nothing else', () => {
  checkSplits(() => new ToolCallParser(), TOOL_ONE, [
    { type: 'tool_call', call: { name: 'get_current_temperature', arguments: { location: 'San Francisco, CA, USA', unit: 'celsius' } } },
  ]);
});

test('tool calls: text then two calls', () => {
  checkSplits(() => new ToolCallParser(), TOOL_TWO, [
    { type: 'content', text: 'Let me check both.' },
    { type: 'tool_call', call: { name: 'get_weather', arguments: { city: 'Paris' } } },
    { type: 'tool_call', call: { name: 'get_weather', arguments: { city: 'Rome' } } },
  ]);
});

test('tool calls: broken JSON stays content; plain text passes through', () => {
  checkSplits(() => new ToolCallParser(), TOOL_BAD, [{ type: 'content', text: TOOL_BAD }]);
  checkSplits(() => new ToolCallParser(), 'No tools needed.\n', [{ type: 'content', text: 'No tools needed.\n' }]);
  checkSplits(() => new ToolCallParser(), 'a < b <tool', [{ type: 'content', text: 'a < b <tool' }]);
});

test('reasoning then tool calls, chained as the server does', () => {
  const text = '<think>\nI need the weather tool.\n</think>\n\n' + TOOL_ONE;
  const make = (): Parser => {
    const r = new ReasoningParser();
    const t = new ToolCallParser();
    const route = (evs: Ev[]): Ev[] => evs.flatMap((e): Ev[] => (e.type === 'content' ? t.push(e.text!) : [e]));
    return { push: (x) => route(r.push(x)), end: () => [...route(r.end()), ...t.end()] };
  };
  checkSplits(make, text, [
    { type: 'reasoning', text: 'I need the weather tool.' },
    { type: 'tool_call', call: { name: 'get_current_temperature', arguments: { location: 'San Francisco, CA, USA', unit: 'celsius' } } },
  ]);
});
