// `mixtile doctor`: what this machine has for running MoE models (CPU matrix units, AMX
// permission, RAM, GPU and whether the CUDA library can use it), what is missing and how to fix it,
// and the placement generate / serve / chat / bench take when no --optimize-config is given.
import type { Command } from 'commander';
import { cudaInfo, describeCuda, type CudaInfo } from '../native/cuda.ts';
import { diagnose, type Check, type Diagnosis } from '../optimize/diagnose.ts';
import { backendSupport, probeHardware, type Hardware } from '../optimize/hardware.ts';
import { presetPath } from '../optimize/rules.ts';
import { defaultRules } from './engine-flags.ts';

/** diagnose() with the engine's own view: the CUDA library's devices and the preset it loads (defaultRules). */
export interface DoctorReport extends Diagnosis {
  cuda: { available: boolean; summary: string };
}

/** What `auto` gives the routed experts here (native experts_load: AMX where the CPU and kernel allow it). */
function autoExpertsHere(hw: Hardware): string {
  if (backendSupport(hw, 'AMXInt8').ok) return 'AMX-INT8 for quantized weights, AMX-BF16 for BF16';
  if (backendSupport(hw, 'AVX512').ok) return 'AVX-512';
  return hw.cpu.flags.avx2 ? 'AVX2' : 'the generic kernels';
}

export function doctorReport(hw: Hardware, cuda: CudaInfo): DoctorReport {
  const d = diagnose(hw);
  const summary = describeCuda(cuda);
  const check: Check = cuda.available
    ? { id: 'cuda', ok: true, found: summary }
    : {
        id: 'cuda',
        ok: false,
        found: summary,
        fix:
          hw.gpus.length > 0
            ? 'the GPU is there but Mixtile cannot use it: build libmixtile-cuda.so beside the addon (needs nvcc; npm run build:native) and check the driver'
            : 'everything runs on the CPU',
      };
  const engine = defaultRules(cuda);
  const preset = {
    name: engine.preset,
    reason: `${engine.reason}; experts backend auto: ${autoExpertsHere(hw)}`,
    path: presetPath(engine.preset),
  };
  return { ...d, checks: [...d.checks, check], cuda: { available: cuda.available, summary }, preset };
}

function printText(d: DoctorReport): void {
  const cpu = d.hardware.cpu;
  const out: string[] = [`CPU     ${cpu.model} (${cpu.physicalCores} cores, ${cpu.logicalCores} threads)`];
  for (const c of d.checks) {
    out.push(`${c.ok ? '  ok     ' : '  missing'} ${c.found}`);
    if (c.fix) out.push(`          fix: ${c.fix}`);
  }
  const backends = Object.entries(d.backends).map(([name, b]) => (b.ok ? `${name} yes` : `${name} no (needs ${b.missing})`));
  out.push(`Experts backends: ${backends.join(', ')}`);
  out.push(`Preset  ${d.preset.name}: ${d.preset.reason}`);
  out.push(`        ${d.preset.path}: what generate, serve, chat and bench load without --optimize-config (--rules cpu: CPU only)`);
  console.log(out.join('\n'));
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description('check CPU (AVX-512, AMX), RAM, GPU and CUDA, say how to fix what is missing, and show the preset the engine loads by default')
    .option('--json', 'print the findings as JSON (for scripts)')
    .addHelpText(
      'after',
      '\nWithout --optimize-config, generate, serve, chat and bench use qwen3moe-hybrid where CUDA is usable (experts on the CPU,\n' +
        'backend auto, which takes AMX where present; the rest on the GPU), else the CPU only; --rules cpu forces the CPU.\n' +
        '\nExample:\n  mixtile doctor --json | jq .preset.name',
    )
    .action((flags: { json?: boolean }) => {
      const d = doctorReport(probeHardware(), cudaInfo());
      if (flags.json) console.log(JSON.stringify(d, null, 2));
      else printText(d);
    });
}
