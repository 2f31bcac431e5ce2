// Turns a hardware probe into what `mixtile doctor` reports: each capability found or missing with
// how to fix it, which expert backends can run, and the preset loading will pick.
import { EXPERT_BACKENDS, type ExpertBackend } from '../operators/registry.ts';
import { backendSupport, defaultPreset, type Hardware } from './hardware.ts';
import { presetPath } from './rules.ts';

export interface Check {
  /** Short id for scripts: cpu.avx512, cpu.amx, cpu.amx-permission, native, memory, gpu. */
  id: string;
  ok: boolean;
  /** What was found, in words. */
  found: string;
  /** What to do about it; absent when ok. */
  fix?: string;
}

export interface Diagnosis {
  hardware: Hardware;
  checks: Check[];
  backends: Record<Exclude<ExpertBackend, 'auto'>, { ok: boolean; missing?: string }>;
  preset: { name: string; reason: string; path: string };
}

const GIB = 2 ** 30;
const gib = (b: number) => `${(b / GIB).toFixed(1)} GiB`;

/** Everything doctor prints, computed from a probe (so it is testable with a made-up machine). */
export function diagnose(hw: Hardware): Diagnosis {
  const f = hw.cpu.flags;
  const checks: Check[] = [];
  const avx512 = [f.avx512f && 'F', f.avx512bw && 'BW', f.avx512vl && 'VL', f.avx512Vnni && 'VNNI', f.avx512Bf16 && 'BF16'].filter(Boolean);
  checks.push({
    id: 'cpu.avx512',
    ok: f.avx512f && f.avx512bw && f.avx512vl,
    found: avx512.length ? `AVX-512 ${avx512.join('/')}` : f.avx2 ? 'AVX2 only, no AVX-512' : 'neither AVX2 nor AVX-512',
    fix: 'experts run on the generic kernels, several times slower; AVX-512 needs Intel Skylake-SP / Ice Lake or newer, or AMD Zen 4 or newer',
  });
  const amx = [f.amxTile && 'TILE', f.amxInt8 && 'INT8', f.amxBf16 && 'BF16'].filter(Boolean);
  checks.push({
    id: 'cpu.amx',
    ok: f.amxTile && f.amxInt8 && f.amxBf16,
    found: amx.length ? `AMX ${amx.join('/')}` : 'AMX not reported',
    fix: 'AMX needs Intel Xeon 4th gen (Sapphire Rapids) or newer with AMX enabled in the BIOS; in a VM the hypervisor must pass it through',
  });
  if (f.amxTile) {
    const p = hw.cpu.amxPermission;
    checks.push({
      id: 'cpu.amx-permission',
      ok: p === 'granted',
      found: p === 'granted' ? 'the kernel granted AMX tile state (arch_prctl)' : `AMX tile permission ${p}${hw.cpu.amxPermissionNote ? `: ${hw.cpu.amxPermissionNote}` : ''}`,
      fix: p === 'denied' ? 'Linux 5.16 or newer is needed for AMX (arch_prctl ARCH_REQ_XCOMP_PERM); upgrade the kernel' : 'build the native addon ("npm run build:native") so the permission can be checked',
    });
  }
  checks.push(
    hw.cpu.nativeIsa
      ? { id: 'native', ok: true, found: `native kernels at ${hw.cpu.nativeIsa.active} (CPU supports ${hw.cpu.nativeIsa.detected}), ${hw.cpu.nativeIsa.threads} threads` }
      : { id: 'native', ok: false, found: hw.cpu.nativeError ?? 'native addon not loadable', fix: 'run "npm install" or "npm run build:native" (needs cmake and a C++17 compiler)' },
  );
  checks.push({
    id: 'memory',
    ok: hw.memory.totalBytes >= 16 * GIB,
    found: `${gib(hw.memory.totalBytes)} RAM, ${gib(hw.memory.availableBytes)} available`,
    fix: 'expert weights live in RAM: Qwen3-30B-A3B at Q4_K_M needs about 20 GiB, Qwen3-235B-A22B about 140 GiB',
  });
  checks.push(
    hw.gpus.length > 0
      ? { id: 'gpu', ok: true, found: hw.gpus.map((g) => `cuda:${g.index} ${g.name}, ${gib(g.memoryTotalBytes)} (${gib(g.memoryFreeBytes)} free)`).join('; ') + (hw.cudaDriver ? `; driver ${hw.cudaDriver}` : '') }
      : { id: 'gpu', ok: false, found: `no GPU: ${hw.gpuNote ?? 'none found'}`, fix: 'everything runs on the CPU; for attention on a GPU install an NVIDIA GPU with its driver (nvidia-smi must work)' },
  );
  for (const c of checks) if (c.ok) delete c.fix;

  const backends = {} as Diagnosis['backends'];
  for (const b of EXPERT_BACKENDS) {
    if (b === 'auto') continue;
    const s = backendSupport(hw, b);
    backends[b] = s.ok ? { ok: true } : { ok: false, missing: s.missing };
  }
  const { preset, reason } = defaultPreset(hw);
  return { hardware: hw, checks, backends, preset: { name: preset, reason, path: presetPath(preset) } };
}
