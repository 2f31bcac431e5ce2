// GPT-2 byte-level alphabet: every byte is stored in vocab text as one printable code point
// (openai/gpt-2 encoder.py bytes_to_unicode). Used to turn token text back into raw bytes.

/** Code point → byte, for the 256 code points the byte-level alphabet uses. */
const CHAR_TO_BYTE: ReadonlyMap<number, number> = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<number, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) map.set(printable(b) ? b : next++, b);
  return map;
})();

/**
 * Raw bytes of a byte-level token text such as "Ġthe" → " the". Returns undefined when the text
 * holds a code point outside the alphabet (then it is not byte-level text, e.g. "<think>" is
 * fine but "思" is not).
 */
export function byteLevelToBytes(text: string): Uint8Array | undefined {
  const out = new Uint8Array(text.length);
  let n = 0;
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch.codePointAt(0)!);
    if (b === undefined) return undefined;
    out[n++] = b;
  }
  return out.subarray(0, n);
}
