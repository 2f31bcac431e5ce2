// The GPU as the addon sees it: whether libmixtile-cuda.so could be loaded and which devices it finds.
// The library is dlopened by the addon (native/src/cuda-loader-napi.cc) only when asked, so a machine
// without CUDA never loads it; GPU operators themselves are wired in by operators/ (issue 9).
import { addon } from './addon.ts';

export interface CudaDevice {
  name: string;
  vramBytes: number;
  freeBytes: number;
  /** Compute capability, "major.minor" ("9.0" for an H100). */
  cc: string;
  multiprocessors: number;
}

export interface CudaInfo {
  available: boolean;
  /** Why CUDA is not usable here (no library built, no driver, no device ...), when `available` is false. */
  reason?: string;
  /** Path of the loaded libmixtile-cuda.so. */
  library?: string;
  /** CUDA versions as 1000 * major + 10 * minor; driver 0 = no driver. */
  driverVersion?: number;
  runtimeVersion?: number;
  /** Whether the library was built with cuBLAS (GEMMs on the GPU). */
  cublas?: boolean;
  devices: CudaDevice[];
}

let cached: CudaInfo | undefined;

/**
 * Probes CUDA once per process (free VRAM is read at that moment) and never throws: a missing addon,
 * library, driver or device comes back as `{ available: false, reason }`.
 * `libPath` (or MIXTILE_CUDA_LIB) replaces the default libmixtile-cuda.so beside the addon; it only
 * counts on the first call, which decides for the process.
 */
export function cudaInfo(libPath?: string): CudaInfo {
  if (cached) return cached;
  let raw: unknown;
  try {
    const fn = addon().cudaInfo;
    if (typeof fn !== 'function') {
      cached = { available: false, reason: 'the native addon has no CUDA loader (rebuild: npm run build:native)', devices: [] };
      return cached;
    }
    raw = libPath === undefined ? fn() : fn(libPath);
  } catch (e) {
    cached = { available: false, reason: `native addon unavailable: ${(e as Error).message}`, devices: [] };
    return cached;
  }
  cached = requireAmpere(raw as CudaInfo);
  return cached;
}

/** Compute capability the kernels are built for (bf16 tensor cores: Ampere, sm_80, and newer). */
export const CUDA_MIN_CC = 8.0;

// A device below CUDA_MIN_CC has no kernel image in the library: report it as unavailable, with why.
function requireAmpere(info: CudaInfo): CudaInfo {
  if (!info.available) return info;
  const old = info.devices.filter((d) => Number(d.cc) < CUDA_MIN_CC);
  if (old.length === 0 || old.length < info.devices.length) return info;
  const list = old.map((d) => `${d.name} (cc ${d.cc})`).join(', ');
  return {
    ...info,
    available: false,
    reason: `no CUDA device with compute capability ${CUDA_MIN_CC.toFixed(1)} or newer (found ${list}); the GPU kernels need bf16 tensor cores`,
  };
}

/** Human-readable one-liner for doctor / logs: the devices, or why there are none. */
export function describeCuda(info: CudaInfo = cudaInfo()): string {
  if (!info.available) return `CUDA unavailable: ${info.reason ?? 'unknown reason'}`;
  const gib = (b: number): string => (b / 2 ** 30).toFixed(1);
  const devs = info.devices.map(
    (d, i) => `cuda:${i} ${d.name} (cc ${d.cc}, ${gib(d.vramBytes)} GiB, ${gib(d.freeBytes)} GiB free)`,
  );
  const blas = info.cublas ? '' : '; built without cuBLAS (no GPU GEMMs)';
  return `CUDA ${devs.join(', ')}${blas}`;
}
