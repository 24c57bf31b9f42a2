// Shared pieces of the variants' fused CPU recurrences (ops/variant.py's equations): layer norm
// of a row and its backward, the state h as recurrent dropout and zoneout see it, and the
// gradient carried back to h_{t-1} through both.
//
// Dimensions: T steps, B batch, P the state's features (H, or an LSTM's proj_size).
//   hm      (T, B, P)  m h_{t-1}: the state recurrent dropout's mask m (B, P) lets through to
//                      W_hh, what each step's product reads (h_{t-1} without the mask). Without
//                      ``save`` it has two slots, this step's and the next one's.
//   keep_h  (T, B, P)  zoneout's keep mask (or probability): h_t = k h_{t-1} + (1 - k) h~_t.
#pragma once

#include "autograd.h"
#include "common.h"
#include "masks.h"

namespace rnnkit {

// The vector accumulators of a row's sum: A vectors holding 64 lanes in all (at least 4, at most
// 8): every lane's chain of additions, and its rounding error, is as short on each instruction-set
// path, and the additions overlap.
template <typename T>
constexpr int64_t kAccumulators = std::min<int64_t>(8, std::max<int64_t>(4, 64 / at::vec::Vectorized<T>::size()));

// A accumulators summed by halves into one vector, the first N given, those past them zero (not added).
template <typename T, size_t A, size_t N>
C10_ALWAYS_INLINE at::vec::Vectorized<T> by_halves(std::array<at::vec::Vectorized<T>, N> sums) {
  static_assert(N <= A);
  for (size_t half = A / 2; half > 0; half /= 2) {
    for (size_t a = 0; a < half && a + half < N; ++a) sums[a] = sums[a] + sums[a + half];
  }
  return sums[0];
}

// A sum along a row of n values in kAccumulators vector accumulators, vector i of the row into
// accumulator i % A. ``add(sum, lanes, j)`` returns sum plus vector j's terms. The row is walked A
// vectors at a time, so that each accumulator stays in a register (one picked by a computed index
// lives in memory, each addition waiting on a store).
template <typename T, typename F>
C10_ALWAYS_INLINE T row_total(int64_t n, const F& add) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t W = V::size(), A = kAccumulators<T>;
  constexpr auto accumulators = std::make_index_sequence<A>{};
  std::array<V, A> sums;
  sums.fill(V(T(0)));
  int64_t j = 0;
  for (; j + A * W <= n; j += A * W) {
    unrolled([&](auto a) { sums[a] = add(sums[a], WholeLanes<T>{}, j + a * W); }, accumulators);
  }
  unrolled(
      [&](auto a) {  // fewer than A vectors are left, the last maybe partial
        const int64_t at = j + a * W;
        if (at + W <= n) {
          sums[a] = add(sums[a], WholeLanes<T>{}, at);
        } else if (at < n) {
          sums[a] = add(sums[a], Lanes<T>{static_cast<int>(n - at)}, at);
        }
      },
      accumulators);
  return at::vec::vec_reduce_all<T>([](const V& a, const V& b) { return a + b; }, by_halves<T, A>(sums));
}

// N vectors for each of up to V::size() rows of a group, in memory and left uninitialised: an
// std::array of Vectorized is zeroed at every call (its constructor clears the lanes), a memset
// as long as the work on a group of short rows.
template <typename T, int64_t N = 1>
struct GroupVectors {
  using V = at::vec::Vectorized<T>;
  __at_align__ T values[V::size()][N * V::size()];

  C10_ALWAYS_INLINE void set(int64_t r, int64_t a, const V& x) { x.store(values[r] + a * V::size()); }
  C10_ALWAYS_INLINE V at(int64_t r, int64_t a = 0) const { return V::loadu(values[r] + a * V::size()); }
  template <typename Row>
  C10_ALWAYS_INLINE void put(int64_t r, const Row& row) {
    for (int64_t a = 0; a < N; ++a) set(r, a, row.v[a]);
  }
};

// The totals of W = V::size() vectors in one vector: lane r holds the sum of sums[r]'s lanes, each
// summed as vec_reduce_all sums one vector's (lanes i and i + W/2 first, then i and i + W/4, ...).
// A group of short rows' sums this way take a few shuffles and additions per row, and one division
// and one square root for all of them, where each row's own were a chain of dependent operations.
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> lane_totals(const GroupVectors<T>& sums) {
  using V = at::vec::Vectorized<T>;
  __at_align__ T totals[V::size()];
  for (int64_t r = 0; r < V::size(); ++r) {
    totals[r] = at::vec::vec_reduce_all<T>([](const V& a, const V& b) { return a + b; }, sums.at(r));
  }
  return V::loadu(totals);
}

// AVX-512 and AVX2 float: the W vectors transposed as they are summed, pairs of rows' vectors
// shuffled together at each halving (the same pairs of lanes as vec_reduce_all's), then the totals
// put in row order.
#if defined(CPU_CAPABILITY_AVX512)
template <>
C10_ALWAYS_INLINE at::vec::Vectorized<float> lane_totals<float>(const GroupVectors<float>& s) {
  __m512 h8[8], h4[4], h2[2];
  for (int k = 0; k < 8; ++k) {  // lanes i + i+8: rows 2k, 2k+1 in the low and high 8 lanes
    const __m512 x = s.at(2 * k), y = s.at(2 * k + 1);
    h8[k] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
  }
  for (int k = 0; k < 4; ++k) {  // i + i+4: rows 4k .. 4k+3, one a quarter
    h4[k] = _mm512_add_ps(_mm512_shuffle_f32x4(h8[2 * k], h8[2 * k + 1], 0x88),
                          _mm512_shuffle_f32x4(h8[2 * k], h8[2 * k + 1], 0xDD));
  }
  for (int k = 0; k < 2; ++k) {  // i + i+2: quarter j, rows 8k + j and 8k + 4 + j
    h2[k] = _mm512_add_ps(_mm512_shuffle_ps(h4[2 * k], h4[2 * k + 1], 0x44),
                          _mm512_shuffle_ps(h4[2 * k], h4[2 * k + 1], 0xEE));
  }
  // i + i+1: lane 4j + m holds row 4m + j
  const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(h2[0], h2[1], 0x88), _mm512_shuffle_ps(h2[0], h2[1], 0xDD));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), t);
}
#elif defined(CPU_CAPABILITY_AVX2)
template <>
C10_ALWAYS_INLINE at::vec::Vectorized<float> lane_totals<float>(const GroupVectors<float>& s) {
  __m256 h4[4], h2[2];
  for (int k = 0; k < 4; ++k) {  // lanes i + i+4: rows 2k, 2k+1 in the low and high 4 lanes
    const __m256 x = s.at(2 * k), y = s.at(2 * k + 1);
    h4[k] = _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20), _mm256_permute2f128_ps(x, y, 0x31));
  }
  for (int k = 0; k < 2; ++k) {  // i + i+2: half j, rows 4k + j and 4k + 2 + j
    h2[k] = _mm256_add_ps(_mm256_shuffle_ps(h4[2 * k], h4[2 * k + 1], 0x44),
                          _mm256_shuffle_ps(h4[2 * k], h4[2 * k + 1], 0xEE));
  }
  // i + i+1: lane 4j + m holds row 2m + j
  const __m256 t = _mm256_add_ps(_mm256_shuffle_ps(h2[0], h2[1], 0x88), _mm256_shuffle_ps(h2[0], h2[1], 0xDD));
  return _mm256_permutevar8x32_ps(t, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
#endif

// A row of n values, N vectors (N <= kAccumulators: one vector per accumulator of row_total), in
// registers, the lanes past the row zero: ``summed`` and lane_totals give row_total's sum. Layer
// norm's rows at small H (an LSTM's 4H = 40, its c's H = 10) are a few such vectors.
template <typename T, int64_t N>
struct ShortRow {
  using V = at::vec::Vectorized<T>;
  static constexpr int64_t W = V::size();
  std::array<V, N> v;

  // The lanes of the last vector that lie in a row of n values.
  C10_ALWAYS_INLINE static int64_t tail(int64_t n) { return n - (N - 1) * W; }

  C10_ALWAYS_INLINE static ShortRow load(const T* p, int64_t n) {
    ShortRow row;
    for (int64_t a = 0; a + 1 < N; ++a) row.v[a] = V::loadu(p + a * W);
    row.v[N - 1] = V::loadu(p + (N - 1) * W, tail(n));
    return row;
  }

  C10_ALWAYS_INLINE void store(T* p, int64_t n) const {
    for (int64_t a = 0; a + 1 < N; ++a) v[a].store(p + a * W);
    store_first(v[N - 1], p + (N - 1) * W, tail(n));
  }

  // The vectors summed by halves, as row_total sums its accumulators (those past N hold zero).
  C10_ALWAYS_INLINE V summed() const { return by_halves<T, kAccumulators<T>>(v); }
};

// Calls body(std::integral_constant<int64_t, N>) with N the vectors a row of n values takes, and
// returns true, if the row is short (0 < N <= kAccumulators); else returns false.
template <typename T, typename F>
bool short_rows(int64_t n, const F& body) {
  constexpr int64_t W = at::vec::Vectorized<T>::size();
  const int64_t vectors = (n + W - 1) / W;
  bool found = false;
  unrolled([&](auto i) {
    if (i + 1 == vectors) body(std::integral_constant<int64_t, i + 1>{}), found = true;
  }, std::make_index_sequence<kAccumulators<T>>{});
  return found;
}

// A row of layer norm: v (n values) is read, and written over where a gain is given; v_hat, the
// normalised row, and rstd, its 1 / std, are written.
template <typename T>
struct NormRow {
  T *v, *v_hat, *rstd;
};

// A row of layer norm's backward: grad (n values), the gradient of LN's output gain v_hat (+ shift),
// gives d, v's (d may be grad); v_hat and rstd as ``normalise`` gave them.
template <typename T>
struct NormGrad {
  const T* v_hat;
  T rstd;
  const T* grad;
  T* d;
};

// Stores a row's v_hat, and over v gain v_hat (+ shift) where a gain is given.
template <typename T, typename L>
C10_ALWAYS_INLINE void store_normalised(const NormRow<T>& row, const L& lanes, int64_t j,
                                        const at::vec::Vectorized<T>& v_hat, const T* gain, const T* shift) {
  lanes.store(row.v_hat + j, v_hat);
  if (!gain) return;
  const auto y = v_hat * lanes.load(gain + j);
  lanes.store(row.v + j, shift ? y + lanes.load(shift + j) : y);
}

// ``normalise`` of k <= V::size() short rows of N vectors: their sums side by side in one vector
// (lane_totals), one division and one square root for all. Each row is read twice and written once,
// after every row was read: a row's partial last vector, stored masked, cannot be forwarded to the
// next row's first load, which overlaps it, and that load would wait for the store to reach the cache.
template <typename T, int64_t N>
void normalise_short(int64_t n, const NormRow<T>* rows, int64_t k, const T* gain, const T* shift) {
  using V = at::vec::Vectorized<T>;
  using Short = ShortRow<T, N>;
  const V in_row = V::set(V(T(0)), V(T(1)), Short::tail(n));  // the last vector's lanes in the row
  GroupVectors<T> sums;
  for (int64_t r = 0; r < V::size(); ++r) sums.set(r, 0, r < k ? Short::load(rows[r].v, n).summed() : V(T(0)));
  __at_align__ T mean[V::size()], rstd[V::size()];
  (lane_totals<T>(sums) / V(T(n))).store(mean);
  GroupVectors<T, N> centred;
  for (int64_t r = 0; r < k; ++r) {
    Short d = Short::load(rows[r].v, n);
    for (int64_t a = 0; a < N; ++a) d.v[a] = d.v[a] - V(mean[r]);
    d.v[N - 1] = d.v[N - 1] * in_row;
    Short squares;
    for (int64_t a = 0; a < N; ++a) squares.v[a] = d.v[a] * d.v[a];
    centred.put(r, d), sums.set(r, 0, squares.summed());
  }
  (V(T(1)) / (lane_totals<T>(sums) / V(T(n)) + V(T(1e-5))).sqrt()).store(rstd);
  for (int64_t r = 0; r < k; ++r) {
    *rows[r].rstd = rstd[r];
    for (int64_t a = 0; a + 1 < N; ++a) {
      store_normalised(rows[r], WholeLanes<T>{}, a * V::size(), centred.at(r, a) * V(rstd[r]), gain, shift);
    }
    store_normalised(rows[r], Lanes<T>{static_cast<int>(Short::tail(n))}, (N - 1) * V::size(),
                     centred.at(r, N - 1) * V(rstd[r]), gain, shift);
  }
}

// ``normalise_backward`` of k <= V::size() short rows, as normalise_short.
template <typename T, int64_t N>
void normalise_backward_short(int64_t n, const NormGrad<T>* rows, int64_t k, const T* gain) {
  using V = at::vec::Vectorized<T>;
  using Short = ShortRow<T, N>;
  const Short g = gain ? Short::load(gain, n) : Short{};
  auto gradient = [&](const NormGrad<T>& row) {  // d v_hat = grad gain
    Short d = Short::load(row.grad, n);
    for (int64_t a = 0; gain && a < N; ++a) d.v[a] = d.v[a] * g.v[a];
    return d;
  };
  GroupVectors<T> sums, dots;
  for (int64_t r = 0; r < V::size(); ++r) {
    if (r >= k) {
      sums.set(r, 0, V(T(0))), dots.set(r, 0, V(T(0)));
      continue;
    }
    Short d = gradient(rows[r]);
    sums.set(r, 0, d.summed());
    const Short x = Short::load(rows[r].v_hat, n);
    for (int64_t a = 0; a < N; ++a) d.v[a] = d.v[a] * x.v[a];
    dots.set(r, 0, d.summed());
  }
  __at_align__ T mean[V::size()], mean_dot[V::size()];
  (lane_totals<T>(sums) / V(T(n))).store(mean);
  (lane_totals<T>(dots) / V(T(n))).store(mean_dot);
  GroupVectors<T, N> grads;
  for (int64_t r = 0; r < k; ++r) {
    const Short x = Short::load(rows[r].v_hat, n);
    Short d = gradient(rows[r]);
    const V m(mean[r]), dot(mean_dot[r]), rstd(rows[r].rstd);
    for (int64_t a = 0; a < N; ++a) d.v[a] = rstd * (d.v[a] - m - x.v[a] * dot);
    grads.put(r, d);
  }
  for (int64_t r = 0; r < k; ++r) Short::load(grads.values[r], n).store(rows[r].d, n);
}

// LN of each of k rows without gain or shift: v_hat = (v - mean) / sqrt(var + 1e-5) (torch.nn.
// LayerNorm's eps), the biased variance from the deviations (two passes, as exact as torch's).
// Given a gain (n), v is written over with gain v_hat (+ shift): LN with its parameters (v_hat may
// then be v itself).
template <typename T>
void normalise(int64_t n, const NormRow<T>* rows, int64_t k, const T* gain = nullptr, const T* shift = nullptr) {
  using V = at::vec::Vectorized<T>;
  const bool is_short = short_rows<T>(n, [&](auto vectors) {
    for (int64_t r = 0; r < k; r += V::size()) {
      normalise_short<T, vectors>(n, rows + r, std::min<int64_t>(V::size(), k - r), gain, shift);
    }
  });
  for (int64_t r = 0; r < k && !is_short; ++r) {
    const NormRow<T>& row = rows[r];
    const T mean = row_total<T>(n, [&](const V& s, const auto& L, int64_t j) { return s + L.load(row.v + j); }) / T(n);
    const T squares = row_total<T>(n, [&](const V& s, const auto& L, int64_t j) {
      const V d = L.only(L.load(row.v + j) - V(mean));
      return at::vec::fmadd(d, d, s);
    });
    const T rstd = *row.rstd = T(1) / std::sqrt(squares / T(n) + T(1e-5));
    vectorized<T>(n, [&](const auto& L, int64_t j) {
      store_normalised(row, L, j, (L.load(row.v + j) - V(mean)) * V(rstd), gain, shift);
    });
  }
}

// The backward of ``normalise`` for each of k rows: d v_hat = grad gain (grad without a gain) ->
// d v = rstd (d v_hat - mean(d v_hat) - v_hat mean(d v_hat v_hat)).
template <typename T>
void normalise_backward(int64_t n, const NormGrad<T>* rows, int64_t k, const T* gain = nullptr) {
  using V = at::vec::Vectorized<T>;
  const bool is_short = short_rows<T>(n, [&](auto vectors) {
    for (int64_t r = 0; r < k; r += V::size()) {
      normalise_backward_short<T, vectors>(n, rows + r, std::min<int64_t>(V::size(), k - r), gain);
    }
  });
  for (int64_t r = 0; r < k && !is_short; ++r) {
    const NormGrad<T>& row = rows[r];
    auto gradient = [&](const auto& L, int64_t j) {
      return gain ? L.load(row.grad + j) * L.load(gain + j) : L.load(row.grad + j);
    };
    const T mean = row_total<T>(n, [&](const V& s, const auto& L, int64_t j) { return s + gradient(L, j); }) / T(n);
    const T mean_dot = row_total<T>(n, [&](const V& s, const auto& L, int64_t j) {
      return at::vec::fmadd(gradient(L, j), L.load(row.v_hat + j), s);
    }) / T(n);
    vectorized<T>(n, [&](const auto& L, int64_t j) {
      const V x = L.load(row.v_hat + j);
      L.store(row.d + j, V(row.rstd) * (gradient(L, j) - V(mean) - x * V(mean_dot)));
    });
  }
}

// sums (n) plus the terms of the sequences alive at step t in [begin, end), added row after row:
// term(sum, lanes, j, b) returns sum plus sequence b's terms of vector j. A short row's sums (at most
// 8 vectors) stay in registers across the rows, each its own chain of additions: read back from
// memory for each row, a sum waited for the row before's store. A longer row's vectors are added
// row by row, each row read once while the sums stay in cache.
template <typename T, typename F>
void add_rows(T* sums, int64_t n, const Steps& steps, int64_t t, int64_t begin, int64_t end, const F& term) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t W = V::size(), K = 8;
  if (n > K * W) {
    for (int64_t b = begin; b < end; ++b) {
      if (!steps.alive(t, b)) continue;
      vectorized<T>(n, [&](const auto& L, int64_t j) { L.store(sums + j, term(L.load(sums + j), L, j, b)); });
    }
    return;
  }
  std::array<Lanes<T>, K> lanes;
  std::array<V, K> sum;
  unrolled([&](auto k) {
    lanes[k] = Lanes<T>{static_cast<int>(std::clamp<int64_t>(n - k * W, 0, W))};
    if (lanes[k].count > 0) sum[k] = lanes[k].load(sums + k * W);
  }, std::make_index_sequence<K>{});
  for (int64_t b = begin; b < end; ++b) {
    if (!steps.alive(t, b)) continue;
    unrolled([&](auto k) {
      if (lanes[k].count > 0) sum[k] = term(sum[k], lanes[k], k * W, b);
    }, std::make_index_sequence<K>{});
  }
  unrolled([&](auto k) {
    if (lanes[k].count > 0) lanes[k].store(sums + k * W, sum[k]);
  }, std::make_index_sequence<K>{});
}

// How many rows ``in_groups`` hands over at once: AVX-512's float vector holds 16 rows' sums.
constexpr int64_t kRowsAtOnce = 16;

// Calls group(items, k) with item(b) of the b in [begin, end) where keep(b), at most kRowsAtOnce at a
// time (items a pointer to k of them).
template <typename Keep, typename Item, typename Group>
void in_groups(int64_t begin, int64_t end, const Keep& keep, const Item& item, const Group& group) {
  std::array<decltype(item(begin)), kRowsAtOnce> items;
  int64_t k = 0;
  for (int64_t b = begin; b < end; ++b) {
    if (!keep(b)) continue;
    items[k++] = item(b);
    if (k == kRowsAtOnce) group(items.data(), k), k = 0;
  }
  if (k > 0) group(items.data(), k);
}

// ``in_groups`` of the sequences b in [begin, end) alive at step t.
template <typename Item, typename Group>
void alive_in_groups(const Steps& steps, int64_t t, int64_t begin, int64_t end, const Item& item, const Group& group) {
  in_groups(begin, end, [&](int64_t b) { return steps.alive(t, b); }, item, group);
}

// The backward of the layer norm of step t's recurrent products W_hh m h_{t-1} for the sequences
// alive in [begin, end) of B, whole rows of n = G H values: from grad, the gradient of LN's output,
// adds the gain's terms grad v_hat into sums (n) and writes d, the product's gradient. v_hat, grad
// and d are (T, B, n), rstd (T, B); d may be grad.
template <typename T>
void recurrent_layer_norm_backward(int64_t n, int64_t B, const Steps& steps, int64_t t, int64_t begin, int64_t end,
                                   const T* v_hat, const T* rstd, const T* grad, T* d, const T* gain, T* sums) {
  const int64_t at_t = t * B * n;
  add_rows(sums, n, steps, t, begin, end, [&](const auto& sum, const auto& L, int64_t j, int64_t b) {
    return at::vec::fmadd(L.load(grad + at_t + b * n + j), L.load(v_hat + at_t + b * n + j), sum);
  });
  alive_in_groups(
      steps, t, begin, end,
      [&](int64_t b) {
        const int64_t row = t * B + b;
        return NormGrad<T>{v_hat + row * n, rstd[row], grad + row * n, d + row * n};
      },
      [&](const auto* rows, int64_t k) { normalise_backward(n, rows, k, gain); });
}

// Calls body(b) for the sequences b in [begin, end) alive at step t. The variant loops run each
// phase of a step over all their rows before the next (layer norm's rows by ``alive_in_groups``).
template <typename F>
void each_alive(const Steps& steps, int64_t t, int64_t begin, int64_t end, const F& body) {
  for (int64_t b = begin; b < end; ++b) {
    if (steps.alive(t, b)) body(b);
  }
}

// Calls body(b, count) for the sequences b in [begin, end) alive at step t, each row of n values
// at b's offset. Where the rows lie end to end (``contiguous``: one gate, whole rows of the state)
// and all are alive, once for all of them, body(begin, (end - begin) n): one run of whole vectors
// in place of a masked tail in every row (H = 10: one masked vector a row, 64 rows in 40 vectors).
template <typename F>
void each_alive_run(const Steps& steps, int64_t t, int64_t begin, int64_t end, int64_t n, bool contiguous,
                    const F& body) {
  bool all = contiguous;
  for (int64_t b = begin; all && steps.lengths && b < end; ++b) all = steps.alive(t, b);
  if (all) return body(begin, (end - begin) * n);
  each_alive(steps, t, begin, end, [&](int64_t b) { body(b, n); });
}

// scratch_for's room for a loop's products; where every part's product is whole rows of ``width``
// values (``whole``), exactly that wide: apply writes no padding, so a step's rows lie end to end,
// one run for each_alive_run.
template <typename T>
at::Tensor variant_scratch(bool whole, int64_t width, int64_t parts, int64_t rows,
                           std::initializer_list<const std::vector<PackedWeight<T>>*> weights,
                           const at::TensorOptions& options, int64_t across) {
  return whole ? empty_tensor({parts, rows, width}, options) : scratch_for<T>(parts, rows, weights, options, across);
}

// Whether a variant's loop gives each thread whole sequences: always with layer norm, which reads a
// whole row of a step; otherwise as the plain kernels choose (Tiles::by_rows).
inline bool variant_by_rows(bool layer_norm, int64_t rows, int64_t weight_bytes) {
  return layer_norm || Tiles::by_rows(rows, weight_bytes);
}

// Zoneout of one state: keep * old + (1 - keep) * fresh, keep the mask drawn for the step (or its
// probability, in evaluation).
template <typename V>
V zoned(const V& keep, const V& old, const V& fresh) {
  return keep * old + (V(1) - keep) * fresh;
}

// A pointer to t's data, or nullptr for an undefined tensor (a variant that is off). Taken once
// before a loop: each data_ptr call checks the tensor, which costs as much as a small row's work.
template <typename T>
T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// An optional tensor checked against ``shape`` and ``like``'s dtype and device, contiguous; undefined if absent.
inline at::Tensor checked_contiguous(const char* op, const char* name, const std::optional<at::Tensor>& t,
                                     at::IntArrayRef shape, const at::Tensor& like) {
  check_tensor(op, name, t, shape, like);
  return t.has_value() ? t->contiguous() : at::Tensor();
}

// b_ih + b_hh for a variant op's input projection of G values (add_biases, of b_hh its first
// ``of_b_hh`` values where given), both checked against x first.
inline at::Tensor summed_input_bias(const char* op, const std::optional<at::Tensor>& b_ih,
                                    const std::optional<at::Tensor>& b_hh, int64_t G, const at::Tensor& x,
                                    std::optional<int64_t> of_b_hh = std::nullopt) {
  check_tensor(op, "b_ih", b_ih, {G}, x), check_tensor(op, "b_hh", b_hh, {G}, x);
  return add_biases(b_ih, b_hh, G, x.options(), of_b_hh);
}

// A variant op's input projection of every step, a_t = LN(W_ih x_t; gamma_ih) + bias (T, B, G), for
// x (T, B, I) and w_ih (G, I): one product before the loop, as in the plain kernels, then each row's
// layer norm where ``ln_ih`` (gamma_ih, (G)) is given. With ``save`` a_hat (T, B, G) and rstd (T, B)
// keep the normalised rows and their 1 / std for the backward (else, and without layer norm, empty).
struct VariantInput {
  at::Tensor xw, a_hat, rstd;
};

inline VariantInput variant_input(const char* op, const at::Tensor& x, const at::Tensor& w_ih,
                                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& ln_ih,
                                  bool save) {
  TORCH_CHECK(x.dim() == 3 && x.device().is_cpu() && w_ih.dim() == 2, op,
              ": expected x of 3 dimensions (T, B, I) on the CPU and w_ih (G, I), got ", x.sizes(), " on ",
              x.device(), " and ", w_ih.sizes());
  const int64_t T = x.size(0), B = x.size(1), G = w_ih.size(0);
  check_tensor(op, "w_ih", w_ih, {G, x.size(2)}, x);
  check_tensor(op, "bias", bias, {G}, x);
  check_tensor(op, "ln_ih_weight", ln_ih, {G}, x);
  auto none = [&] { return empty_tensor({0}, x.options()); };  // each result its own tensor, none aliased
  if (!ln_ih.has_value()) return {project_input(x.contiguous(), w_ih, bias), none(), none()};
  at::Tensor xw = project_input(x.contiguous(), w_ih, std::nullopt);
  at::Tensor a_hat = save ? empty_tensor(xw.sizes(), xw.options()) : xw, rstd = empty_tensor({T, B}, x.options());
  const at::Tensor gain = ln_ih->contiguous(), shift = bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "variant_input", [&] {
    using T_ = scalar_t;
    T_ *v = xw.data_ptr<T_>(), *v_hat = a_hat.data_ptr<T_>(), *r = rstd.data_ptr<T_>();
    const T_ *g = gain.data_ptr<T_>(), *b = data_or_null<T_>(shift);
    at::parallel_for(0, T * B, std::max<int64_t>(1, 16384 / std::max<int64_t>(G, 1)), [&](int64_t r0, int64_t r1) {
      in_groups(
          r0, r1, [](int64_t) { return true; },
          [&](int64_t row) { return NormRow<T_>{v + row * G, v_hat + row * G, r + row}; },  // in place without ``save``
          [&](const auto* rows, int64_t k) { normalise(G, rows, k, g, b); });
    });
  });
  return {xw, save ? a_hat : none(), save ? rstd : none()};
}

// The backward of variant_input's row layer norm, from d a_t (T, B, G) and what the forward kept
// (a_hat (T, B, G), rstd (T, B)): {d v, the gradient of the product W_ih x_t; d gamma_ih; d bias, or
// empty unless ``bias``}. d v is LN's backward of d a_t gamma_ih, row by row; d gamma_ih sums
// d a_t a_hat over the rows and d bias d a_t: each block of rows sums its own by halves while they
// are in cache, then the blocks' sums are summed by halves.
inline std::vector<at::Tensor> input_layer_norm_backward(const at::Tensor& grad_xw, const at::Tensor& ln_ih,
                                                         const at::Tensor& a_hat, const at::Tensor& rstd, bool bias) {
  const int64_t T = grad_xw.size(0), B = grad_xw.size(1), G = grad_xw.size(2);
  const int64_t rows = T * B, block = std::clamp<int64_t>((int64_t(1) << 15) / std::max<int64_t>(G, 1), 8, 256);
  const int64_t blocks = (rows + block - 1) / block;
  const auto options = grad_xw.options();
  at::Tensor grad_v = workspace(Slot::kGradNormalised, {T, B, G}, options, false);
  at::Tensor gain_sums = empty_tensor({blocks, G}, options), bias_sums = empty_tensor({blocks, G}, options);
  const at::Tensor gain = ln_ih.contiguous(), grad = grad_xw.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "input_layer_norm_backward", [&] {
    using T_ = scalar_t;
    const T_ *d = grad.data_ptr<T_>(), *v_hat = a_hat.data_ptr<T_>(), *r = rstd.data_ptr<T_>();
    const T_* g = gain.data_ptr<T_>();
    T_ *dv = grad_v.data_ptr<T_>(), *pg = gain_sums.data_ptr<T_>(), *pb = bias_sums.data_ptr<T_>();
    at::parallel_for(0, blocks, 1, [&](int64_t k0, int64_t k1) {
      T_* products = thread_scratch<T_>((block + halvings(block)) * G);
      T_* scratch = products + block * G;
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t r0 = k * block, n = std::min(block, rows - r0);
        for (int64_t at = r0 * G; at < (r0 + n) * G; at += G) {
          T_* prod = products + at - r0 * G;
          vectorized<T_>(G, [&](const auto& L, int64_t j) {
            L.store(prod + j, L.load(d + at + j) * L.load(v_hat + at + j));
          });
        }
        in_groups(
            r0, r0 + n, [](int64_t) { return true; },
            [&](int64_t row) { return NormGrad<T_>{v_hat + row * G, r[row], d + row * G, dv + row * G}; },
            [&](const auto* rows, int64_t k) { normalise_backward(G, rows, k, g); });
        column_sums(products, n, G, G, pg + k * G, scratch);
        if (bias) column_sums(d + r0 * G, n, G, G, pb + k * G, scratch);
      }
    });
  });
  return {grad_v, summed_rows(gain_sums), bias ? summed_rows(bias_sums) : empty_tensor({0}, options)};
}

// The gradients of variant_input's tensors from d a_t (T, B, G): {d x, d w_ih, d bias, d gamma_ih},
// d x empty unless ``input_grad``, d bias unless ``bias``, d gamma_ih without layer norm. Given
// ``joined`` (T, B, K), the input of another weight whose product has the same gradient d a_t (an
// Elman cell's m h_{t-1}, without layer norm), that weight's gradient comes fifth, from the same
// product over all rows.
inline std::vector<at::Tensor> variant_input_gradients(const char* op, const at::Tensor& grad_xw,
                                                       const at::Tensor& x_in, const at::Tensor& w_ih, bool bias,
                                                       bool input_grad, const std::optional<at::Tensor>& ln_ih,
                                                       const at::Tensor& a_hat, const at::Tensor& rstd,
                                                       const at::Tensor& joined = {}) {
  const int64_t T = grad_xw.size(0), B = grad_xw.size(1), G = grad_xw.size(2);
  TORCH_CHECK(x_in.dim() == 3, op, ": expected x of 3 dimensions (T, B, I), got ", x_in.sizes());
  const at::Tensor x = x_in.contiguous();
  auto none = [&] { return empty_tensor({0}, grad_xw.options()); };
  check_tensor(op, "x", x, {T, B, x.size(2)}, grad_xw);
  check_tensor(op, "w_ih", w_ih, {G, x.size(2)}, grad_xw);
  check_tensor(op, "ln_ih_weight", ln_ih, {G}, grad_xw);
  if (!ln_ih.has_value()) {
    std::vector<at::Tensor> inputs = {x};
    if (joined.defined()) inputs.push_back(joined);
    auto grads = step_weight_gradients(grad_xw, inputs, bias);
    std::vector<at::Tensor> result = {input_gradient(grad_xw, w_ih, input_grad), grads[0],
                                      bias ? grads.back() : none(), none()};
    if (joined.defined()) result.push_back(grads[1]);
    return result;
  }
  TORCH_CHECK(!joined.defined(), op, ": layer norm on a_t leaves no product to join");
  check_tensor(op, "a_hat", a_hat, {T, B, G}, grad_xw);
  check_tensor(op, "rstd_ih", rstd, {T, B}, grad_xw);
  const auto norm = input_layer_norm_backward(grad_xw, *ln_ih, a_hat, rstd, bias);  // d v, d gamma_ih, d bias
  const at::Tensor& grad_v = norm[0];
  return {input_gradient(grad_v, w_ih, input_grad), step_weight_gradients(grad_v, {x}, false)[0], norm[2], norm[1]};
}

// The state h through a forward loop: read by step i's product as m h_{t-1} (hm), written as the
// zoned h_t to the state (h_n after the last step), output_t and the next step's hm.
template <typename T>
struct VariantState {
  const Steps& steps;
  bool save;
  int64_t B, P;
  T *h, *hm, *output;
  const T *mask, *keep;  // (B, P) and (T, B, P), or nullptr

  VariantState(const Steps& steps, bool save, at::Tensor& h, at::Tensor& hm, at::Tensor& output, const T* mask,
               const T* keep)
      : steps(steps), save(save), B(h.size(-2)), P(h.size(-1)), h(h.data_ptr<T>()), hm(hm.data_ptr<T>()),
        output(output.data_ptr<T>()), mask(mask), keep(keep) {
    for (int64_t b = 0; steps.T > 0 && b < B; ++b) {  // the first step's m h_0
      T* to = this->hm + (slot(0) * B + b) * P;
      for (int64_t k = 0; k < P; ++k) to[k] = mask ? this->h[b * P + k] * mask[b * P + k] : this->h[b * P + k];
    }
  }

  // Step i's room in hm: its time step's with ``save``, else one of two.
  int64_t slot(int64_t i) const { return save ? steps.at(i) : i % 2; }
  const T* in(int64_t i) const { return hm + slot(i) * B * P; }  // m h_{t-1} of step i, (B, P)

  // Sequence b's new state h~ at step i, features k.. of ``lanes``: zoneout against the state, then
  // the state, output_t and the next step's m h. Called with the value as the step computes it: a
  // value stored for it to read back waits, where the store was masked (H = 10, say), until the store
  // reaches the cache.
  template <typename L>
  C10_ALWAYS_INLINE void put(int64_t i, int64_t b, int64_t k, const L& lanes, at::vec::Vectorized<T> y) const {
    const int64_t t = steps.at(i), row = b * P + k;
    if (keep) y = zoned(lanes.load(keep + t * B * P + row), lanes.load(h + row), y);
    lanes.store(h + row, y), lanes.store(output + t * B * P + row, y);
    if (i + 1 < steps.T) lanes.store(hm + slot(i + 1) * B * P + row, mask ? y * lanes.load(mask + row) : y);
  }

  // ``put`` of features [k0, k0 + n) from h_new.
  void write(int64_t i, int64_t b, int64_t k0, int64_t n, const T* h_new) const {
    vectorized<T>(n, [&](const auto& L, int64_t j) { put(i, b, k0 + j, L, L.load(h_new + j)); });
  }

  // Sequence b past its length at step i: its m h carried to the next step (the state stays).
  void hold(int64_t i, int64_t b, int64_t k0, int64_t n) const {
    if (i + 1 == steps.T) return;
    const T* from = hm + (slot(i) * B + b) * P + k0;
    std::copy(from, from + n, hm + (slot(i + 1) * B + b) * P + k0);
  }

  // ``hold`` for every sequence in [begin, end) past its length at step i.
  void hold_ended(int64_t i, int64_t begin, int64_t end, int64_t k0, int64_t n) const {
    for (int64_t b = begin; b < end; ++b) {
      if (!steps.alive(steps.at(i), b)) hold(i, b, k0, n);
    }
  }
};

// dh[part q's features] = m (dv_t W_hh) + k_t dh_t (+ skip): the gradient of the state step t
// started from, for the sequences alive at t. dv_t (B x G*H, row stride ld_dv) is the gradient of
// the product W_hh (m h_{t-1}); dh_t (B x P) the state's at step t; keep_t (B x P) zoneout's mask at
// step t; skip (B x P) what reaches h_{t-1} past W_hh (a GRU's z dh~_t). Absent ones are nullptr.
// Where the part takes whole rows and ``products`` is P wide (variant_scratch), one run a step.
template <typename T>
void carry_variant(const StepProduct<T>& recurrent, const Tiles& tiles, int64_t q, const Steps& steps, int64_t t,
                   const T* dv_t, int64_t ld_dv, at::Tensor& products, T* dh, const T* dh_t, int64_t P, const T* mask,
                   const T* keep_t, const T* skip = nullptr) {
  using V = at::vec::Vectorized<T>;
  const int64_t k0 = tiles.begin(q), n = tiles.end(q) - k0, b0 = tiles.row_begin(q), ld = products.size(2);
  const T* y = recurrent(tiles, q, dv_t, ld_dv, products);
  each_alive_run(steps, t, b0, tiles.row_end(q), n, tiles.whole_rows() && ld == P, [&](int64_t b, int64_t count) {
    const int64_t row = b * P + k0;
    const T* from = y + (b - b0) * ld;
    vectorized<T>(count, [&](const auto& L, int64_t j) {
      V d = L.load(from + j);
      if (mask) d = d * L.load(mask + row + j);
      if (keep_t) d = at::vec::fmadd(L.load(keep_t + row + j), L.load(dh_t + row + j), d);
      if (skip) d = d + L.load(skip + row + j);
      L.store(dh + row + j, d);
    });
  });
}

// The fused variant loop of a cell with one state h (GRU, Elman RNN), by the cell's step:
//   Cell::kGates                 G, the gates of a step (GRU 3, RNN 1)
//   Cell::kSavesProduct          whether the backward reads u_n (the GRU's r-scaled product)
//   Cell::kOfTheSum              whether h~ is a function of a + u alone (Elman): the backward
//       then reads no h_{t-1} (none is saved), nothing reaches h_{t-1} past W_hh, and without layer
//       norm d u = d a, so that one product over [x | m h] gives W_ih's and W_hh's gradients
//   Cell::kSummedBiasGates       the first gates, whose a and u are only ever summed (Elman 1, GRU 2: r
//       and z, not n, whose b_hn r scales): without layer norm on u, their b_hh joins b_ih in the input
//       projection, as the plain kernels sum them, and the cell adds the other gates' b_hh to u
//   Cell::forward(L, j, H, n, a, u, u_bias, h_old, g, u_n) -> h~ of units j..: a the input projection
//       (gate k at a[k * H]), u the recurrent product (gate k at u[k * n]), with layer norm and b_hh,
//       or without them and u_bias the b_hh a lacks (gates from kSummedBiasGates on, gate k at
//       u_bias[k * H]; nullptr where there is none to add); it stores the activated gates (g[k * H])
//       and u_n where saved
//   Cell::backward(L, j, H, dh, g, u_n, h_old, d_a, d_u, skip): from dh = d h~, the gradients of the
//       pre-activations a (d_a[k * H]) and of u (d_u[k * H]), and what reaches h_{t-1} past W_hh (skip)
//
// Tensors as in the kernels: x, w_ih, b_ih and ln_ih give the input projections a_t, xw (T, B, G*H)
// (variant_input; b_hh is added to the product after its layer norm, or without one to a where
// kSummedBiasGates allows, else by the cell); saved gates (T, B, G*H), h_prev (T, B, H), u_n (T, B, H), v_hat
// (T, B, G*H) and rstd (T, B) with layer norm. Returns output,
// h_n, then what the backward reads: hm, gates, h_prev, u_n, v_hat, rstd, a_hat, rstd_ih.
using SingleStateForward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                      at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

template <typename Cell>
SingleStateForward single_state_variant_forward(const char* op, const at::Tensor& x, const at::Tensor& w_ih,
                                                const std::optional<at::Tensor>& b_ih,
                                                const std::optional<at::Tensor>& ln_ih, const at::Tensor& h0,
                                                const at::Tensor& w_hh, const std::optional<at::Tensor>& b_hh_in,
                                                const std::optional<at::Tensor>& ln_hh_in,
                                                const std::optional<at::Tensor>& mask_in,
                                                const std::optional<at::Tensor>& keep_in,
                                                const std::optional<at::Tensor>& lengths_in, bool reverse, bool save) {
  constexpr int64_t G = Cell::kGates;
  // Without layer norm on u, the first Cell::kSummedBiasGates gates' b_hh is in the input projection.
  const bool summed = !ln_hh_in.has_value() && b_hh_in.has_value() && w_ih.dim() == 2;
  const int64_t first_of_u = summed ? Cell::kSummedBiasGates : 0;  // the first gate whose b_hh is added to u
  const auto input_bias =
      summed ? summed_input_bias(op, b_ih, b_hh_in, w_ih.size(0), x, first_of_u * w_ih.size(0) / G) : b_ih;
  const VariantInput input = variant_input(op, x, w_ih, input_bias, ln_ih, save);
  const at::Tensor& xw = input.xw;
  TORCH_CHECK(h0.dim() == 2 || h0.dim() == 3, op, ": expected h0 of shape (B, H) or (1, B, H), got ", h0.sizes());
  const int64_t T = xw.size(0), B = xw.size(1), H = h0.size(-1), GH = G * H;
  check_tensor(op, "xw", xw, {T, B, GH}, xw);
  check_state(op, "h0", h0, B, H, xw);
  check_tensor(op, "w_hh", w_hh, {GH, H}, xw);
  const at::Tensor b_hh = checked_contiguous(op, "b_hh", b_hh_in, {GH}, xw);
  const at::Tensor ln_hh = checked_contiguous(op, "ln_hh_weight", ln_hh_in, {GH}, xw);
  const at::Tensor mask = checked_contiguous(op, "dropout_mask", mask_in, {B, H}, xw);
  const at::Tensor keep = checked_contiguous(op, "keep_h", keep_in, {T, B, H}, xw);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  const auto options = xw.options();
  const int64_t kept = save ? T : std::min<int64_t>(T, 1);
  const auto kept_lengths = save ? lengths : std::nullopt;  // zeros where the backward's sums read dead rows
  const bool ln = ln_hh.defined();
  auto saved = [&](bool on, at::IntArrayRef shape) {
    return on ? step_results(shape, options, kept_lengths) : empty_tensor({0}, options);
  };
  at::Tensor output = step_results({T, B, H}, options, lengths);
  at::Tensor h = copy_of(h0);
  at::Tensor hm = empty_tensor({save ? T : std::min<int64_t>(T, 2), B, H}, options);
  at::Tensor gates = saved(true, {kept, B, GH}), h_prev = saved(!Cell::kOfTheSum, {kept, B, H});
  at::Tensor u_n = saved(Cell::kSavesProduct, {kept, B, H});
  at::Tensor v_hat = saved(ln, {kept, B, GH}), rstd = saved(ln, {kept, B});

  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "single_state_variant_forward", [&] {
    using T_ = scalar_t;
    using V = at::vec::Vectorized<T_>;
    const T_* bias = first_of_u < G ? data_or_null<T_>(b_hh) : nullptr;
    const T_* gain = data_or_null<T_>(ln_hh);
    const T_* pxw = xw.data_ptr<T_>();
    T_ *pgates = gates.data_ptr<T_>(), *ph_prev = data_or_null<T_>(h_prev), *pu_n = data_or_null<T_>(u_n);
    T_ *pv_hat = data_or_null<T_>(v_hat), *prstd = data_or_null<T_>(rstd);
    const Tiles units(B, H, B * GH, PackedWeight<T_>::kWidth, variant_by_rows(ln, B, w_hh.numel() * sizeof(T_)));
    const auto recurrent = unit_product<T_>(w_hh, G, units, B, T * B);
    const bool runs = G == 1 && units.whole_rows();  // a step's rows end to end
    at::Tensor products =
        variant_scratch<T_>(runs, H, units.parts(), B, {&recurrent.slices}, options, recurrent.across.width());
    const int64_t ld = products.size(2);
    const VariantState<T_> state(steps, save, h, hm, output, data_or_null<T_>(mask), data_or_null<T_>(keep));
    Team::run(units.parts(), [&](const Team::Member& member) {
      for (int64_t i = 0; i < T; ++i) {
        const int64_t t = steps.at(i), s = save ? t : 0;
        member.each(units, [&](int64_t p) {
          const int64_t j0 = units.begin(p), n = units.end(p) - j0, b0 = units.row_begin(p);
          T_* hw = recurrent(units, p, state.in(i), H, products);  // W_hh m h, gate by gate
          const int64_t b1 = units.row_end(p);
          state.hold_ended(i, b0, b1, j0, n);
          if (ln) {  // u = LN(W_hh m h) + b_hh, by rows: the whole row, n = H
            alive_in_groups(
                steps, t, b0, b1,
                [&](int64_t b) {
                  return NormRow<T_>{hw + (b - b0) * ld, pv_hat + (s * B + b) * GH, prstd + s * B + b};
                },
                [&](const auto* rows, int64_t k) { normalise(GH, rows, k, gain, bias); });
          }
          const T_* u_bias = ln || !bias ? nullptr : bias + j0;  // the b_hh the cell adds to u
          each_alive_run(steps, t, b0, b1, n, runs, [&](int64_t b, int64_t count) {
            T_* u = hw + (b - b0) * ld;
            const int64_t row = (s * B + b) * H + j0;
            const T_* h_old = state.h + b * H + j0;  // state.put replaces each vector once read
            const T_* a = pxw + (t * B + b) * GH + j0;
            T_* g = pgates + (s * B + b) * GH + j0;
            T_* un = Cell::kSavesProduct ? pu_n + row : nullptr;
            vectorized<T_>(count, [&](const auto& L, int64_t j) {
              const V old = L.load(h_old + j);
              if (!Cell::kOfTheSum) L.store(ph_prev + row + j, old);
              state.put(i, b, j0 + j, L, Cell::forward(L, j, H, n, a, u, u_bias, old, g, un));
            });
          });
        });
      }
    });
  });
  return {output, h, hm, gates, h_prev, u_n, v_hat, rstd, input.a_hat, input.rstd};
}

// The backward of single_state_variant_forward: variant_input_gradients (x, w_ih, b_ih, ln_ih), grad_h0,
// grad_w_hh, grad_b_hh and grad_ln_hh_weight (empty where absent); the new parameters' gradients
// summed by halves over the steps, each part adding its sequences' terms into its row of a step first.
template <typename Cell>
std::vector<at::Tensor> single_state_variant_backward(
    const char* op, const at::Tensor& grad_output_in, const at::Tensor& grad_h_n, const at::Tensor& x,
    const at::Tensor& w_ih, bool bias_grad, bool input_grad, bool state_grad, const std::optional<at::Tensor>& ln_ih,
    const at::Tensor& w_hh, const std::optional<at::Tensor>& b_hh_in, const std::optional<at::Tensor>& ln_hh_in,
    const std::optional<at::Tensor>& mask_in, const std::optional<at::Tensor>& keep_in,
    const std::optional<at::Tensor>& lengths_in, bool reverse, const at::Tensor& hm, const at::Tensor& gates,
    const at::Tensor& h_prev, const at::Tensor& u_n, const at::Tensor& v_hat, const at::Tensor& rstd,
    const at::Tensor& a_hat, const at::Tensor& rstd_ih) {
  constexpr int64_t G = Cell::kGates;
  const at::Tensor grad_output = contiguous_of(grad_output_in);
  const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2), H = GH / G;
  check_tensor(op, "grad_output", grad_output, {T, B, H}, gates);
  check_state(op, "grad_h_n", grad_h_n, B, H, gates);
  check_tensor(op, "w_hh", w_hh, {GH, H}, gates);
  check_tensor(op, "hm", hm, {T, B, H}, gates);
  if (!Cell::kOfTheSum) check_tensor(op, "h_prev", h_prev, {T, B, H}, gates);
  const at::Tensor b_hh = checked_contiguous(op, "b_hh", b_hh_in, {GH}, gates);
  const at::Tensor ln_hh = checked_contiguous(op, "ln_hh_weight", ln_hh_in, {GH}, gates);
  const at::Tensor mask = checked_contiguous(op, "dropout_mask", mask_in, {B, H}, gates);
  const at::Tensor keep = checked_contiguous(op, "keep_h", keep_in, {T, B, H}, gates);
  const bool ln = ln_hh.defined(), bias = b_hh.defined();
  // d u = d a: one product gives the weights' gradients
  const bool joined = Cell::kOfTheSum && !ln && !ln_ih.has_value();
  if (Cell::kSavesProduct) check_tensor(op, "u_n", u_n, {T, B, H}, gates);
  if (ln) check_tensor(op, "v_hat", v_hat, {T, B, GH}, gates), check_tensor(op, "rstd", rstd, {T, B}, gates);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);
  const auto options = gates.options();

  at::Tensor grad_xw = step_results({T, B, GH}, options, lengths, Slot::kGradInput);
  at::Tensor grad_v = joined ? grad_xw : step_results({T, B, GH}, options, lengths, Slot::kGradRecurrent);
  at::Tensor dh = copy_of(grad_h_n);
  at::Tensor dh_step = zero_tensor({B, H}, options);
  at::Tensor skip = Cell::kOfTheSum ? at::Tensor() : zero_tensor({B, H}, options);
  // b_hh's gradient: joined, the product's sums come with its weights'; else d u's column sums, by
  // halves with W_hh's gradient after the loop, but under layer norm, whose backward turns d u into
  // d (W_hh m h) in place, summed in the loop first, each part adding its sequences' terms into its
  // row of a step.
  const bool bias_in_loop = bias && !joined && ln, bias_after = bias && !joined && !ln;
  const int64_t at_ln = bias_in_loop ? GH : 0, extra = at_ln + (ln ? GH : 0);  // b_hh's sums, then the gain's
  at::Tensor partials;

  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "single_state_variant_backward", [&] {
    using T_ = scalar_t;
    using V = at::vec::Vectorized<T_>;
    const T_* gain = data_or_null<T_>(ln_hh);
    const T_* pmask = data_or_null<T_>(mask);
    const T_* pkeep = data_or_null<T_>(keep);
    const Tiles units(B, H, B * GH, PackedWeight<T_>::kWidth, variant_by_rows(ln, B, w_hh.numel() * sizeof(T_)));
    const auto recurrent = column_product<T_>(w_hh, units, B, T * B);
    const bool runs = G == 1 && units.whole_rows();  // a step's rows end to end
    // Where the parts take whole rows, d h_{t-1}'s rows end to end too (carry_variant).
    at::Tensor products = variant_scratch<T_>(units.whole_rows(), H, units.parts(), B, {&recurrent.slices}, options,
                                              recurrent.across.width());
    partials = zero_tensor({T, units.parts(), extra}, options);
    T_* pdh = dh.data_ptr<T_>();
    T_* pds = dh_step.data_ptr<T_>();
    T_* pskip = data_or_null<T_>(skip);
    T_ *pgrad_xw = grad_xw.data_ptr<T_>(), *pgrad_v = grad_v.data_ptr<T_>(), *ppartials = partials.data_ptr<T_>();
    const T_ *pgo = grad_output.data_ptr<T_>(), *pgates = gates.data_ptr<T_>();
    const T_* ph_prev = data_or_null<T_>(h_prev);  // none for an Elman cell
    const T_ *pu_n = data_or_null<T_>(u_n), *pv_hat = data_or_null<T_>(v_hat), *prstd = data_or_null<T_>(rstd);
    auto carry = [&](int64_t p, int64_t t) {
      carry_variant(recurrent, units, p, steps, t, pgrad_v + t * B * GH, GH, products, pdh, pds, H, pmask,
                    pkeep ? pkeep + t * B * H : nullptr, pskip);
    };
    Team::run(units.parts(), [&](const Team::Member& member) {
      for (int64_t i = T - 1; i >= 0; --i) {
        const int64_t t = steps.at(i);
        member.each(units, [&](int64_t p) {
          if (i + 1 < T) carry(p, steps.at(i + 1));
          const int64_t j0 = units.begin(p), n = units.end(p) - j0;
          T_* sums = ppartials + (t * units.parts() + p) * extra;
          const int64_t b0 = units.row_begin(p), b1 = units.row_end(p);
          each_alive_run(steps, t, b0, b1, n, runs, [&](int64_t b, int64_t count) {
            const int64_t row = b * H + j0, at_t = t * B * H + row;
            const T_* g = pgates + (t * B + b) * GH + j0;
            const T_* un = Cell::kSavesProduct ? pu_n + at_t : nullptr;
            const T_* keep_t = pkeep ? pkeep + at_t : nullptr;
            T_* da = pgrad_xw + (t * B + b) * GH + j0;
            T_* du = pgrad_v + (t * B + b) * GH + j0;
            vectorized<T_>(count, [&](const auto& L, int64_t j) {
              const V d = L.load(pdh + row + j) + L.load(pgo + at_t + j);  // dh_t
              if (pkeep) L.store(pds + row + j, d);  // zoneout's k_t dh_t reaches h_{t-1} (carry_variant)
              const V d_new = keep_t ? (V(1) - L.load(keep_t + j)) * d : d;  // d h~_t
              const V h_old = Cell::kOfTheSum ? V(0) : L.load(ph_prev + at_t + j);
              Cell::backward(L, j, H, d_new, g, un, h_old, da, du, pskip ? pskip + row : nullptr);
            });
          });
          const T_* du_t = pgrad_v + t * B * GH;  // then the gradients of W_hh m h_{t-1} + b_hh (+ LN)
          for (int64_t k = 0; bias_in_loop && k < G; ++k) {
            add_rows(sums + k * H + j0, n, steps, t, b0, b1, [&](const V& sum, const auto& L, int64_t j, int64_t b) {
              return sum + L.load(du_t + b * GH + k * H + j0 + j);
            });
          }
          if (ln) {  // by rows: the whole row, n = H
            recurrent_layer_norm_backward(GH, B, steps, t, b0, b1, pv_hat, prstd, pgrad_v, pgrad_v, gain, sums + at_ln);
          }
        });
      }
      if (T > 0 && state_grad) member.each(units, [&](int64_t p) { carry(p, steps.at(0)); });
    });
  });

  const at::Tensor sums = summed_rows(partials);
  const at::Tensor grad_h0 = state_gradient(dh, state_grad);
  auto part = [&](bool on, int64_t from) { return on ? sums.narrow(0, from, GH) : empty_tensor({0}, options); };
  if (!joined) {
    const auto recurrent_grads = step_weight_gradients(grad_v, {hm}, bias_after);  // d W_hh (, d b_hh)
    auto grads = variant_input_gradients(op, grad_xw, x, w_ih, bias_grad, input_grad, ln_ih, a_hat, rstd_ih);
    grads.insert(grads.end(), {grad_h0, recurrent_grads[0], bias_after ? recurrent_grads[1] : part(bias, 0),
                               part(ln, at_ln)});
    return grads;
  }
  // d W_ih and d W_hh, then the sums of d a_t: b_ih's and b_hh's gradient both
  auto joint = variant_input_gradients(op, grad_xw, x, w_ih, bias_grad || bias, input_grad, ln_ih, a_hat, rstd_ih, hm);
  auto none = [&] { return empty_tensor({0}, options); };
  const at::Tensor& sums_of_d = joint[2];
  return {joint[0], joint[1], bias_grad ? sums_of_d : none(), none(), grad_h0, joint[4],
          bias ? (bias_grad ? sums_of_d.clone() : sums_of_d) : none(), none()};
}

// The autograd formula of a single-state variant op (``Ops::kForward``, ``Ops::kBackward``: GRU,
// Elman), whose ``Flags`` (the Elman cell's relu) follow ``reverse``: autograd.h's arrangement.
// Inputs x, w_ih, b_ih, ln_ih, h0, w_hh, b_hh, ln_hh get gradients; the masks and lengths do not.
template <typename Ops, typename... Flags>
struct SingleStateVariantFunction : public torch::autograd::Function<SingleStateVariantFunction<Ops, Flags...>> {
  using Tensor = at::Tensor;
  using OptionalTensor = std::optional<Tensor>;
  static constexpr size_t kInputs = 8;

  using ForwardSignature = SingleStateForward(const Tensor&, const Tensor&, const OptionalTensor&,
                                              const OptionalTensor&, const Tensor&, const Tensor&,
                                              const OptionalTensor&, const OptionalTensor&, const OptionalTensor&,
                                              const OptionalTensor&, const OptionalTensor&, bool, Flags..., bool);

  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                               const OptionalTensor& ln_ih, const Tensor& h0, const Tensor& w_hh,
                               const OptionalTensor& b_hh, const OptionalTensor& ln_hh, const OptionalTensor& mask,
                               const OptionalTensor& keep_h, const OptionalTensor& lengths, bool reverse,
                               Flags... flags, bool save) {
    static const auto op = typed_op<ForwardSignature>(Ops::kForward);
    auto results = call_below_autograd(op, x, w_ih, b_ih, ln_ih, h0, w_hh, b_hh, ln_hh, mask, keep_h, lengths, reverse,
                                       flags..., save);
    auto& [output, h_n, hm, gates, h_prev, u_n, v_hat, rstd, a_hat, rstd_ih] = results;
    ctx->set_materialize_grads(false);
    ctx->mark_non_differentiable({hm, gates, h_prev, u_n, v_hat, rstd, a_hat, rstd_ih});
    ctx->save_for_backward({x, w_ih, or_undefined(b_ih), or_undefined(ln_ih), h0, w_hh, or_undefined(b_hh),
                            or_undefined(ln_hh), or_undefined(mask), or_undefined(keep_h), or_undefined(lengths), hm,
                            gates, h_prev, u_n, v_hat, rstd, a_hat, rstd_ih});
    ctx->saved_data["flags"] = std::vector<int64_t>{reverse, flags...};
    return {output, h_n, hm, gates, h_prev, u_n, v_hat, rstd, a_hat, rstd_ih};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto flags = ctx->saved_data["flags"].toIntVector();
    variable_list inputs(saved.begin(), saved.begin() + kInputs);
    const variable_list others(saved.begin() + kInputs, saved.begin() + kInputs + 3);  // mask, keep_h, lengths
    if (at::GradMode::is_enabled()) {
      inputs = replay_backward(Ops::kName, inputs, others, {grads[0], grads[1]}, flags);
    } else {
      inputs = wanted_gradients(ctx, inputs, kernel(ctx, saved, grads, flags, std::index_sequence_for<Flags...>()));
    }
    inputs.resize(kInputs + 3 + 1 + sizeof...(Flags) + 1);  // the masks, lengths, reverse, flags, save
    return inputs;
  }

  // Ops::kBackward on the saved tensors: a gradient per input (empty where it needs none). The saved
  // tensors start with the inputs, which wants_gradient reads.
  template <size_t... I>
  static std::vector<Tensor> kernel(AutogradContext* ctx, const variable_list& saved, const variable_list& grads,
                                    const std::vector<int64_t>& flags, std::index_sequence<I...>) {
    static const auto op = typed_op<std::vector<Tensor>(
        const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, bool, bool, const OptionalTensor&,
        const Tensor&,
        const OptionalTensor&, const OptionalTensor&, const OptionalTensor&, const OptionalTensor&,
        const OptionalTensor&, bool, Flags..., const Tensor&, const Tensor&, const Tensor&, const Tensor&,
        const Tensor&, const Tensor&, const Tensor&, const Tensor&)>(Ops::kBackward);
    const Tensor &hm = saved[11], &h0 = saved[4];
    return call_below_autograd(op, or_zeros(grads[0], hm), or_zeros(grads[1], h0), saved[0], saved[1],
                               wants_gradient(ctx, saved, 2), wants_gradient(ctx, saved, 0),
                               wants_gradient(ctx, saved, 4), optional(saved[3]), saved[5], optional(saved[6]),
                               optional(saved[7]), optional(saved[8]), optional(saved[9]), optional(saved[10]),
                               bool(flags[0]),
                               Flags(flags[1 + I])..., hm, saved[12], saved[13], saved[14], saved[15], saved[16],
                               saved[17], saved[18]);
  }

  // The op's Autograd kernel.
  static SingleStateForward apply_op(const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                                     const OptionalTensor& ln_ih, const Tensor& h0, const Tensor& w_hh,
                                     const OptionalTensor& b_hh, const OptionalTensor& ln_hh, const OptionalTensor& mask,
                                     const OptionalTensor& keep_h, const OptionalTensor& lengths, bool reverse,
                                     Flags... flags, bool save) {
    auto out = SingleStateVariantFunction::apply(x, w_ih, b_ih, ln_ih, h0, w_hh, b_hh, ln_hh, mask, keep_h, lengths,
                                                 reverse, flags..., save);
    return {out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8], out[9]};
  }

  // The kernel of the op's sibling that draws its masks (<name>_variant_drawn, CompositeImplicitAutograd):
  // recurrent dropout's mask and zoneout's keep tensor drawn here as ops/variant.py's noise draws them
  // (a generated token's separate call for them costs more than drawing them), then the op, through
  // its autograd formula; output and h_n come back.
  static std::tuple<Tensor, Tensor> drawn(const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                                          const OptionalTensor& ln_ih, const Tensor& h0, const Tensor& w_hh,
                                          const OptionalTensor& b_hh, const OptionalTensor& ln_hh, double dropout,
                                          double zoneout_h, double zoneout_c, bool training,
                                          const OptionalTensor& lengths, bool reverse, Flags... flags, bool save) {
    static const auto op = typed_op<ForwardSignature>(Ops::kForward);
    const Noise noise = draw_noise(dropout, zoneout_h, zoneout_c, training, x.size(0), x.size(1), {h0.size(-1)},
                                   x.options());
    const auto results = op.call(x, w_ih, b_ih, ln_ih, h0, w_hh, b_hh, ln_hh, noise.mask, noise.zone[0], lengths,
                                 reverse, flags..., save);
    return {std::get<0>(results), std::get<1>(results)};
  }
};

}  // namespace rnnkit
