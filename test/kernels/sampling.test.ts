// Native logits scans (native/src/cpu/sampling/) against their JS references in sampler.ts, on
// every ISA path: random rows of awkward lengths with ties, ±0, ±inf; NaN rows are declined.
// Then whole seeded Sampler runs give the same tokens with the native scans on and off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, bestFirstAboveGap, NEGLIGIBLE_LOGIT_GAP, Sampler, setNativeScans, sortedAboveGap, topKIndices } from '../../src/engine/sampler.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../src/engine/types.ts';
import { nativeAboveGap, nativeArgmax, nativeTopK } from '../../src/native/sampling.ts';
import { isaCases, rng, withIsa } from './helpers.ts';

const { run, missing } = isaCases();
const LENGTHS = [1, 2, 15, 16, 17, 31, 33, 100, 1000, 4097, 151936];

/** A row of n logits; `kind` picks the value mix (ties and specials are where scans go wrong). */
function row(n: number, seed: number, kind: 'uniform' | 'ties' | 'specials' | 'peaked'): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (kind === 'uniform') x[i] = (r() * 2 - 1) * 20;
    else if (kind === 'ties') x[i] = Math.floor(r() * 5) - 2; // few distinct values: many ties, +0
    else if (kind === 'peaked') x[i] = r() < 0.001 ? 40 + r() : (r() * 2 - 1) * 5;
    else {
      const u = r();
      x[i] = u < 0.05 ? -Infinity : u < 0.1 ? -0 : u < 0.12 ? 0 : u < 0.125 ? Infinity : (r() * 2 - 1) * 50;
    }
  }
  return x;
}

const KINDS = ['uniform', 'ties', 'specials', 'peaked'] as const;

for (const isa of run) {
  test(`logits scans equal the JS references (${isa})`, () => {
    withIsa(isa, () => {
      let seed = 1;
      for (const n of LENGTHS) {
        for (const kind of KINDS) {
          const x = row(n, seed++, kind);
          const what = `n=${n} ${kind}`;
          assert.equal(nativeArgmax(x), argmax(x), `argmax ${what}`);
          for (const k of [1, 2, 7, 40, n, n + 3]) {
            assert.deepEqual(nativeTopK(x, k), topKIndices(x, k), `top-${k} ${what}`);
          }
          assert.deepEqual(nativeAboveGap(x, NEGLIGIBLE_LOGIT_GAP, true), sortedAboveGap(x), `sorted gap ${what}`);
          assert.deepEqual(nativeAboveGap(x, NEGLIGIBLE_LOGIT_GAP, false), bestFirstAboveGap(x), `best-first gap ${what}`);
        }
      }
      // All -inf: every id qualifies, the argmax is 0.
      const inf = new Float32Array(33).fill(-Infinity);
      assert.equal(nativeArgmax(inf), 0);
      assert.deepEqual(nativeAboveGap(inf, NEGLIGIBLE_LOGIT_GAP, true), sortedAboveGap(inf));
      assert.deepEqual(nativeTopK(inf, 5), topKIndices(inf, 5));
    });
  });

  test(`logits scans decline rows holding NaN (${isa})`, () => {
    withIsa(isa, () => {
      for (const at of [0, 5, 16, 32]) {
        const x = row(33, 99 + at, 'uniform');
        x[at] = NaN;
        assert.equal(nativeArgmax(x), undefined);
        assert.equal(nativeTopK(x, 3), undefined);
        assert.equal(nativeAboveGap(x, 30, true), undefined);
      }
    });
  });
}

for (const isa of missing) {
  test(`logits scans (${isa})`, { skip: `this CPU lacks ${isa}` }, () => {});
}

test('seeded Sampler draws the same tokens with native scans on and off', () => {
  const base: SamplingParams = { ...DEFAULT_SAMPLING, seed: 7 };
  const cases: Array<Partial<SamplingParams>> = [
    { temperature: 0 },
    { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 },
    { temperature: 1, topK: 0, topP: 0.9, minP: 0 },
    { temperature: 0.7, topK: 0, topP: 1, minP: 0.1 },
    { temperature: 1.3, topK: 5, topP: 1, minP: 0, repeatPenalty: 1.1, repeatLastN: 64 },
  ];
  for (const c of cases) {
    const tokens = (native: boolean) => {
      setNativeScans(native);
      try {
        const s = new Sampler({ ...base, ...c }, [1, 2, 3]);
        const out: number[] = [];
        for (let i = 0; i < 20; i++) out.push(s.sample(row(151936, 1000 + i, i % 2 ? 'peaked' : 'uniform')));
        return out;
      } finally {
        setNativeScans(true);
      }
    };
    assert.deepEqual(tokens(true), tokens(false), JSON.stringify(c));
  }
});
