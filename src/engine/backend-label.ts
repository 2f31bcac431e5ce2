// What ran a loaded model, for `mixtile bench`'s backend column (llama-bench's `backend` and `gpu_info`):
// the devices (CPU, or CUDA+CPU with the GPU's name) and the routed experts' CPU kernel family as the
// rules placed it, with what `auto` means on this machine.
import { metaString } from '../formats/gguf-read.ts';
import { GGML_TYPES, GgmlType } from '../formats/ggml-types.ts';
import { cudaInfo } from '../native/cuda.ts';
import { isaInfo } from '../native/isa.ts';
import { ggufLayer } from '../model/names.ts';
import { architectureFor } from '../model/registry.ts';
import type { LoadedModel } from '../model/types.ts';
import type { ExpertsKwargs } from '../operators/registry.ts';
import { probeHardware } from '../optimize/hardware.ts';
import { resolvePlacements } from '../optimize/rules.ts';

export interface BackendLabel {
  /** 'CPU', or 'CUDA+CPU' when operators ran on a GPU. */
  backends: 'CPU' | 'CUDA+CPU';
  /** The GPU's name (CUDA+CPU only). */
  gpu?: string;
  /** The experts' CPU backend, e.g. 'AMXInt8', 'auto: AVX512BF16', and whether prefill shares them with the GPU; absent for dense models. */
  experts?: string;
  /** One line for a table cell: 'CUDA+CPU (NVIDIA H100 80GB HBM3; experts auto: AMXInt8)'. */
  text: string;
}

/** `rules`: the rule file or preset the model was loaded with (undefined = none, every operator on the CPU). */
export function backendLabel(model: LoadedModel, rules: string | undefined): BackendLabel {
  const gpu = model.gpu ? (cudaInfo().devices[model.gpu.index]?.name ?? `cuda:${model.gpu.index}`) : undefined;
  const experts = model.config.nExperts > 0 ? expertsBackend(model, rules) : undefined;
  const backends = gpu === undefined ? 'CPU' : 'CUDA+CPU';
  const details = [gpu, experts && `experts ${experts}`].filter(Boolean).join('; ');
  return { backends, ...(gpu !== undefined ? { gpu } : {}), ...(experts !== undefined ? { experts } : {}), text: details ? `${backends} (${details})` : backends };
}

/**
 * The rules' backend for layer 0's experts (after this machine's fallbacks; `auto` says what it picks
 * here), and how prefill shares them with the GPU when the rules give it prefill_device: cuda.
 */
function expertsBackend(model: LoadedModel, rules: string | undefined): string {
  let kw: { backend?: string; prefillOp?: string | null } = {};
  if (rules !== undefined) {
    const arch = architectureFor(metaString(model.gguf, 'general.architecture'));
    // As the loader places them: with the GPUs the CUDA library can use, not nvidia-smi's list.
    const cuda = cudaInfo();
    const gpus = cuda.available ? cuda.devices.map((d, index) => ({ index, name: d.name, memoryTotalBytes: d.vramBytes, memoryFreeBytes: d.freeBytes })) : [];
    const hardware = { ...probeHardware(), gpus, gpuNote: cuda.available ? undefined : cuda.reason };
    const placed = resolvePlacements(arch.modules(model.config), rules, { hardware }).placements.get('model.layers.0.mlp.experts');
    if (placed?.operator === 'Experts') kw = placed.kwargs as ExpertsKwargs;
  }
  const backend = kw.backend ?? 'auto';
  const cpu = backend === 'auto' ? `auto: ${autoExperts(model)}` : backend;
  // MIXTILE_EXPERTS_PREFILL (read natively) picks how GPU prefill divides them; split is its default.
  const mode = process.env.MIXTILE_EXPERTS_PREFILL || 'split';
  return model.gpu && kw.prefillOp === 'gpu' && mode !== 'cpu' ? `${cpu}, prefill ${mode === 'gpu' ? 'on the GPU' : 'split with the GPU'}` : cpu;
}

/**
 * What native `auto` repacks the experts for (native/src/cpu/amx/amx-experts.cc chosen_backend): on an
 * AMX CPU, MIXTILE_AMX_BACKEND, else AMX-BF16 for BF16 weights and AMX-INT8 for quantized ones; F32/F16
 * weights and CPUs without AMX run the best kernel of the active ISA level.
 */
function autoExperts(model: LoadedModel): string {
  const isa = isaInfo().active;
  const plain = isa.toUpperCase();
  if (isa !== 'amx') return plain;
  const env = process.env.MIXTILE_AMX_BACKEND;
  if (env) return env === 'AMXBF16' || env === 'AMXInt8' || env === 'AMXInt4' ? env : 'AVX512BF16';
  const type = model.gguf.tensors.get(ggufLayer(0, 'mlp.experts.gate_proj'))?.type;
  if (type === undefined || type === GgmlType.F32 || type === GgmlType.F16) return 'AVX512BF16';
  return type === GgmlType.BF16 ? 'AMXBF16' : `AMXInt8 (from ${GGML_TYPES.get(type)?.name ?? 'quantized'})`;
}
