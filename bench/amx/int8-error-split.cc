// Where AMX-INT8's error comes from in one SwiGLU expert (float64, no kernels): symmetric INT8
// per group (scale = max|v| / 127, round to nearest even) on the weights, on the expert input x,
// on h = SiLU(gate)·up, each alone and together, at groups 64 / 32 / 16, with h or everything in
// BF16 instead, and with MSE-chosen (clipping) scales. Weights uniform with std 1/sqrt(fan_in) and
// x ~ N(0, 1), as `mixtile synth` makes them (src/model/synth.ts); hidden 2048, ffn 768, 64 tokens.
// Prints the relative L2 error of the expert output against the unquantized forward.
//   g++ -O2 -o /tmp/int8-error-split bench/amx/int8-error-split.cc && /tmp/int8-error-split
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using V = std::vector<double>;

static double bf(double x) {  // round to BF16 (nearest even)
  float f = float(x);
  unsigned u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

// Rounds v[n0 .. n0+n): g > 0 INT8 per group of g, g == 0 BF16, g < 0 untouched. clip: the
// group's scale is the one of max|v| x {1, 0.98, ..., 0.5} with the least squared error.
static void quantize(V& v, size_t n0, size_t n, int g, bool clip = false) {
  if (g < 0) return;
  if (g == 0) {
    for (size_t i = 0; i < n; ++i) v[n0 + i] = bf(v[n0 + i]);
    return;
  }
  for (size_t b = 0; b < n; b += size_t(g)) {
    double m = 0;
    for (int i = 0; i < g; ++i) m = std::max(m, std::fabs(v[n0 + b + i]));
    if (m == 0) continue;
    double best = m, best_err = 1e300;
    for (double f = 1.0; clip && f >= 0.5; f -= 0.02) {
      const double s = m * f / 127;
      double e = 0;
      for (int i = 0; i < g; ++i) {
        const double x = v[n0 + b + i], q = std::clamp(std::nearbyint(x / s), -127.0, 127.0) * s;
        e += (x - q) * (x - q);
      }
      if (e < best_err) best_err = e, best = m * f;
    }
    const double s = best / 127;
    for (int i = 0; i < g; ++i) v[n0 + b + i] = std::clamp(std::nearbyint(v[n0 + b + i] / s), -127.0, 127.0) * s;
  }
}

int main() {
  const int H = 2048, F = 768, T = 64;
  std::mt19937_64 r(1);
  std::uniform_real_distribution<double> U(-1, 1);
  std::normal_distribution<double> N(0, 1);
  auto mat = [&](int rows, int cols) {
    V m(size_t(rows) * cols);
    const double a = std::sqrt(3.0 / cols);
    for (auto& x : m) x = U(r) * a;
    return m;
  };
  const V G = mat(F, H), Up = mat(F, H), D = mat(H, F);
  V X(size_t(T) * H);
  for (auto& x : X) x = N(r);
  // wg, xg, hg: the rounding of weights, x, h (quantize()'s g); clip for x and h.
  auto run = [&](int wg, int xg, int hg, bool clip) {
    V g = G, u = Up, d = D, x = X;
    for (int i = 0; i < F; ++i) {
      quantize(g, size_t(i) * H, H, wg);
      quantize(u, size_t(i) * H, H, wg);
    }
    for (int i = 0; i < H; ++i) quantize(d, size_t(i) * F, F, wg);
    for (int t = 0; t < T; ++t) quantize(x, size_t(t) * H, H, xg, clip);
    V y(size_t(T) * H, 0);
    for (int t = 0; t < T; ++t) {
      V h(F);
      for (int f = 0; f < F; ++f) {
        double a = 0, b = 0;
        for (int k = 0; k < H; ++k) {
          a += g[size_t(f) * H + k] * x[size_t(t) * H + k];
          b += u[size_t(f) * H + k] * x[size_t(t) * H + k];
        }
        h[f] = a / (1 + std::exp(-a)) * b;
      }
      quantize(h, 0, F, hg, clip);
      for (int o = 0; o < H; ++o) {
        double s = 0;
        for (int f = 0; f < F; ++f) s += d[size_t(o) * F + f] * h[f];
        y[size_t(t) * H + o] = s;
      }
    }
    return y;
  };
  const V ref = run(-1, -1, -1, false);
  auto rel = [&](const V& y) {
    double e = 0, n = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      e += (y[i] - ref[i]) * (y[i] - ref[i]);
      n += ref[i] * ref[i];
    }
    return std::sqrt(e / n);
  };
  struct Case {
    const char* name;
    int wg, xg, hg;
    bool clip;
  };
  const Case cases[] = {
      {"AMX-INT8 g64 (w, x, h per 64)", 64, 64, 64, false},
      {"g32 (w, x, h per 32; Q8_0 x Q8_0)", 32, 32, 32, false},
      {"w per 64, x and h per 32", 64, 32, 32, false},
      {"w per 32, x and h per 64", 32, 64, 64, false},
      {"x and h per 16", 64, 16, 16, false},
      {"g64, h BF16 (BF16 down)", 64, 64, 0, false},
      {"g32, h BF16 (BF16 down)", 32, 32, 0, false},
      {"g64, MSE-clipped x and h scales", 64, 64, 64, true},
      {"weights per 64 alone", 64, -1, -1, false},
      {"weights per 32 alone", 32, -1, -1, false},
      {"x per 64 alone", -1, 64, -1, false},
      {"x per 32 alone", -1, 32, -1, false},
      {"h per 64 alone", -1, -1, 64, false},
      {"h per 32 alone", -1, -1, 32, false},
      {"all BF16 (AMX-BF16)", 0, 0, 0, false},
      {"x and h BF16, weights exact", -1, 0, 0, false},
  };
  for (const Case& c : cases) std::printf("%-36s %.3e\n", c.name, rel(run(c.wg, c.xg, c.hg, c.clip)));
}
