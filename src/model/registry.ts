// The architectures Mixtile runs, by GGUF general.architecture and by HF class name.
import type { Architecture } from './architecture.ts';
import { QWEN3 } from './qwen3.ts';
import { QWEN3MOE } from './qwen3moe.ts';

const ARCHITECTURES: readonly Architecture[] = [QWEN3MOE, QWEN3];

/** The architecture for a GGUF general.architecture or HF class name; throws listing the supported ones. */
export function architectureFor(name: string, where = 'model'): Architecture {
  const a = ARCHITECTURES.find((x) => x.ggufName === name || x.hfClass === name);
  if (!a) {
    const known = ARCHITECTURES.map((x) => `${x.ggufName} (${x.hfClass})`).join(', ');
    throw new Error(`${where}: unsupported architecture "${name}"; supported: ${known}`);
  }
  return a;
}

export function supportedArchitectures(): readonly Architecture[] {
  return ARCHITECTURES;
}
