// `mixtile inspect FILE`: what a GGUF holds and what it needs, without loading any weights.
import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { readGguf } from '../formats/gguf-read.ts';
import { openHfModel } from '../formats/hf-model.ts';
import { summarizeGguf } from '../formats/gguf-summary.ts';
import type { GgufSummary } from '../formats/gguf-summary.ts';
import { FormatError } from '../formats/errors.ts';
import { GGML_TYPES } from '../formats/ggml-types.ts';
import { Option } from 'commander';
import { intArg, rulesOf, type RulesFlags } from './engine-flags.ts';
import { placementOfModel, type GpuAsLoaded } from '../model/placement.ts';
import { RuleError } from '../optimize/rules.ts';
import type { PlacementSummary } from '../optimize/rules.ts';

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : n < 10 ? 2 : 1)} ${units[i]}`;
}

function count(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${n}`;
}

function render(s: GgufSummary): string {
  const h = s.hparams;
  const parts = s.files.length > 1 ? `${s.files.length} parts, ` : '';
  const lines = [
    `file          ${s.files[0]} (${parts}${bytes(s.fileBytes)})`,
    `architecture  ${s.architecture}${s.name ? `  "${s.name}"` : ''}`,
    `file type     ${s.fileType ?? '(general.file_type missing)'}`,
    `shape         ${h.nLayers} layers, hidden ${h.hidden}, heads ${h.nHeads} (${h.nKvHeads} KV) x ${h.headDim}` +
      (h.nExperts ? `, ${h.nExperts} experts (${h.nExpertsUsed} used) x FFN ${h.expertFfn}` : '') +
      `, vocab ${h.vocab}, context ${h.contextLength}`,
    `parameters    ${count(s.nParams)} total, ${count(s.nActiveParams)} active per token` +
      (h.nExperts ? ` (non-expert tensors incl. embeddings + ${h.nExpertsUsed}/${h.nExperts} of experts)` : ''),
    `tensors       ${s.nTensors}: ` + s.types.map((t) => `${t.type} x${t.nTensors} ${bytes(t.nBytes)}`).join(', '),
    `memory        weights + F16 KV cache for ${s.memory.ctx} tokens (${bytes(s.memory.kvBytes)}), compute buffers not included`,
    `  all CPU                 RAM ${bytes(s.memory.allCpu.ramBytes)}`,
    `  experts CPU, rest GPU   RAM ${bytes(s.memory.expertsCpu.ramBytes)}, VRAM ${bytes(s.memory.expertsCpu.vramBytes)}`,
  ];
  return lines.join('\n');
}

/** One line per module with weights: rule that placed it, devices, bytes; then RAM / VRAM totals. */
function renderPlacement(p: PlacementSummary & { unclaimed: string[]; gpu?: GpuAsLoaded }, rules: string): string {
  const rows = p.rows.filter((r) => r.bytes > 0);
  const w = Math.max(...rows.map((r) => r.name.length));
  const lines = [`placement under ${rules} (modules with weights; first matching rule wins):`];
  for (const r of rows) {
    const devices = r.prefillDevice === r.generateDevice ? r.generateDevice : `prefill ${r.prefillDevice}, generate ${r.generateDevice}`;
    const shadow = r.shadowed.length ? `  (also matched: ${r.shadowed.join(', ')})` : '';
    const via = r.via ? ` via ${r.via}` : '';
    lines.push(`  ${r.name.padEnd(w)}  ${r.operator.padEnd(12)} ${devices.padEnd(10)} ${r.location.padEnd(4)} ${bytes(r.bytes).padStart(10)}  ${r.source}${via}${shadow}`);
  }
  lines.push(`  total: RAM ${bytes(p.ramBytes)}, VRAM ${bytes(p.vramBytes)} (weights only, as stored in the file)`);
  if (p.gpu) {
    const g = p.gpu;
    const total = g.weightsBytes + g.kvBytes + g.workspaceBytes;
    lines.push(
      `  GPU as loaded: weights ${bytes(g.weightsBytes)} (${g.weightsMode === 'quantized' ? 'Q8_0 / K-quant matrices as stored, others BF16' : 'matrices as BF16'}), KV ${bytes(g.kvBytes)} (ctx ${g.ctx}, ${g.slots} slot), ` +
        `buffers ${bytes(g.workspaceBytes)} (ubatch ${g.ubatch}): ${bytes(total)} of VRAM`,
    );
  }
  for (const name of p.unclaimed) lines.push(`  warning: tensor ${name} belongs to no module`);
  for (const warning of p.warnings) lines.push(`  warning: ${warning}`);
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show a GGUF model\'s architecture, parameter counts, tensor types and memory needs (reads only the header)')
    .argument('<file>', 'GGUF file (any part of a split model) or Hugging Face model folder')
    .option('--json', 'print the summary as JSON', false)
    .option('--tensors', 'also list every tensor: name, type, ggml dims, file and byte offset', false)
    .option('-c, --ctx <n>', 'context size for the KV cache estimate (default: min(4096, the model\'s))', intArg(1))
    .option('--rules <file>', 'also show which rule places each module and where its bytes live (rule file or preset: cpu, qwen3moe-hybrid, qwen3moe-hybrid-amx)')
    .option('--optimize-config <file>', 'same as --rules')
    .addOption(new Option('--optimize_config_path <file>', 'same as --rules (KTransformers)').hideHelp())
    .addHelpText('after', '\nExamples:\n  mixtile synth --preset tiny /tmp/tiny.gguf && mixtile inspect /tmp/tiny.gguf\n  mixtile inspect /tmp/tiny.gguf --rules qwen3moe-hybrid\n')
    .action(async (file: string, o: { json: boolean; tensors: boolean; ctx?: number } & RulesFlags) => {
      const rules = rulesOf(o);
      try {
        const model = (await stat(file)).isDirectory() ? await openHfModel(file) : await readGguf(file);
        const summary = summarizeGguf(model, { ctx: o.ctx });
        const tensors = [...model.tensors.values()].map((t) => ({ name: t.name, type: GGML_TYPES.get(t.type)!.name, dims: t.dims, file: t.fileIndex, offset: t.offset, nBytes: t.nBytes }));
        const placement = rules === undefined ? undefined : placementOfModel(model, rules, { ctx: o.ctx });
        if (o.json) {
          console.log(JSON.stringify({ ...summary, ...(o.tensors ? { tensors } : {}), ...(placement ? { placement } : {}) }, null, 2));
          return;
        }
        console.log(render(summary));
        if (placement && rules !== undefined) console.log(renderPlacement(placement, rules));
        if (o.tensors) {
          const w = Math.max(...tensors.map((t) => t.name.length));
          for (const t of tensors) {
            const where = t.file < 0 ? 'several ranges' : `part ${t.file + 1} @ ${t.offset}`;
            console.log(`  ${t.name.padEnd(w)}  ${t.type.padEnd(5)} [${t.dims.join(', ')}]  ${where} (${bytes(t.nBytes)})`);
          }
        }
      } catch (e) {
        if (!(e instanceof FormatError) && !(e instanceof RuleError) && (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        console.error(`mixtile inspect: ${(e as Error).message}`);
        process.exitCode = 1;
      }
    });
}
