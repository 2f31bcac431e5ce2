// Where a model's modules and weight bytes would go under a rule file, computed from the GGUF header
// alone (no weights loaded): what `mixtile inspect FILE --rules R` prints.
import type { GgufModel } from '../formats/gguf-read.ts';
import { metaString } from '../formats/gguf-read.ts';
import type { GpuNeeds } from '../native/cuda-fit.ts';
import { probeHardware, type Hardware } from '../optimize/hardware.ts';
import { attributeBytes, describePlacement, loadRules, placeModules, type PlacementSummary } from '../optimize/rules.ts';
import type { KwargsLookup } from './architecture.ts';
import { gpuNeeds, gpuWeightsMode, planGpu, type GpuWeightsMode } from './gpu-plan.ts';
import { hfName } from './names.ts';
import { architectureFor } from './registry.ts';

/** VRAM of the GPU part as the loader would allocate it (weights as uploaded: BF16 matrices, f32 norms). */
export interface GpuAsLoaded extends GpuNeeds {
  /** How the GEMM weights are held (MIXTILE_GPU_WEIGHTS). */
  weightsMode: GpuWeightsMode;
  ctx: number;
  slots: number;
  ubatch: number;
}

/**
 * Per-module placement (winning rule, shadowed rules, devices, bytes) and RAM/VRAM totals of
 * `gguf`'s weights under `rulesPathOrPreset`. Tensors without an HF name are listed in `unclaimed`.
 * Where some operator lands on a GPU, `gpu` is what loading would allocate there (the fit check's
 * figures, src/model/gpu-plan.ts): the rows' VRAM bytes are the file's; the GPU holds the GEMM weights as BF16
 * or, with MIXTILE_GPU_WEIGHTS=quantized, Q8_0 / K-quant tensors as stored.
 */
export function placementOfModel(
  gguf: GgufModel,
  rulesPathOrPreset: string,
  opts: { strict?: boolean; ctx?: number; slots?: number; ubatch?: number; hardware?: Hardware } = {},
): PlacementSummary & { unclaimed: string[]; gpu?: GpuAsLoaded } {
  const arch = architectureFor(metaString(gguf, 'general.architecture'), gguf.files[0]);
  const config = arch.readConfig(gguf);
  const params = [...gguf.tensors.values()].map((t) => ({ name: hfName(t.name) ?? t.name, bytes: t.nBytes }));
  // A GGUF without an output tensor ties lm_head to the embedding: no extra bytes to place.
  const modules = arch.modules(config);
  const { modules: withBytes, unclaimed } = attributeBytes(modules, params);
  const hardware = opts.hardware ?? probeHardware();
  const set = loadRules(rulesPathOrPreset, opts);
  const summary = describePlacement(withBytes, set, hardware, opts);
  const placed = placeModules(modules, set, hardware);
  const kwargs: KwargsLookup = (m) => placed.placements.get(placed.coveredBy.get(m) ?? m)?.kwargs as Record<string, unknown> | undefined;
  const plan = planGpu(config, kwargs);
  if (!plan) return { ...summary, unclaimed };
  const o = { ctx: opts.ctx ?? Math.min(4096, config.contextLength), nSeq: opts.slots ?? 1, ubatch: opts.ubatch ?? 512, weightsMode: gpuWeightsMode() };
  const { bytesPerToken: _, ...needs } = gpuNeeds(config, gguf, plan, o);
  return { ...summary, unclaimed, gpu: { ...needs, weightsMode: o.weightsMode, ctx: o.ctx, slots: o.nSeq, ubatch: o.ubatch } };
}
