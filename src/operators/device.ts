// Where an operator runs, from its rules kwargs (prefill_device / generate_device): the CPU or one GPU.
// An operator keeps one copy of its weights, so its two phases must agree; the routed experts are the
// exception (prefill may stream them to the GPU, native/src/gpu/experts-bridge.cc; generate stays on the CPU).
import type { GpuContextHandle } from '../native/gpu.ts';

/** Placement kwargs every operator accepts (src/operators/registry.ts). */
export interface DeviceKwargs {
  prefillDevice?: string;
  generateDevice?: string;
}

export type OpDevice = { type: 'cpu' } | { type: 'cuda'; index: number };

/** The GPU a model's GPU operators share: one context (stream, buffers, KV cache in VRAM) per model. */
export interface GpuRuntime {
  readonly ctx: GpuContextHandle;
  readonly index: number;
}

/** 'cpu', 'cuda' (= cuda:0) or 'cuda:N'; throws naming `what` for anything else. */
export function parseDevice(value: string | undefined, what: string): OpDevice {
  if (value === undefined || value === 'cpu') return { type: 'cpu' };
  const m = /^cuda(?::(\d+))?$/.exec(value);
  if (!m) throw new Error(`${what}: device "${value}" is not cpu, cuda or cuda:N`);
  return { type: 'cuda', index: m[1] === undefined ? 0 : Number(m[1]) };
}

export function deviceName(d: OpDevice): string {
  return d.type === 'cpu' ? 'cpu' : `cuda:${d.index}`;
}

/** The one device of an operator; throws if its phases differ (name the module and both devices). */
export function operatorDevice(module: string, kwargs: DeviceKwargs | undefined): OpDevice {
  const prefill = parseDevice(kwargs?.prefillDevice, `${module} prefill_device`);
  const generate = parseDevice(kwargs?.generateDevice, `${module} generate_device`);
  if (deviceName(prefill) !== deviceName(generate)) {
    throw new Error(
      `${module}: prefill_device ${deviceName(prefill)} and generate_device ${deviceName(generate)} differ; ` +
        'this operator keeps one copy of its weights, so both phases must name the same device (only the experts may differ)',
    );
  }
  return generate;
}

/** The routed experts: generate on the CPU (weights in RAM); prefill on the CPU or streamed to the GPU. */
export function expertsDevices(module: string, kwargs: DeviceKwargs | undefined): { prefill: OpDevice; generate: OpDevice } {
  const prefill = parseDevice(kwargs?.prefillDevice, `${module} prefill_device`);
  const generate = parseDevice(kwargs?.generateDevice, `${module} generate_device`);
  if (generate.type !== 'cpu') {
    throw new Error(`${module}: generate_device ${deviceName(generate)}: the routed experts stay in RAM and decode on the CPU (use generate_device: cpu)`);
  }
  return { prefill, generate };
}

/** The runtime for a GPU operator; throws if the model has none (the loader makes one when any operator is on a GPU). */
export function gpuFor(module: string, device: OpDevice, gpu: GpuRuntime | undefined): GpuRuntime {
  if (device.type !== 'cuda') throw new Error(`${module}: not a GPU operator`);
  if (!gpu) throw new Error(`${module}: placed on ${deviceName(device)}, but the model has no GPU context`);
  if (gpu.index !== device.index) throw new Error(`${module}: placed on ${deviceName(device)}, but the model's GPU operators run on cuda:${gpu.index} (one GPU per model)`);
  return gpu;
}
