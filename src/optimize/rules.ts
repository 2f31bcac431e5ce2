// Rule files: YAML lists of `match` (module name regex and/or class) → `replace` (operator class +
// kwargs), KTransformers' format. This file parses and checks them, keeping line:col for every error;
// place.ts applies them to a model's modules.
import { existsSync, readFileSync } from 'node:fs';
import { relative, isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import { KWARGS, OPERATOR_NAMES, OP_ALIASES, resolveOperatorClass, type OperatorKwargs, type OperatorName } from '../operators/registry.ts';
import { PythonRegexError, compilePythonRegex } from './python-regex.ts';
import { placeModules, type ModuleInfo, type PlacementResult } from './place.ts';
import { defaultPreset, probeHardware, type Hardware } from './hardware.ts';

export { placeModules, describePlacement, attributeBytes } from './place.ts';
export type { ModuleInfo, Placement, PlacementResult, PlacementRow, PlacementSummary } from './place.ts';

/** A rule file that cannot be used; the message starts with file:line:col. */
export class RuleError extends Error {
  override readonly name = 'RuleError';
  constructor(
    message: string,
    readonly file: string,
    readonly line: number,
    readonly col: number,
  ) {
    super(`${file}:${line}:${col}: ${message}`);
  }
}

/** One checked rule. */
export interface Rule {
  /** Position in the file, 0-based; lower wins. */
  index: number;
  /** 'file:line' of the rule's first line. */
  source: string;
  line: number;
  col: number;
  /** `match.name`, translated from Python; tested with search semantics (KTransformers uses re.search). */
  name?: RegExp;
  nameSource?: string;
  /** `match.class` as written; compared by its last dotted segment with the module's class. */
  className?: string;
  operator: OperatorName;
  /** `replace.class` as written. */
  replaceClass: string;
  /** kwargs in camelCase, checked against the operator's schema. */
  kwargs: OperatorKwargs;
  /** false: the module's children are part of this operator and get no placement of their own. */
  recursive: boolean;
}

export interface RuleSet {
  file: string;
  rules: Rule[];
  /** Things the file asks for that Mixtile does differently, each with file:line. */
  warnings: string[];
}

export interface LoadRulesOptions {
  /** Throw instead of warning when a rule asks for something Mixtile cannot honour exactly. */
  strict?: boolean;
}

/** Presets shipped in src/optimize/rules/. */
export const PRESETS = ['cpu', 'qwen3moe-hybrid', 'qwen3moe-hybrid-amx'] as const;
export type PresetName = (typeof PRESETS)[number];

// src/optimize/rules.ts and dist/optimize/rules.js both sit two folders below the package root;
// the YAML presets are not compiled, so they are always read from src/.
const PRESET_DIR = fileURLToPath(new URL('../../src/optimize/rules/', import.meta.url));

/** Path of a shipped preset. */
export function presetPath(name: PresetName): string {
  return `${PRESET_DIR}${name}.yaml`;
}

/**
 * Loads a rule file, or a preset by name (`cpu`, `qwen3moe-hybrid`, `qwen3moe-hybrid-amx`).
 * Example: `placeModules(modules, loadRules("qwen3moe-hybrid"), probeHardware())`.
 */
export function loadRules(pathOrPreset: string, opts: LoadRulesOptions = {}): RuleSet {
  const isPreset = (PRESETS as readonly string[]).includes(pathOrPreset);
  const path = isPreset ? presetPath(pathOrPreset as PresetName) : pathOrPreset;
  if (!existsSync(path)) {
    throw new RuleError(`rule file not found (expected a YAML file or a preset: ${PRESETS.join(', ')})`, pathOrPreset, 1, 1);
  }
  const shown = isAbsolute(path) && path.startsWith(process.cwd()) ? relative(process.cwd(), path) : path;
  return parseRules(readFileSync(path, 'utf8'), shown, opts);
}

function snakeToCamel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function typeName(node: unknown): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return node.value === null ? 'nothing' : `${typeof node.value} ${JSON.stringify(node.value)}`;
  return 'nothing';
}

/** Parses rule file text; `file` names it in messages. Throws RuleError at the first problem. */
export function parseRules(text: string, file: string, opts: LoadRulesOptions = {}): RuleSet {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const warnings: string[] = [];

  const posOf = (node: Node | null | undefined): { line: number; col: number } =>
    node?.range ? lines.linePos(node.range[0]) : { line: 1, col: 1 };
  const textOf = (node: Node | null | undefined): string => (node?.range ? text.slice(node.range[0], node.range[1]).trim() : '');
  const fail = (node: Node | null | undefined, message: string): never => {
    const { line, col } = posOf(node);
    throw new RuleError(message, file, line, col);
  };
  const warn = (node: Node | null | undefined, message: string) => {
    if (opts.strict) fail(node, `${message} (not allowed with --strict)`);
    warnings.push(`${file}:${posOf(node).line}: ${message}`);
  };
  const checkKeys = (map: YAMLMap, allowed: readonly string[], what: string) => {
    for (const pair of map.items) {
      const key = pair.key as Node;
      const k = isScalar(key) ? String(key.value) : textOf(key);
      if (!allowed.includes(k)) fail(key, `unknown key "${k}" in ${what} (expected ${allowed.join(', ')})`);
    }
  };
  const stringAt = (map: YAMLMap, key: string, what: string): { value: string; node: Node } | undefined => {
    const node = map.get(key, true) as Node | undefined;
    if (node === undefined) return undefined;
    if (!isScalar(node) || typeof node.value !== 'string') fail(node, `${what} must be a string, found ${typeName(node)}`);
    return { value: (node as { value: string }).value, node };
  };

  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const at = lines.linePos(e.pos[0]);
    throw new RuleError(`invalid YAML: ${e.message.split('\n')[0]}`, file, at.line, at.col);
  }
  const root = doc.contents as Node | null;
  if (!isSeq(root)) fail(root, `expected a list of rules ("- match: ... replace: ..."), found ${typeName(root)}`);

  const rules: Rule[] = [];
  (root as { items: unknown[] }).items.forEach((item, index) => {
    const what = `rule ${index + 1}`;
    if (!isMap(item)) fail(item as Node, `${what}: expected a mapping with match and replace, found ${typeName(item)}`);
    const ruleMap = item as YAMLMap;
    checkKeys(ruleMap, ['match', 'replace', 'recursive'], what);

    const match = ruleMap.get('match', true) as Node | undefined;
    if (!isMap(match)) fail(match ?? ruleMap, `${what}: "match" must be a mapping with name and/or class, found ${typeName(match)}`);
    const matchMap = match as YAMLMap;
    checkKeys(matchMap, ['name', 'class'], `${what} match`);
    const name = stringAt(matchMap, 'name', 'match.name');
    const cls = stringAt(matchMap, 'class', 'match.class');
    if (!name && !cls) fail(matchMap, `${what}: match needs at least one of name and class`);
    let regex: RegExp | undefined;
    if (name) {
      try {
        regex = compilePythonRegex(name.value);
      } catch (e) {
        if (!(e instanceof PythonRegexError)) throw e;
        fail(name.node, `bad name regex "${name.value}": ${e.message}`);
      }
    }

    const replace = ruleMap.get('replace', true) as Node | undefined;
    if (!isMap(replace)) fail(replace ?? ruleMap, `${what}: "replace" must be a mapping with class and kwargs, found ${typeName(replace)}`);
    const replaceMap = replace as YAMLMap;
    checkKeys(replaceMap, ['class', 'kwargs'], `${what} replace`);
    // KTransformers treats a missing class as "default": keep the model's own module.
    const replaceClass = stringAt(replaceMap, 'class', 'replace.class') ?? { value: 'default', node: replaceMap };
    const alias = resolveOperatorClass(replaceClass.value);
    if (!alias) {
      fail(replaceClass.node, `unknown operator "${replaceClass.value}" (known: ${OPERATOR_NAMES.join(', ')}, or their KTransformers class names)`);
    }
    const { operator, note, ignoredKwargs = {} } = alias!;
    if (note) warn(replaceClass.node, `${replaceClass.value}: ${note}`);

    const kwargsNode = replaceMap.get('kwargs', true) as Node | undefined;
    const kwargs: Record<string, unknown> = {};
    if (kwargsNode !== undefined && !(isScalar(kwargsNode) && kwargsNode.value === null)) {
      if (!isMap(kwargsNode)) fail(kwargsNode, `replace.kwargs must be a mapping, found ${typeName(kwargsNode)}`);
      const shape = KWARGS[operator].shape as Record<string, { safeParse(v: unknown): { success: boolean; error?: { issues: { message: string }[] } } }>;
      const seen = new Map<string, string>();
      for (const pair of (kwargsNode as YAMLMap).items as Pair<Node, Node>[]) {
        const raw = isScalar(pair.key) ? String(pair.key.value) : textOf(pair.key);
        const key = snakeToCamel(raw);
        if (seen.has(key)) fail(pair.key, `kwarg "${raw}" repeats "${seen.get(key)}" (snake_case and camelCase name the same kwarg)`);
        seen.set(key, raw);
        if (key in ignoredKwargs) {
          warn(pair.key, `kwarg ${raw} is ignored: ${ignoredKwargs[key]}`);
          continue;
        }
        if (!(key in shape)) {
          const known = Object.keys(shape).join(', ');
          fail(pair.key, `unknown kwarg "${raw}" for ${operator} (known: ${known}; snake_case also accepted)`);
        }
        let value = pair.value?.toJSON() ?? null;
        if ((key === 'prefillOp' || key === 'generateOp') && typeof value === 'string' && OP_ALIASES[value]) {
          const opAlias = OP_ALIASES[value];
          if (opAlias.note) warn(pair.value, `${raw} ${value}: ${opAlias.note}`);
          value = opAlias.op;
        }
        const parsed = shape[key].safeParse(value);
        if (!parsed.success) {
          const why = parsed.error?.issues[0]?.message ?? 'invalid value';
          fail(pair.value ?? pair.key, `kwarg ${raw} of ${operator}: ${why}, found ${textOf(pair.value) || 'nothing'}`);
        }
        if (value !== null) kwargs[key] = value;
      }
    }

    const recursiveNode = ruleMap.get('recursive', true) as Node | undefined;
    if (recursiveNode !== undefined && !(isScalar(recursiveNode) && typeof recursiveNode.value === 'boolean')) {
      fail(recursiveNode, `${what}: recursive must be true or false, found ${typeName(recursiveNode)}`);
    }
    rules.push({
      index,
      source: `${file}:${posOf(ruleMap).line}`,
      ...posOf(ruleMap),
      name: regex,
      nameSource: name?.value,
      className: cls?.value,
      operator,
      replaceClass: replaceClass.value,
      kwargs: kwargs as OperatorKwargs,
      recursive: recursiveNode ? (recursiveNode as { value: boolean }).value : true,
    });
  });
  return { file, rules, warnings };
}

/**
 * One call for loaders: loads `pathOrPreset` (or, when undefined, the preset `mixtile doctor` names
 * for this machine), probes the hardware unless given, and places `modules`.
 * Example: `const { placements, warnings } = resolvePlacements(qwen3Modules(config, true), opts.rules)`.
 */
export function resolvePlacements(
  modules: readonly ModuleInfo[],
  pathOrPreset: string | undefined,
  opts: LoadRulesOptions & { hardware?: Hardware } = {},
): PlacementResult & { rules: RuleSet; hardware: Hardware } {
  const hardware = opts.hardware ?? probeHardware();
  const rules = loadRules(pathOrPreset ?? defaultPreset(hardware).preset, opts);
  return { ...placeModules(modules, rules, hardware, opts), rules, hardware };
}
