// `mixtile doctor`: what this machine has for running MoE models (CPU matrix units, AMX
// permission, RAM, GPU), what is missing and how to fix it, and the rule preset loading picks.
import type { Command } from 'commander';
import { diagnose, type Diagnosis } from '../optimize/diagnose.ts';
import { probeHardware } from '../optimize/hardware.ts';

function printText(d: Diagnosis): void {
  const cpu = d.hardware.cpu;
  const out: string[] = [`CPU     ${cpu.model} (${cpu.physicalCores} cores, ${cpu.logicalCores} threads)`];
  for (const c of d.checks) {
    out.push(`${c.ok ? '  ok     ' : '  missing'} ${c.found}`);
    if (c.fix) out.push(`          fix: ${c.fix}`);
  }
  const backends = Object.entries(d.backends).map(([name, b]) => (b.ok ? `${name} yes` : `${name} no (needs ${b.missing})`));
  out.push(`Experts backends: ${backends.join(', ')}`);
  out.push(`Preset  ${d.preset.name}: ${d.preset.reason}`);
  out.push(`        ${d.preset.path} (override with --optimize-config PATH)`);
  console.log(out.join('\n'));
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description('check CPU (AVX-512, AMX), RAM and GPU, say how to fix what is missing, and show the default rule preset')
    .option('--json', 'print the findings as JSON (for scripts)')
    .addHelpText('after', '\nExample:\n  mixtile doctor --json | jq .preset.name')
    .action((flags: { json?: boolean }) => {
      const d = diagnose(probeHardware());
      if (flags.json) console.log(JSON.stringify(d, null, 2));
      else printText(d);
    });
}
