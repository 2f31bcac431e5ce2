// One entry point for a model's header, whatever its format: a GGUF file (or the first part of a
// split set) or a Hugging Face folder. Tensor data stays unread; loaders map it (src/model/load.ts).
import { stat } from 'node:fs/promises';
import { FormatError } from './errors.ts';
import { readGguf, type GgufModel } from './gguf-read.ts';
import { openHfModel } from './hf-model.ts';

/**
 * The model at `path` as a GgufModel: a folder is read as a Hugging Face checkpoint (config.json,
 * safetensors, tokenizer files; see hf-model.ts), anything else as GGUF.
 * Example: `const m = await openModel('./Qwen3-30B-A3B/')`.
 */
export async function openModel(path: string): Promise<GgufModel> {
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new FormatError(`${path}: cannot open the model (${e.code ?? e.message}); expected a GGUF file or a Hugging Face model folder`, { file: path });
  });
  return st.isDirectory() ? openHfModel(path) : readGguf(path);
}
