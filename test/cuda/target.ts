// Which CUDA library a test runs the GPU code on, and why it skips where it cannot run. On a machine with a
// GPU driver the real libmixtile-cuda.so beside the addon; elsewhere (CI) libmixtile-cuda-host.so, the CPU
// stand-in with the same C ABI that `npm run build:native` builds with the addon. MIXTILE_CUDA_LIB picks either.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaInfo } from '../../src/native/cuda.ts';

export const ADDON = process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));
export const STAND_IN = join(dirname(ADDON), 'libmixtile-cuda-host.so');
export const noAddon: string | false = existsSync(ADDON) ? false : `native addon not built (${ADDON})`;
const standInMissing = `${STAND_IN} not built (npm run build:native builds it with the addon)`;

/** For tests that run a CLI on the stand-in (MIXTILE_CUDA_LIB: STAND_IN in its environment): why they cannot, or false. */
export const standInSkip: string | false = noAddon || (existsSync(STAND_IN) ? false : standInMissing);

/** In-process tests of the GPU path: MIXTILE_CUDA_LIB if set, else the real library where a GPU driver exists, else
 * the stand-in (put in MIXTILE_CUDA_LIB, so the engine loads it too). Why the test cannot run, or false. */
export function gpuSkip(): string | false {
  if (noAddon) return noAddon;
  if (!process.env.MIXTILE_CUDA_LIB && !onGpuMachine() && existsSync(STAND_IN)) process.env.MIXTILE_CUDA_LIB = STAND_IN;
  const info = cudaInfo(process.env.MIXTILE_CUDA_LIB);
  return info.available ? false : `no GPU and no CUDA stand-in: ${info.reason}`;
}

/** Whether a GPU driver is present (the real library is then the default). */
export function onGpuMachine(): boolean {
  return existsSync('/dev/nvidiactl');
}

/** Native operator tests that take the stand-in even on a GPU machine unless MIXTILE_CUDA_LIB names a library:
 * why they cannot run, or false. */
export function standInUnlessSet(): string | false {
  if (!process.env.MIXTILE_CUDA_LIB && existsSync(STAND_IN)) process.env.MIXTILE_CUDA_LIB = STAND_IN;
  return process.env.MIXTILE_CUDA_LIB ? false : standInMissing;
}
