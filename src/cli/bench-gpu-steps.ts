// `mixtile bench -v` on the hybrid: where one forward's GPU-side time went during a test, from the GPU
// context's counters (native gpuStats) before and after it. Decode: the host's wait for the GPU before each
// layer's CPU experts, the CPU experts, the output head, issuing attention. Prefill: how the cost model divided
// the experts between the CPU and the GPU, each side's measured against its predicted milliseconds, and the
// constants in use (in MIXTILE_EXPERT_COST syntax, so a run can be repeated with them fixed).
import type { GpuStats } from '../native/gpu.ts';

export function gpuStepLines(test: string, before: GpuStats, after: GpuStats): string {
  const forwards = after.forwards - before.forwards;
  if (forwards <= 0) return '';
  const per = (k: 'expertsWaitMs' | 'expertsCpuMs' | 'lmHeadMs' | 'attentionIssueMs' | 'expertsDeferredMs') =>
    ((after[k] - before[k]) / forwards).toFixed(3);
  const lines = [
    `${test}, GPU side per forward (${forwards} forwards): wait for the GPU before the CPU experts ${per('expertsWaitMs')} ms, ` +
      `CPU experts ${per('expertsCpuMs')} ms, held-back experts ${per('expertsDeferredMs')} ms, ` +
      `lm_head ${per('lmHeadMs')} ms, attention issue ${per('attentionIssueMs')} ms`,
  ];
  const a = after.expertsSplit;
  const b = before.expertsSplit;
  const calls = (a?.calls ?? 0) - (b?.calls ?? 0);
  if (a && calls > 0) {
    const d = (k: 'cpuExperts' | 'gpuExperts' | 'cpuMs' | 'gpuMs' | 'predictedCpuMs' | 'predictedGpuMs') => (a[k] - (b?.[k] ?? 0)) / forwards;
    lines.push(
      `${test}, prefill experts split per forward (${(calls / forwards).toFixed(1)} layer calls): ` +
        `CPU ${d('cpuExperts').toFixed(0)} experts ${d('cpuMs').toFixed(2)} ms (predicted ${d('predictedCpuMs').toFixed(2)}), ` +
        `GPU ${d('gpuExperts').toFixed(0)} experts ${d('gpuMs').toFixed(2)} ms (predicted ${d('predictedGpuMs').toFixed(2)}); ` +
        `cost model ${a.cost}`,
    );
  }
  return lines.join('\n') + '\n';
}
