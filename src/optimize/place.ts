// Applies a rule set to a model's module list: first matching rule wins (KTransformers'
// gen_optimize_config), `recursive: false` hands a module's children to its operator, and the
// kwargs are completed and checked against this machine (backends, GPUs). Loading weights is the
// model layer's job; it reads the placements this returns.
import type { Device, ExpertBackend, OperatorKwargs, OperatorName } from '../operators/registry.ts';
import { backendSupport, bestBackend, describeCpuFeatures, type Hardware } from './hardware.ts';
import { RuleError, type Rule, type RuleSet } from './rules.ts';

/** One module of the model tree, named as Hugging Face names it. */
export interface ModuleInfo {
  /** e.g. model.layers.3.mlp.experts */
  name: string;
  /** Class, bare or dotted: Qwen3MoeSparseMoeBlock, torch.nn.Linear, ktransformers.models.modeling_qwen3_moe.Qwen3MoeRMSNorm. */
  className: string;
  /** Bytes of the module's own weights (not its children's); used by describePlacement. */
  bytes?: number;
}

export interface Placement {
  operator: OperatorName;
  /** The rule's kwargs completed for this machine: devices always set; Experts also backend and ops. */
  kwargs: OperatorKwargs;
  /** Index of the winning rule; -1 when no rule matched and the module keeps its default. */
  ruleIndex: number;
  /** 'file:line' of the winning rule, or 'default' */
  source: string;
  /** Sources of later rules that matched too but lost (first match wins). */
  shadowed: string[];
}

export interface PlacementResult {
  /** Every module that gets its own operator. */
  placements: Map<string, Placement>;
  /** Modules served by a `recursive: false` ancestor's operator: module → ancestor. */
  coveredBy: Map<string, string>;
  warnings: string[];
}

export interface PlaceOptions {
  /** Throw RuleError instead of falling back when a backend or device is missing here. */
  strict?: boolean;
}

/**
 * Classes a module also counts as (Python isinstance): KTransformers' Qwen3-MoE rule files match
 * rotary embeddings by the Qwen2-MoE class, and torch.nn.Module matches every module.
 */
const CLASS_BASES: Readonly<Record<string, readonly string[]>> = {
  Qwen3MoeRotaryEmbedding: ['Qwen2MoeRotaryEmbedding'],
};

const lastSegment = (dotted: string) => dotted.slice(dotted.lastIndexOf('.') + 1);

/** Classes compare by their last dotted segment: torch.nn.Linear and Linear are the same class. */
function classMatches(ruleClass: string, moduleClass: string): boolean {
  const want = lastSegment(ruleClass);
  const have = lastSegment(moduleClass);
  return want === have || want === 'Module' || (CLASS_BASES[have]?.includes(want) ?? false);
}

function ruleMatches(rule: Rule, m: ModuleInfo): boolean {
  if (rule.className !== undefined && !classMatches(rule.className, m.className)) return false;
  // KTransformers tests names with re.search: unanchored unless the pattern says ^ or $.
  if (rule.name !== undefined && !rule.name.test(m.name)) return false;
  return true;
}

function depth(name: string): number {
  return name === '' ? -1 : name.split('.').length;
}

/** Completes and checks one placement's kwargs against the hardware; fallbacks are reported through `fallback`. */
function resolveKwargs(
  operator: OperatorName,
  raw: OperatorKwargs,
  hw: Hardware,
  fallback: (message: string) => void,
): OperatorKwargs {
  const kw: Record<string, unknown> = { ...raw };
  const defaultDevice: Device = hw.gpus.length > 0 ? 'cuda' : 'cpu';
  const device = (key: string, value: string): Device => {
    if (!value.startsWith('cuda')) return value;
    const n = value === 'cuda' ? 0 : Number(value.slice(5));
    if (n < hw.gpus.length) return value;
    if (hw.gpus.length === 0) {
      fallback(`${key} ${value} needs a CUDA GPU and none was found (${hw.gpuNote ?? 'no GPU'}); using cpu`);
      return 'cpu';
    }
    fallback(`${key} ${value}, but this machine has ${hw.gpus.length} GPU(s) (cuda:0..cuda:${hw.gpus.length - 1}); using cuda:0`);
    return 'cuda:0';
  };

  const generate = device('generate_device', (kw.generateDevice as string | undefined) ?? (operator === 'Experts' ? 'cpu' : defaultDevice));
  kw.generateDevice = generate;
  kw.prefillDevice = device('prefill_device', (kw.prefillDevice as string | undefined) ?? generate);
  if (kw.outDevice !== undefined) kw.outDevice = device('out_device', kw.outDevice as string);

  if (operator === 'Experts') {
    // 'auto' stays 'auto': the native experts op then picks per weight type (BF16 weights on
    // AMX-BF16, quantized ones on AMX-INT8, else AVX-512), which a rule cannot know.
    let backend = (kw.backend as ExpertBackend | undefined) ?? 'auto';
    const support = backend === 'auto' ? ({ ok: true } as const) : backendSupport(hw, backend);
    if (!support.ok) {
      const instead = bestBackend(hw);
      fallback(`backend ${backend} needs ${support.missing}, this CPU has ${describeCpuFeatures(hw)}; using ${instead} (set backend: ${instead} or see "mixtile doctor")`);
      backend = instead;
    }
    kw.backend = backend;
    // An op follows its phase's device unless the rule named one the device can run.
    for (const [opKey, devKey] of [['prefillOp', 'prefillDevice'], ['generateOp', 'generateDevice']] as const) {
      const onCpu = kw[devKey] === 'cpu';
      if (kw[opKey] === undefined || (onCpu && kw[opKey] === 'gpu')) kw[opKey] = onCpu ? 'cpu' : 'gpu';
    }
  }
  if ((operator === 'Linear' || operator === 'LMHead') && generate === 'cpu' && (kw.backend === 'AMXBF16' || kw.backend === 'AMXInt8')) {
    // A named AMX backend on a CPU without it would silently run the AVX-512 / AVX2 GEMM (linear_load
    // packs nothing): say so, as for the experts. AVX512 here means "no AMX repack", which every CPU runs.
    const support = backendSupport(hw, kw.backend);
    if (!support.ok) {
      fallback(`backend ${kw.backend} needs ${support.missing}, this CPU has ${describeCpuFeatures(hw)}; using AVX512 (set backend: AVX512 or see "mixtile doctor")`);
      kw.backend = 'AVX512';
    }
  }
  return kw as OperatorKwargs;
}

/**
 * Places every module: the first rule (in file order) whose class and name match wins; modules
 * no rule matches keep their default implementation on the GPU if there is one, else the CPU.
 * Example: `placeModules([{name: 'model.layers.0.mlp.experts', className: 'Qwen3MoeExperts'}], rules, hw)`.
 */
export function placeModules(modules: readonly ModuleInfo[], rules: RuleSet, hw: Hardware, opts: PlaceOptions = {}): PlacementResult {
  const placements = new Map<string, Placement>();
  const coveredBy = new Map<string, string>();
  const nonRecursive = new Set<string>();
  const matched = new Array<number>(rules.rules.length).fill(0);
  // The same fallback repeats for every layer; report it once per rule with a count.
  const fallbacks = new Map<string, number>();

  // Parents before children, so that a recursive: false parent is known when its children come.
  const ordered = modules.map((m, i) => ({ m, i })).sort((a, b) => depth(a.m.name) - depth(b.m.name) || a.i - b.i);
  for (const { m } of ordered) {
    const parts = m.name.split('.');
    let ancestor: string | undefined;
    for (let k = parts.length - 1; k >= 1 && ancestor === undefined; k--) {
      const prefix = parts.slice(0, k).join('.');
      if (nonRecursive.has(prefix)) ancestor = prefix;
    }
    if (ancestor === undefined && m.name !== '' && nonRecursive.has('')) ancestor = '';
    if (ancestor !== undefined) {
      coveredBy.set(m.name, ancestor);
      continue;
    }

    const hits = rules.rules.filter((r) => ruleMatches(r, m));
    const rule = hits[0];
    if (rule) matched[rule.index]++;
    const fallback = (message: string) => {
      if (opts.strict && rule) throw new RuleError(`${message.replace(/; using .*$/, '')} (module ${m.name}; --strict forbids fallbacks)`, rules.file, rule.line, rule.col);
      const key = `${rule ? rule.source : 'default placement'}: ${message}`;
      fallbacks.set(key, (fallbacks.get(key) ?? 0) + 1);
    };
    const operator: OperatorName = rule ? rule.operator : 'Default';
    placements.set(m.name, {
      operator,
      kwargs: resolveKwargs(operator, rule ? rule.kwargs : {}, hw, fallback),
      ruleIndex: rule ? rule.index : -1,
      source: rule ? rule.source : 'default',
      shadowed: hits.slice(1).map((r) => r.source),
    });
    if (rule && !rule.recursive) nonRecursive.add(m.name);
  }

  const warnings = [...rules.warnings];
  for (const r of rules.rules) {
    if (matched[r.index] === 0) {
      const what = [r.nameSource !== undefined && `name "${r.nameSource}"`, r.className !== undefined && `class ${r.className}`].filter(Boolean).join(' and ');
      warnings.push(`${r.source}: rule ${r.index + 1} (${what}) matched no module`);
    }
  }
  for (const [message, n] of fallbacks) warnings.push(n > 1 ? `${message} (${n} modules)` : message);
  return { placements, coveredBy, warnings };
}

export interface PlacementRow {
  name: string;
  className: string;
  operator: OperatorName;
  /** Winning rule 'file:line', 'default', or the ancestor's rule for covered modules. */
  source: string;
  /** Ancestor whose operator serves this module (recursive: false), if any. */
  via?: string;
  shadowed: string[];
  generateDevice: Device;
  prefillDevice: Device;
  /** Where the weights live: the generate device's memory. */
  location: 'RAM' | 'VRAM';
  bytes: number;
}

/**
 * Adds each weight's bytes to the deepest listed module its HF parameter name falls under
 * (model.layers.3.mlp.experts.gate_proj.weight → model.layers.3.mlp.experts). Returns the modules
 * with `bytes` set and the parameters no module claims.
 */
export function attributeBytes(
  modules: readonly ModuleInfo[],
  params: ReadonlyArray<{ name: string; bytes: number }>,
): { modules: ModuleInfo[]; unclaimed: string[] } {
  const bytes = new Map<string, number>(modules.map((m) => [m.name, 0]));
  const unclaimed: string[] = [];
  for (const p of params) {
    const parts = p.name.split('.');
    let owner: string | undefined;
    for (let k = parts.length - 1; k >= 1 && owner === undefined; k--) {
      const prefix = parts.slice(0, k).join('.');
      if (bytes.has(prefix)) owner = prefix;
    }
    if (owner === undefined) unclaimed.push(p.name);
    else bytes.set(owner, bytes.get(owner)! + p.bytes);
  }
  return { modules: modules.map((m) => ({ ...m, bytes: (m.bytes ?? 0) + bytes.get(m.name)! })), unclaimed };
}

export interface PlacementSummary {
  rows: PlacementRow[];
  ramBytes: number;
  vramBytes: number;
  warnings: string[];
}

/**
 * Per-module rule and weight location, for `mixtile inspect FILE --rules R`: which rule placed
 * each module (and which later rules it shadowed), and the RAM / VRAM totals of the weights.
 */
export function describePlacement(modules: readonly ModuleInfo[], rules: RuleSet, hw: Hardware, opts: PlaceOptions = {}): PlacementSummary {
  const result = placeModules(modules, rules, hw, opts);
  const rows: PlacementRow[] = [];
  let ramBytes = 0;
  let vramBytes = 0;
  for (const m of modules) {
    const via = result.coveredBy.get(m.name);
    const p = result.placements.get(via ?? m.name)!;
    const kw = p.kwargs as { generateDevice: Device; prefillDevice: Device };
    const location = kw.generateDevice === 'cpu' ? 'RAM' : 'VRAM';
    const bytes = m.bytes ?? 0;
    if (location === 'RAM') ramBytes += bytes;
    else vramBytes += bytes;
    rows.push({
      name: m.name,
      className: m.className,
      operator: p.operator,
      source: p.source,
      via,
      shadowed: via ? [] : p.shadowed,
      generateDevice: kw.generateDevice,
      prefillDevice: kw.prefillDevice,
      location,
      bytes,
    });
  }
  return { rows, ramBytes, vramBytes, warnings: result.warnings };
}
