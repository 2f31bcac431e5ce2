// Python `re` patterns (as KTransformers rule files write them) → JavaScript RegExp.
// Translated: (?P<name>...), (?P=name), \A, \Z and a leading inline flag group such as (?i).
// Everything else is passed through; JS and Python agree on the constructs rule files use.

/** A pattern that cannot be translated or compiled; `offset` is the index in the Python source. */
export class PythonRegexError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const FLAGS: Readonly<Record<string, string>> = { i: 'i', s: 's', m: 'm' };

/** Compiles a Python regular expression; throws PythonRegexError saying what and where. */
export function compilePythonRegex(source: string): RegExp {
  let flags = '';
  let i = 0;
  const lead = /^\(\?([a-zA-Z]+)\)/.exec(source);
  if (lead) {
    for (const f of lead[1]) {
      if (!FLAGS[f]) throw new PythonRegexError(`inline flag "${f}" in "${lead[0]}" is not supported (supported: i, s, m)`, 2);
      if (!flags.includes(FLAGS[f])) flags += FLAGS[f];
    }
    i = lead[0].length;
  }
  let out = '';
  let inClass = false;
  while (i < source.length) {
    const c = source[i];
    if (c === '\\') {
      const next = source[i + 1];
      if (next === undefined) throw new PythonRegexError('pattern ends with a lone backslash', i);
      if (!inClass && next === 'A') out += '^';
      else if (!inClass && next === 'Z') out += '$';
      else out += c + next;
      i += 2;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      i++;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal in both dialects.
      if (source[i + 1] === '^') out += source[++i];
      if (source[i + 1] === ']') out += source[++i];
      i++;
      continue;
    }
    if (source.startsWith('(?P<', i)) {
      out += '(?<';
      i += 4;
      continue;
    }
    if (source.startsWith('(?P=', i)) {
      const end = source.indexOf(')', i);
      if (end < 0) throw new PythonRegexError('unterminated "(?P=name)" back-reference', i);
      out += `\\k<${source.slice(i + 4, end)}>`;
      i = end + 1;
      continue;
    }
    if (/^\(\?[aiLmsux]+\)/.test(source.slice(i))) {
      throw new PythonRegexError('inline flags are only supported at the start of the pattern', i);
    }
    out += c;
    i++;
  }
  try {
    return new RegExp(out, flags);
  } catch (e) {
    throw new PythonRegexError(`invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`, 0);
  }
}
