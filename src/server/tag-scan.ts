// Helpers for the incremental output parsers (reasoning.ts, tool-calls.ts): text arrives in pieces,
// so a tag such as `</think>` may be split across pieces and its start must be held back.

/** Length of the longest suffix of `text` that is a proper prefix of `tag` (0 when none). */
export function partialTagLength(text: string, tag: string): number {
  for (let n = Math.min(text.length, tag.length - 1); n > 0; n--) {
    if (text.endsWith(tag.slice(0, n))) return n;
  }
  return 0;
}
