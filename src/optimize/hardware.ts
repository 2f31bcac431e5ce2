// What this machine has for running a model: CPU matrix-unit features, cores, RAM, GPUs. Read from
// /proc and nvidia-smi; the AMX tile permission comes from the native addon's probe (isa.cc).
// Rules use it to check backends and devices; `mixtile doctor` prints it.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { cpus, totalmem, freemem } from 'node:os';
import type { ExpertBackend } from '../operators/registry.ts';
import { isaInfo, type IsaInfo, type IsaLevel } from '../native/isa.ts';

export interface CpuFlags {
  avx2: boolean;
  avx512f: boolean;
  avx512bw: boolean;
  avx512vl: boolean;
  avx512Vnni: boolean;
  avx512Bf16: boolean;
  amxTile: boolean;
  amxBf16: boolean;
  amxInt8: boolean;
}

/** Whether the kernel lets this process use AMX tiles (Linux arch_prctl ARCH_REQ_XCOMP_PERM). */
export type AmxPermission = 'granted' | 'denied' | 'not-needed' | 'unknown';

export interface GpuInfo {
  index: number;
  name: string;
  memoryTotalBytes: number;
  memoryFreeBytes: number;
}

export interface Hardware {
  cpu: {
    model: string;
    physicalCores: number;
    logicalCores: number;
    flags: CpuFlags;
    amxPermission: AmxPermission;
    /** Why amxPermission is what it is, e.g. "native addon not loadable: ...". */
    amxPermissionNote?: string;
    /** Kernel levels of the native addon (absent when it could not be loaded). */
    nativeIsa?: { detected: IsaLevel; active: IsaLevel; threads: number };
    /** Why the native addon could not be asked, when nativeIsa is absent. */
    nativeError?: string;
  };
  memory: { totalBytes: number; availableBytes: number };
  gpus: GpuInfo[];
  /** NVIDIA driver version, when nvidia-smi answered. */
  cudaDriver?: string;
  /** Why no GPU was found (nvidia-smi missing, failed, ...); absent when GPUs were found. */
  gpuNote?: string;
}

const NO_FLAGS: CpuFlags = {
  avx2: false,
  avx512f: false,
  avx512bw: false,
  avx512vl: false,
  avx512Vnni: false,
  avx512Bf16: false,
  amxTile: false,
  amxBf16: false,
  amxInt8: false,
};

/** Parses /proc/cpuinfo text: model, flags (of the first processor) and physical core count. */
export function parseCpuinfo(text: string): Pick<Hardware['cpu'], 'model' | 'physicalCores' | 'logicalCores' | 'flags'> {
  const blocks = text.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  const field = (block: string, name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim();
  const first = blocks[0] ?? '';
  const set = new Set((field(first, 'flags') ?? '').split(/\s+/));
  const cores = new Set<string>();
  for (const b of blocks) {
    const phys = field(b, 'physical id');
    const core = field(b, 'core id');
    if (phys !== undefined && core !== undefined) cores.add(`${phys}:${core}`);
  }
  return {
    model: field(first, 'model name') ?? 'unknown CPU',
    logicalCores: blocks.length,
    // VMs often omit core ids; then every logical CPU counts as a core.
    physicalCores: cores.size || blocks.length,
    flags: {
      avx2: set.has('avx2'),
      avx512f: set.has('avx512f'),
      avx512bw: set.has('avx512bw'),
      avx512vl: set.has('avx512vl'),
      avx512Vnni: set.has('avx512_vnni'),
      avx512Bf16: set.has('avx512_bf16'),
      amxTile: set.has('amx_tile'),
      amxBf16: set.has('amx_bf16'),
      amxInt8: set.has('amx_int8'),
    },
  };
}

/** Parses /proc/meminfo text (values in kB). */
export function parseMeminfo(text: string): Hardware['memory'] | undefined {
  const kb = (name: string) => {
    const m = new RegExp(`^${name}:\\s*(\\d+)\\s*kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kb('MemTotal');
  if (total === undefined) return undefined;
  return { totalBytes: total, availableBytes: kb('MemAvailable') ?? kb('MemFree') ?? 0 };
}

/** Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.free,driver_version --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(csv: string): { gpus: GpuInfo[]; driver?: string } {
  const gpus: GpuInfo[] = [];
  let driver: string | undefined;
  for (const line of csv.split('\n')) {
    const f = line.split(',').map((s) => s.trim());
    if (f.length < 5 || !/^\d+$/.test(f[0])) continue;
    const mib = (s: string) => (Number.isFinite(Number(s)) ? Number(s) * 1024 * 1024 : 0);
    gpus.push({ index: Number(f[0]), name: f[1], memoryTotalBytes: mib(f[2]), memoryFreeBytes: mib(f[3]) });
    driver = f[4];
  }
  return { gpus, driver };
}

function probeGpus(): Pick<Hardware, 'gpus' | 'cudaDriver' | 'gpuNote'> {
  const r = spawnSync('nvidia-smi', ['--query-gpu=index,name,memory.total,memory.free,driver_version', '--format=csv,noheader,nounits'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { gpus: [], gpuNote: code === 'ENOENT' ? 'nvidia-smi not found, so no NVIDIA driver is installed' : `nvidia-smi failed: ${r.error.message}` };
  }
  if (r.status !== 0) return { gpus: [], gpuNote: `nvidia-smi exited with ${r.status}: ${(r.stderr || r.stdout).trim().split('\n')[0]}` };
  const { gpus, driver } = parseNvidiaSmi(r.stdout);
  return gpus.length ? { gpus, cudaDriver: driver } : { gpus, gpuNote: 'nvidia-smi lists no GPU' };
}

/** The native addon's probe: the AMX tile permission (arch_prctl) and the kernel level it picked. */
function probeNative(flags: CpuFlags): Pick<Hardware['cpu'], 'amxPermission' | 'amxPermissionNote' | 'nativeIsa' | 'nativeError'> {
  let info: IsaInfo;
  try {
    info = isaInfo();
  } catch (e) {
    const nativeError = `native addon not loadable: ${(e as Error).message.split('\n')[0]}`;
    return flags.amxTile
      ? { amxPermission: 'unknown', amxPermissionNote: nativeError, nativeError }
      : { amxPermission: 'not-needed', amxPermissionNote: 'the CPU has no AMX', nativeError };
  }
  const nativeIsa = { detected: info.detected, active: info.active, threads: info.threads };
  if (!flags.amxTile) return { amxPermission: 'not-needed', amxPermissionNote: 'the CPU has no AMX', nativeIsa };
  return { amxPermission: info.amxTile ? 'granted' : 'denied', nativeIsa };
}

/** Probes this machine. Never throws: what cannot be read is reported as absent with a note. */
export function probeHardware(): Hardware {
  let cpu: Pick<Hardware['cpu'], 'model' | 'physicalCores' | 'logicalCores' | 'flags'>;
  try {
    cpu = parseCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    const list = cpus();
    cpu = { model: list[0]?.model ?? 'unknown CPU', physicalCores: list.length, logicalCores: list.length, flags: NO_FLAGS };
  }
  let memory: Hardware['memory'] | undefined;
  try {
    memory = parseMeminfo(readFileSync('/proc/meminfo', 'utf8'));
  } catch {
    memory = undefined;
  }
  return {
    cpu: { ...cpu, ...probeNative(cpu.flags) },
    memory: memory ?? { totalBytes: totalmem(), availableBytes: freemem() },
    ...probeGpus(),
  };
}

/** Whether an expert backend can run here; `missing` says what it needs, for messages. */
export function backendSupport(hw: Hardware, backend: Exclude<ExpertBackend, 'auto'>): { ok: true } | { ok: false; missing: string } {
  const f = hw.cpu.flags;
  const amxDenied = hw.cpu.amxPermission === 'denied' ? { ok: false as const, missing: 'AMX tile permission, which the kernel denied (Linux 5.16+ grants it on request)' } : undefined;
  switch (backend) {
    case 'AMXInt8':
    case 'AMXInt4': // 4-bit panels on AMX-INT8 tiles
      if (!(f.amxTile && f.amxInt8)) return { ok: false, missing: 'AMX-INT8' };
      return amxDenied ?? { ok: true };
    case 'AMXBF16':
      if (!(f.amxTile && f.amxBf16)) return { ok: false, missing: 'AMX-BF16' };
      return amxDenied ?? { ok: true };
    case 'AVX512':
      return f.avx512f && f.avx512bw && f.avx512vl ? { ok: true } : { ok: false, missing: 'AVX-512 F/BW/VL' };
    case 'llamafile':
    case 'generic':
      return { ok: true };
  }
}

/** The fastest expert backend this machine can run. */
export function bestBackend(hw: Hardware): Exclude<ExpertBackend, 'auto'> {
  for (const b of ['AMXInt8', 'AMXBF16', 'AVX512'] as const) if (backendSupport(hw, b).ok) return b;
  return 'generic';
}

/** The best matrix feature set of this CPU in words, for "this CPU has ..." messages. */
export function describeCpuFeatures(hw: Hardware): string {
  const f = hw.cpu.flags;
  if (f.amxInt8 || f.amxBf16) return `AMX (${[f.amxInt8 && 'INT8', f.amxBf16 && 'BF16'].filter(Boolean).join(', ')})`;
  if (f.avx512f) return `AVX-512 ${[f.avx512Bf16 && 'BF16', f.avx512Vnni && 'VNNI'].filter(Boolean).join(' ')}`.trim();
  if (f.avx2) return 'AVX2';
  return 'no vector extensions we use';
}

/** The shipped preset `loadRules` should use on this machine, and why. */
export function defaultPreset(hw: Hardware): { preset: 'cpu' | 'qwen3moe-hybrid' | 'qwen3moe-hybrid-amx'; reason: string } {
  if (hw.gpus.length === 0) return { preset: 'cpu', reason: `no GPU (${hw.gpuNote ?? 'none found'}): everything runs on the CPU` };
  if (backendSupport(hw, 'AMXInt8').ok) return { preset: 'qwen3moe-hybrid-amx', reason: 'GPU and AMX-INT8: experts on AMX, the rest on the GPU' };
  return { preset: 'qwen3moe-hybrid', reason: `GPU without AMX-INT8: experts on ${describeCpuFeatures(hw)}, the rest on the GPU` };
}
