// Device checks shared by the operators: this build runs every operator on the CPU, so a rule
// that places one elsewhere must fail loudly at load time, naming the module.

/** Placement kwargs every operator accepts (src/operators/registry.ts). */
export interface DeviceKwargs {
  prefillDevice?: string;
  generateDevice?: string;
}

/** Throws if `kwargs` places `module` on a device other than the CPU. */
export function requireCpu(module: string, kwargs: DeviceKwargs | undefined): void {
  for (const [phase, dev] of [
    ['prefill_device', kwargs?.prefillDevice],
    ['generate_device', kwargs?.generateDevice],
  ] as const) {
    if (dev !== undefined && dev !== 'cpu') {
      throw new Error(`${module}: ${phase} ${dev} requested, but this operator runs on the CPU only in this build; use the "cpu" rules preset`);
    }
  }
}
