// llama.cpp itself (node-llama-cpp's prebuilt CPU binary) accepts what synth writes: its GGUF
// parser reads the file, its loader maps every tensor, and it generates from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthModel } from '../../src/model/synth.ts';

const dir = mkdtempSync(join(tmpdir(), 'mixtile-llamacpp-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

type NodeLlamaCpp = typeof import('node-llama-cpp');
let nlc: NodeLlamaCpp | undefined;
let skip: string | false = false;
try {
  nlc = await import('node-llama-cpp');
} catch (e) {
  skip = `node-llama-cpp not installed (${(e as Error).message.split('\n')[0]})`;
}

test('llama.cpp reads, loads and runs synth tiny models (BF16, Q4_K_M)', { skip, timeout: 300_000 }, async (t) => {
  let llama;
  try {
    llama = await nlc!.getLlama({ gpu: false, build: 'never', logLevel: nlc!.LlamaLogLevel.error });
  } catch (e) {
    t.skip(`no usable prebuilt llama.cpp binary: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  try {
    for (const fileType of ['BF16', 'Q4_K_M']) {
      const out = join(dir, `tiny-${fileType}.gguf`);
      await synthModel({ preset: 'tiny', out, layers: 1, fileType, seed: 3 });
      const info = await nlc!.readGgufFileInfo(out);
      assert.equal(info.metadata.general.architecture, 'qwen3moe');
      assert.equal(info.fullTensorInfo?.length, 15);
      const model = await llama.loadModel({ modelPath: out });
      try {
        assert.deepEqual(model.tokenize('Hello world'), [9707, 1879], `${fileType}: Qwen3 token ids`);
        const ctx = await model.createContext({ contextSize: 128 });
        const completion = new nlc!.LlamaCompletion({ contextSequence: ctx.getSequence() });
        const text = await completion.generateCompletion('Hello world', { maxTokens: 4, temperature: 0 });
        assert.ok(text.length > 0, `${fileType}: generated some text`);
        await ctx.dispose();
      } finally {
        await model.dispose();
      }
    }
  } finally {
    await llama.dispose();
  }
});
