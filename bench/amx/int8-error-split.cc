// Where AMX-INT8's error comes from in one SwiGLU expert (float64, no kernels): symmetric INT8
// per 64-element group on the weights, on the expert input x, on h = SiLU(gate)·up, each alone and
// together, and with h kept in BF16. Weights uniform with std 1/sqrt(fan_in) and x ~ N(0, 1), as
// `mixtile synth` makes them (src/model/synth.ts); hidden 2048, ffn 768, 64 tokens.
//   g++ -O2 -o /tmp/int8-error-split bench/amx/int8-error-split.cc && /tmp/int8-error-split
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using V = std::vector<double>;
static void q64(V& v, size_t n0, size_t n) {  // quantize v[n0..n0+n) in groups of 64
  for (size_t g = 0; g < n; g += 64) {
    double m = 0; for (size_t i = 0; i < 64; ++i) m = std::max(m, std::fabs(v[n0 + g + i]));
    double s = m / 127; if (s == 0) continue;
    for (size_t i = 0; i < 64; ++i) v[n0 + g + i] = std::nearbyint(v[n0 + g + i] / s) * s;
  }
}
static double bf(double x) {  // round to BF16 (nearest even)
  float f = float(x);
  unsigned u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}
int main() {
  const int H = 2048, F = 768, T = 64;
  std::mt19937_64 r(1);
  std::uniform_real_distribution<double> U(-1, 1);
  std::normal_distribution<double> N(0, 1);
  auto mat = [&](int rows, int cols) { V m(size_t(rows) * cols); double a = std::sqrt(3.0 / cols); for (auto& x : m) x = U(r) * a; return m; };
  V G = mat(F, H), Up = mat(F, H), D = mat(H, F);
  V X(size_t(T) * H); for (auto& x : X) x = N(r);
  auto run = [&](bool qw, bool qx, bool qh, bool bh) {
    V g = G, u = Up, d = D, x = X;
    if (qw) { for (int i = 0; i < F; ++i) { q64(g, size_t(i) * H, H); q64(u, size_t(i) * H, H); } for (int i = 0; i < H; ++i) q64(d, size_t(i) * F, F); }
    if (qx) for (int t = 0; t < T; ++t) q64(x, size_t(t) * H, H);
    V y(size_t(T) * H, 0);
    for (int t = 0; t < T; ++t) {
      V h(F);
      for (int f = 0; f < F; ++f) { double a = 0, b = 0; for (int k = 0; k < H; ++k) { a += g[size_t(f)*H+k]*x[size_t(t)*H+k]; b += u[size_t(f)*H+k]*x[size_t(t)*H+k]; } h[f] = a / (1 + std::exp(-a)) * b; }
      if (qh) q64(h, 0, F);
      if (bh) for (auto& v : h) v = bf(v);
      for (int o = 0; o < H; ++o) { double s = 0; for (int f = 0; f < F; ++f) s += d[size_t(o)*F+f]*h[f]; y[size_t(t)*H+o] = s; }
    }
    return y;
  };
  V ref = run(false, false, false, false);
  auto rel = [&](const V& y) { double e = 0, n = 0; for (size_t i = 0; i < y.size(); ++i) { e += (y[i]-ref[i])*(y[i]-ref[i]); n += ref[i]*ref[i]; } return std::sqrt(e / n); };
  printf("weights only   %.3e\n", rel(run(true, false, false, false)));
  printf("x only         %.3e\n", rel(run(false, true, false, false)));
  printf("h only         %.3e\n", rel(run(false, false, true, false)));
  printf("all (AMX-INT8) %.3e\n", rel(run(true, true, true, false)));
  printf("w+x int8, h bf16 %.3e\n", rel(run(true, true, false, true)));
}
