// The Qwen3 tokenizer metadata survives a GGUF write + read with the types llama.cpp uses, and the
// tokenizer built from the file read back encodes like the one built from memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgufWriter } from '../../src/formats/gguf-write.ts';
import { readGguf, GGUFValueType } from '../../src/formats/gguf-read.ts';
import { qwen3TokenizerMetadata, QWEN3_TOKENIZER_GGUF_TYPES } from '../../src/tokenizer/qwen3-vocab.ts';
import { Tokenizer } from '../../src/tokenizer/tokenizer.ts';

test('tokenizer metadata round-trips through a GGUF file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mixtile-tok-'));
  try {
    const path = join(dir, 'tok.gguf');
    const w = new GgufWriter(path);
    w.setMeta('general.architecture', 'qwen3moe');
    for (const [key, value] of qwen3TokenizerMetadata()) {
      const t = QWEN3_TOKENIZER_GGUF_TYPES[key].replace(/^ARRAY<(.*)>$/, '$1') as keyof typeof GGUFValueType;
      w.setMeta(key, value, GGUFValueType[t]);
    }
    await w.begin();
    await w.close();
    const model = await readGguf(path);
    for (const [key, t] of Object.entries(QWEN3_TOKENIZER_GGUF_TYPES)) {
      const stored = model.metadataTypes.get(key)!;
      const want = t.startsWith('ARRAY<') ? `ARRAY<${GGUFValueType[stored.itemType!]}>` : GGUFValueType[stored.type];
      assert.equal(want, t, key);
    }
    const fromFile = Tokenizer.fromGguf(model.metadata);
    const fromMemory = Tokenizer.fromGguf(qwen3TokenizerMetadata() as Map<string, unknown>);
    const text = '<|im_start|>user\nПривет, 世界! 🦩 x=42<|im_end|>';
    assert.deepEqual(fromFile.encode(text), fromMemory.encode(text));
    assert.deepEqual([...fromFile.eogIds], [...fromMemory.eogIds]);
    assert.equal(fromFile.chatTemplate, fromMemory.chatTemplate);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
