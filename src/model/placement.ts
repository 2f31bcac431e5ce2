// Where a model's modules and weight bytes would go under a rule file, computed from the GGUF header
// alone (no weights loaded): what `mixtile inspect FILE --rules R` prints.
import type { GgufModel } from '../formats/gguf-read.ts';
import { metaString } from '../formats/gguf-read.ts';
import { probeHardware } from '../optimize/hardware.ts';
import { attributeBytes, describePlacement, loadRules, type PlacementSummary } from '../optimize/rules.ts';
import { hfName } from './names.ts';
import { architectureFor } from './registry.ts';

/**
 * Per-module placement (winning rule, shadowed rules, devices, bytes) and RAM/VRAM totals of
 * `gguf`'s weights under `rulesPathOrPreset`. Tensors without an HF name are listed in `unclaimed`.
 */
export function placementOfModel(
  gguf: GgufModel,
  rulesPathOrPreset: string,
  opts: { strict?: boolean } = {},
): PlacementSummary & { unclaimed: string[] } {
  const arch = architectureFor(metaString(gguf, 'general.architecture'), gguf.files[0]);
  const config = arch.readConfig(gguf);
  const params = [...gguf.tensors.values()].map((t) => ({ name: hfName(t.name) ?? t.name, bytes: t.nBytes }));
  // A GGUF without an output tensor ties lm_head to the embedding: no extra bytes to place.
  const { modules, unclaimed } = attributeBytes(arch.modules(config), params);
  const summary = describePlacement(modules, loadRules(rulesPathOrPreset, opts), probeHardware(), opts);
  return { ...summary, unclaimed };
}
