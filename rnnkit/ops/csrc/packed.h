// The products of the CPU kernels, and how torch's threads share a time loop.
//
// A thread takes whole sequences of a step, or a slice of the hidden units (Tiles), for the whole
// loop, in one parallel region (Team). Its weight is packed once per call into panels for a
// register-blocked product (PackedWeight), which on one core runs at the speed of a tuned BLAS for
// these shapes (a few dozen rows, a few hundred columns), or, multiplying few rows, read in place.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>
#include <c10/util/ParallelGuard.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "workspace.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace rnnkit {

// fn(std::integral_constant<size_t, i>) for each i of the sequence, written out: an array indexed by
// i then has constant indices, and its elements can live in registers.
template <typename F, size_t... I>
C10_ALWAYS_INLINE void unrolled(const F& fn, std::index_sequence<I...>) {
  (fn(std::integral_constant<size_t, I>{}), ...);
}

// The compiler's vector types (GCC/Clang extensions), as wide as the widest registers built for.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kMaxBlockRows = 12;  // 24 accumulators of the 32 registers
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kMaxBlockRows = 6;  // 12 accumulators of the 16 registers
#else
constexpr int kVectorBytes = 16;
constexpr int kMaxBlockRows = 6;
#endif

template <typename T>
struct VectorOf;
template <>
struct VectorOf<float> {
  typedef float type __attribute__((vector_size(kVectorBytes), aligned(alignof(float))));
};
template <>
struct VectorOf<double> {
  typedef double type __attribute__((vector_size(kVectorBytes), aligned(alignof(double))));
};

// Stores v's first ``count`` lanes at p (all of them for count >= its size). AVX2 has no plain
// masked store: its vmaskmovps is microcoded on AMD's cores, many times a plain store's cost, and
// a short row (H = 10: a vector and 2 lanes) ends in one, so there the tail goes out in plain
// stores of 4, 2 and 1 lanes. AVX-512's masked stores are single instructions.
template <typename T>
C10_ALWAYS_INLINE void store_first(const at::vec::Vectorized<T>& v, T* p, int64_t count) {
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (count >= 8) return _mm256_storeu_ps(p, v);
    __m128 part = _mm256_castps256_ps128(v);
    if (count >= 4) _mm_storeu_ps(p, part), part = _mm256_extractf128_ps(v, 1), p += 4, count -= 4;
    if (count >= 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(p), part), part = _mm_movehl_ps(part, part), p += 2, count -= 2;
    }
    if (count >= 1) _mm_store_ss(p, part);
    return;
  } else if constexpr (std::is_same_v<T, double>) {
    if (count >= 4) return _mm256_storeu_pd(p, v);
    __m128d part = _mm256_castpd256_pd128(v);
    if (count >= 2) _mm_storeu_pd(p, part), part = _mm256_extractf128_pd(v, 1), p += 2, count -= 2;
    if (count >= 1) _mm_store_sd(p, part);
    return;
  }
#endif
  v.store(p, count);
}

#if defined(__AVX512F__)
// dst[j * ld_dst + i] = src[i * ld_src + j] for i, j < 16: a tile turned over in registers.
inline void transpose_16x16(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld_src);
  for (int i = 0; i < 16; i += 2) {  // in each 128-bit lane: pairs of rows interleaved
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // lane l of r[i + j]: column 4l + j of rows i..i+3
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {  // then the lanes gathered across the groups of four rows
    t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; ++j) {
    _mm512_storeu_ps(dst + j * ld_dst, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
    _mm512_storeu_ps(dst + (8 + j) * ld_dst, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD));
    _mm512_storeu_ps(dst + (4 + j) * ld_dst, _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88));
    _mm512_storeu_ps(dst + (12 + j) * ld_dst, _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD));
  }
}
#endif

// dst[k * ld + c] = src[c * along_c + k * along_k] for c < columns, k < depth: 16 x 16 tiles in
// registers where the values lie along k (float, AVX-512), one value at a time elsewhere.
template <typename T>
void transpose(const T* src, int64_t along_c, int64_t along_k, int64_t columns, int64_t depth, T* dst, int64_t ld) {
  int64_t tiled_columns = 0, tiled_depth = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (along_k == 1) tiled_columns = columns / 16 * 16, tiled_depth = depth / 16 * 16;
    for (int64_t c = 0; c < tiled_columns; c += 16) {
      for (int64_t k = 0; k < tiled_depth; k += 16) transpose_16x16(src + c * along_c + k, along_c, dst + k * ld + c, ld);
    }
  }
#endif
  for (int64_t c = 0; c < columns; ++c) {
    for (int64_t k = c < tiled_columns ? tiled_depth : 0; k < depth; ++k) dst[k * ld + c] = src[c * along_c + k * along_k];
  }
}

// A block of W^T's columns where it lies: element (k, n) at data[k * along_k + n * along_n] for
// k < rows (the depth K) and n < cols. A view of a weight without ATen's view ops, each of which
// costs more than a one-token step's product.
template <typename T>
struct Columns {
  const T* data;
  int64_t rows, cols, along_k, along_n;

  // A 2-D tensor taken as W^T (K x N): the inputs whose weights' gradients a product gives, say.
  static Columns of(const at::Tensor& t) { return {t.data_ptr<T>(), t.size(0), t.size(1), t.stride(0), t.stride(1)}; }
  // W^T of a weight W (N x K): its rows are the columns.
  static Columns transposed(const at::Tensor& w) {
    return {w.data_ptr<T>(), w.size(1), w.size(0), w.stride(1), w.stride(0)};
  }
  // Columns [c0, c0 + n).
  Columns columns(int64_t c0, int64_t n) const { return {data + c0 * along_n, rows, n, along_k, along_n}; }
  // Rows [k0, k0 + n) of W^T.
  Columns rows_from(int64_t k0, int64_t n) const { return {data + k0 * along_k, n, cols, along_k, along_n}; }
};

// A fixed weight W (N x K) for products out (M x N) = a (M x K) W^T, with M small (the batch).
// W^T is stored in panels of kPanel columns (two vectors), each K rows of kPanel contiguous
// values and zero past N, so a block of up to kMaxBlockRows rows of out is kept in registers while
// the panel streams through once. out's rows are padded to padded_n() values.
// Packing costs about as much as a few dozen rows' product: a weight that multiplies fewer rows in
// all (a step of one sequence, when text is generated, or its backward) is read where it lies, by
// rows of W or by rows of W^T, whichever lie contiguous.
template <typename T>
class PackedWeight {
 public:
  using V = typename VectorOf<T>::type;
  static constexpr int64_t kWidth = kVectorBytes / sizeof(T);
  static constexpr int64_t kPanel = 2 * kWidth;

  PackedWeight() = default;

  // Rows multiplied in all below which a weight is not packed.
  static constexpr int64_t kPackUses = 16;

  // W^T (K x N) in pieces along K (W_hh's columns, then W_ih's, say), each piece given as column
  // blocks side by side along N; every piece splits N alike.
  using Pieces = std::vector<std::vector<Columns<T>>>;

  // W^T given as column blocks side by side: W_hh's slice transposed, say, or the inputs
  // [h | x] whose weights' gradients a product gives at once.
  explicit PackedWeight(std::vector<Columns<T>> columns, int64_t uses = kPackUses, const T* bias = nullptr,
                        std::optional<Slot> room = std::nullopt)
      : PackedWeight(Pieces{std::move(columns)}, uses, bias, room) {}

  // ``uses``: the rows the weight will multiply in all; below kPackUses, blocks that are all rows
  // of W, or all rows of W^T, stay where they lie (the weight must outlive this). ``bias`` (N
  // values), if given, is added to every row of a product. ``room``: the workspace slot of the
  // panels, for a weight packed at every call (the inputs of a weight gradient).
  PackedWeight(Pieces pieces, int64_t uses, const T* bias, std::optional<Slot> room = std::nullopt)
      : pieces_(std::move(pieces)) {
    bool rows_of_w = true, rows_of_wt = true;
    for (const auto& block : pieces_.front()) n_ += block.cols;
    for (const auto& piece : pieces_) {
      k_ += piece.front().rows;
      for (const auto& block : piece) {
        rows_of_w = rows_of_w && block.along_k == 1;
        rows_of_wt = rows_of_wt && block.along_n == 1;
      }
    }
    if (uses < kPackUses && (rows_of_w || rows_of_wt)) {
      by_rows_of_wt_ = !rows_of_w;
      if (bias != nullptr) bias_.assign(bias, bias + n_);
      return;
    }
    const int64_t panels = (n_ + kPanel - 1) / kPanel;
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    panels_ = room ? workspace(*room, {panels, k_, kPanel}, options, false)
                   : empty_tensor({panels, k_, kPanel}, options);
    if (bias != nullptr) {
      bias_.assign(panels * kPanel, T(0));
      std::copy(bias, bias + n_, bias_.begin());
    }
    T* dst = panels_.data_ptr<T>();
    // Panel p holds W^T's columns [p kPanel, (p + 1) kPanel), zero past N; a thread per range of K.
    at::parallel_for(0, k_, 64, [&](int64_t k0, int64_t k1) {
      auto at = [&](int64_t k, int64_t n) -> T& { return dst[((n / kPanel) * k_ + k) * kPanel + n % kPanel]; };
      for (int64_t first = 0; const auto& piece : pieces_) {  // first: the piece's first row of W^T
        const int64_t rows = piece.front().rows, lo = std::max(k0, first), hi = std::min(k1, first + rows);
        for (int64_t offset = 0; const auto& block : piece) {
          const T* src = block.data;
          const int64_t width = block.cols, along_k = block.along_k, along_n = block.along_n;
          if (along_n == 1) {  // rows of W^T: runs of up to kPanel values per panel
            for (int64_t k = lo; k < hi; ++k) {
              for (int64_t c = 0, run; c < width; c += run) {
                run = std::min(width - c, kPanel - (offset + c) % kPanel);
                const T* from = src + (k - first) * along_k + c;
                T* to = &at(k, offset + c);
                copy_run(from, run, to);
              }
            }
          } else if (lo < hi) {  // columns of W^T (rows of W, say): turned over, a panel's run at a time
            for (int64_t c = 0, run; c < width; c += run) {
              run = std::min(width - c, kPanel - (offset + c) % kPanel);
              transpose(src + c * along_n + (lo - first) * along_k, along_n, along_k, run, hi - lo, &at(lo, offset + c),
                        kPanel);
            }
          }
          offset += width;
        }
        first += rows;
      }
      if (const int64_t pad = panels * kPanel - n_; pad > 0) {  // the last panel's columns past N, a run per row
        for (int64_t k = k0; k < k1; ++k) zero_run(pad, &at(k, n_));
      }
    });
    pieces_.clear();
  }

  // run (at most kPanel) values from ``from`` to ``to`` by vector moves: a call to memmove costs more.
  static void copy_run(const T* from, int64_t run, T* to) {
    using Vec = at::vec::Vectorized<T>;
    for (int64_t j = 0; j < run; j += Vec::size()) {
      const int64_t n = std::min<int64_t>(Vec::size(), run - j);
      store_first(Vec::loadu(from + j, n), to + j, n);
    }
  }

  // run (at most kPanel) zeros from ``to`` on by vector stores: a call to memset costs more.
  static void zero_run(int64_t run, T* to) {
    using Vec = at::vec::Vectorized<T>;
    for (int64_t j = 0; j < run; j += Vec::size()) {
      store_first(Vec(T(0)), to + j, std::min<int64_t>(Vec::size(), run - j));
    }
  }

  int64_t padded_n() const { return pieces_.empty() ? panels_.size(0) * kPanel : n_; }

  // out (M x N, row stride ldo) = a (M x K, row stride lda) W^T (+ bias).
  void apply(int64_t M, const T* a, int64_t lda, T* out, int64_t ldo) const {
    if (!pieces_.empty()) return apply_in_place(M, a, lda, out, ldo);
    const T* panels = panels_.data_ptr<T>();
    const T* bias = bias_.empty() ? nullptr : bias_.data();
    const int64_t full = n_ / kPanel;  // panels without padding; a last partial one goes through a tile
    alignas(64) T tile[kMaxBlockRows * kPanel];
    // Chunks of rows small enough for L2, each passed over by every panel.
    constexpr int64_t kChunk = 20 * kMaxBlockRows;
    for (int64_t m0 = 0; m0 < M; m0 += kChunk) {
      const int64_t chunk = std::min(kChunk, M - m0);
      for (int64_t p = 0; p < panels_.size(0); ++p) {
        for_blocks(chunk, [&](int64_t m, int64_t rows) {
          const T* am = a + (m0 + m) * lda;
          T* om = out + (m0 + m) * ldo + p * kPanel;
          const T* panel = panels + p * k_ * kPanel;
          const T* init = bias ? bias + p * kPanel : nullptr;
          if (p < full) return block_of<false>(rows)(k_, am, lda, panel, init, om, ldo);
          // A last panel of at most one vector of columns: its zero half is not multiplied.
          (n_ - p * kPanel <= kWidth ? block_of<false, true>(rows) : block_of<false>(rows))(k_, am, lda, panel, init,
                                                                                            tile, kPanel);
          for (int64_t r = 0; r < rows; ++r) std::copy(tile + r * kPanel, tile + r * kPanel + n_ - p * kPanel, om + r * ldo);
        });
      }
    }
  }

  // out (M x padded_n()) += a^T W^T for a (K x M, row stride lda): the gradient of a weight used
  // on K rows, a being the gradient of its products and W^T the inputs it multiplied. Needs the
  // weight packed (constructed without ``uses``).
  void accumulate_transposed(int64_t M, const T* a, int64_t lda, T* out, int64_t ldo) const {
    TORCH_INTERNAL_ASSERT(pieces_.empty(), "accumulate_transposed needs a packed weight");
    // A block's rows of a^T over a slice of the depth are copied out once (a's rows lie lda
    // apart, often 4 KB: they would all fall in one set of the L1 cache), then every panel's slice
    // passes over them while they stay in L1. Each slice's sum starts from zero and is then added to
    // out, so the K products round as a blocked GEMM's do, not as one chain of K sums.
    constexpr int64_t kDepth = 64;
    alignas(64) T slab[kDepth * kMaxBlockRows];
    const T* panels = panels_.data_ptr<T>();
    for (int64_t k0 = 0; k0 < k_; k0 += kDepth) {
      const int64_t depth = std::min(kDepth, k_ - k0);
      // While a block's products run, its columns of the next slice's rows are fetched: rows lda
      // apart defeat the hardware's prefetchers, and the copies waited on every one of them.
      const int64_t ahead = std::min(kDepth, k_ - k0 - depth);
      for_blocks(M, [&](int64_t m, int64_t rows) {
        for (int64_t k = 0; k < depth; ++k) copy_run(a + (k0 + k) * lda + m, rows, slab + k * rows);
        for (int64_t k = 0; k < ahead; ++k) {
          const T* next = a + (k0 + depth + k) * lda + m;
          __builtin_prefetch(next), __builtin_prefetch(next + rows - 1);
        }
        for (int64_t p = 0; p < panels_.size(0); ++p) {
          block_of<true>(rows)(depth, slab, rows, panels + (p * k_ + k0) * kPanel, nullptr, out + m * ldo + p * kPanel,
                               ldo);
        }
      });
    }
  }

 private:
  // A block of rows of out over K steps of the depth: a(m, k) is a[m * lda + k], or a[m + k * lda]
  // when Transposed; Transposed blocks add to out, others add init (a panel of the bias) if given.
  template <bool Transposed>
  using Block = void (*)(int64_t, const T*, int64_t, const T*, const T*, T*, int64_t);

  // apply() on the weight where it lies. On W's rows, each output is a dot product along K, four
  // rows of W at a time (they stay in L1 while every row of a passes); on W^T's rows, a block of
  // outputs sums a(m, k) times W^T's row k over k.
  void apply_in_place(int64_t M, const T* a, int64_t lda, T* out, int64_t ldo) const {
    constexpr int64_t kWide = kAxpyVectors * at::vec::Vectorized<T>::size();
    for (int64_t block = 0, n0 = 0; block < static_cast<int64_t>(pieces_.front().size()); ++block) {
      const int64_t width = pieces_.front()[block].cols;
      int64_t c = 0;
      if (by_rows_of_wt_) {
        for (; c + kWide <= width; c += kWide) {
          for (int64_t m = 0; m < M; ++m) axpys<kAxpyVectors>(a + m * lda, block, c, kWide, out + m * ldo + n0 + c);
        }
        for (; c < width; c += at::vec::Vectorized<T>::size()) {
          const int64_t n = std::min<int64_t>(width - c, at::vec::Vectorized<T>::size());
          for (int64_t m = 0; m < M; ++m) axpys<1>(a + m * lda, block, c, n, out + m * ldo + n0 + c);
        }
      } else {
        for (; c + 4 <= width; c += 4) {
          for (int64_t m = 0; m < M; ++m) dots<4>(a + m * lda, block, c, out + m * ldo + n0 + c);
        }
        for (; c < width; ++c) {
          for (int64_t m = 0; m < M; ++m) dots<1>(a + m * lda, block, c, out + m * ldo + n0 + c);
        }
      }
      n0 += width;
    }
    if (bias_.empty()) return;
    const T* bias = bias_.data();
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < n_; ++n) out[m * ldo + n] += bias[n];
    }
  }

  // out[i] = a . w_i along K, for W's rows w_i, i < Cols, from column c of W^T's column block
  // ``block``, piece by piece. Each sum is reduced across its vector's lanes once, by shuffles. A
  // piece's last K % V values are one partial vector (lanes past K zero), where one scalar product a
  // value took 12 of them a row for a token's [h | x] at I28 H256 (K = 284, AVX-512).
  template <int Cols>
  void dots(const T* a, int64_t block, int64_t c, T* out) const {
    using Vec = at::vec::Vectorized<T>;
    std::array<Vec, Cols> sums;
    sums.fill(Vec(T(0)));
    for (const auto& piece : pieces_) {
      const Columns<T>& columns = piece[block];
      const int64_t K = columns.rows, ldw = columns.along_n;
      const T* w = columns.data + c * ldw;
      int64_t k = 0;
      for (; k + Vec::size() <= K; k += Vec::size()) {
        const Vec x = Vec::loadu(a + k);
#pragma GCC unroll 4
        for (int i = 0; i < Cols; ++i) sums[i] = at::vec::fmadd(x, Vec::loadu(w + i * ldw + k), sums[i]);
      }
      if (k < K) {
        const int64_t rest = K - k;
        const Vec x = Vec::loadu(a + k, rest);
        for (int i = 0; i < Cols; ++i) sums[i] = at::vec::fmadd(x, Vec::loadu(w + i * ldw + k, rest), sums[i]);
      }
      a += K;
    }
    for (int i = 0; i < Cols; ++i) {
      out[i] = at::vec::vec_reduce_all<T>([](const Vec& x, const Vec& y) { return x + y; }, sums[i]);
    }
  }

  // Vectors of outputs summed at once by axpys, each in a register.
  static constexpr int64_t kAxpyVectors = 8;

  // out[0, n) = sum over k of a[k] W^T(k, c + [0, n)), from column block ``block`` where W^T's rows
  // lie contiguous, piece by piece, in Vecs vectors (n values; only the last may be partial). Each
  // output adds its products in the order of k, as a packed panel's block does.
  template <int Vecs>
  void axpys(const T* a, int64_t block, int64_t c, int64_t n, T* out) const {
    using Vec = at::vec::Vectorized<T>;
    constexpr auto vectors = std::make_index_sequence<Vecs>{};
    const int64_t last = n - (Vecs - 1) * Vec::size();  // values in the last vector
    auto load = [&](const T* from, auto v) {
      const T* at = from + v * Vec::size();
      return v + 1 < Vecs || last == Vec::size() ? Vec::loadu(at) : Vec::loadu(at, last);
    };
    std::array<Vec, Vecs> sums;
    sums.fill(Vec(T(0)));
    for (const auto& piece : pieces_) {
      const Columns<T>& columns = piece[block];
      const T* w = columns.data + c;
      for (int64_t k = 0; k < columns.rows; ++k) {
        const Vec s(a[k]);
        const T* row = w + k * columns.along_k;
        unrolled([&](auto v) { sums[v] = at::vec::fmadd(s, load(row, v), sums[v]); }, vectors);
      }
      a += columns.rows;
    }
    unrolled(
        [&](auto v) {
          if (v + 1 < Vecs || last == Vec::size()) return sums[v].store(out + v * Vec::size());
          sums[v].store(out + v * Vec::size(), last);
        },
        vectors);
  }

  // Calls fn(m, rows) over M rows in blocks of near-equal size: 32 rows as 11 + 11 + 10, not 12 + 12 + 8.
  template <typename F>
  static void for_blocks(int64_t M, const F& fn) {
    const int64_t blocks = (M + kMaxBlockRows - 1) / kMaxBlockRows;
    for (int64_t block = 0, m = 0; block < blocks; ++block) {
      const int64_t rows = (M - m) / (blocks - block);
      fn(m, rows);
      m += rows;
    }
  }

  // Half: only the panel's first vector of columns (the rest of out's panel is left as it is).
  template <int Rows, bool Transposed, bool Half = false>
  static void block(int64_t K, const T* a, int64_t lda, const T* panel, const T* init, T* out, int64_t ldo) {
    V lo[Rows], hi[Rows];
#pragma GCC unroll 16
    for (int m = 0; m < Rows; ++m) lo[m] = hi[m] = V{};
    for (int64_t k = 0; k < K; ++k) {
      const V w_lo = *reinterpret_cast<const V*>(panel + k * kPanel);
      const V w_hi = Half ? V{} : *reinterpret_cast<const V*>(panel + k * kPanel + kWidth);
#pragma GCC unroll 16
      for (int m = 0; m < Rows; ++m) {
        const T s = Transposed ? a[m + k * lda] : a[m * lda + k];
        lo[m] += s * w_lo;
        if (!Half) hi[m] += s * w_hi;
      }
    }
    if constexpr (Half) {
#pragma GCC unroll 16
      for (int m = 0; m < Rows; ++m) {
        if (init) lo[m] += *reinterpret_cast<const V*>(init);
        *reinterpret_cast<V*>(out + m * ldo) = lo[m];
      }
      return;
    }
    // What the products are added to (the bias, or the sum so far) comes last: summed from zero, the
    // products round at their own size, not at that of a larger bias (as torch's addmm does).
    const T* start = Transposed ? out : init;
#pragma GCC unroll 16
    for (int m = 0; m < Rows; ++m) {
      if (start) {
        lo[m] += *reinterpret_cast<const V*>(start + (Transposed ? m * ldo : 0));
        hi[m] += *reinterpret_cast<const V*>(start + (Transposed ? m * ldo : 0) + kWidth);
      }
      *reinterpret_cast<V*>(out + m * ldo) = lo[m];
      *reinterpret_cast<V*>(out + m * ldo + kWidth) = hi[m];
    }
  }

  template <bool Transposed, bool Half, int... Rows>
  static constexpr std::array<Block<Transposed>, sizeof...(Rows)> blocks(std::integer_sequence<int, Rows...>) {
    return {&block<Rows + 1, Transposed, Half>...};
  }
  template <bool Transposed, bool Half = false>
  static Block<Transposed> block_of(int64_t rows) {
    static constexpr auto table = blocks<Transposed, Half>(std::make_integer_sequence<int, kMaxBlockRows>{});
    return table[rows - 1];
  }

  int64_t n_ = 0, k_ = 0;
  at::Tensor panels_;  // (panels, K, kPanel)
  Pieces pieces_;         // or W^T's blocks where they lie, unpacked
  bool by_rows_of_wt_ = false;  // unpacked blocks read by W^T's rows (else by W's)
  std::vector<T> bias_;  // (padded_n()), or empty: added to every row of a product
};

// Room for every part's product of a step: (parts, rows, the widest padded_n() of the weights, at
// least ``width``).
template <typename T>
at::Tensor scratch_for(int64_t parts, int64_t rows, std::initializer_list<const std::vector<PackedWeight<T>>*> weights,
                       const at::TensorOptions& options, int64_t width = 0) {
  for (const auto* slices : weights) {
    for (const auto& weight : *slices) width = std::max(width, weight.padded_n());
  }
  return empty_tensor({parts, rows, width}, options);
}

// ``size`` units (hidden units, or output features) split into parts on vector boundaries: one
// block per thread, as many as torch's threads, units and work allow, where work_per_unit is a
// step's multiply-adds per unit (fewer, larger blocks when a block's product would cost less than
// waking a thread; one on one thread). Given ``per_block`` > 1, where there is a block for every
// thread, each block is split again into up to that many parts, each half the one before (1/2,
// 1/4, ..., the last two alike), none narrower than a vector nor cheaper than the least work: a
// thread running its block's parts in order ends with the small ones, which another thread can
// take (Team::Member::each).
struct Split {
  int64_t size, parts;

  Split(int64_t size, int64_t work_per_unit, int64_t width, int64_t per_block = 1) : size(size), width_(width) {
    const int64_t threads = at::get_num_threads(), by_work = size * work_per_unit / kMinPartWork;
    blocks_ = std::max<int64_t>(1, std::min({threads, size / width, by_work}));
    const int64_t narrowest = size / blocks_;  // units of the narrowest block, nearly
    while (blocks_ > 1 && blocks_ == threads && per_block_ < per_block && (narrowest >> per_block_) >= width &&
           (narrowest >> per_block_) * work_per_unit >= kMinPartWork) {
      ++per_block_;
    }
    parts = blocks_ * per_block_;
  }

  int64_t begin(int64_t part) const { return boundary(part); }
  int64_t end(int64_t part) const { return boundary(part + 1); }

  // Runs fn(part) for every part, a block of them per thread (inline when there is one part).
  template <typename F>
  void run(const F& fn) const {
    if (parts == 1) return fn(0);
    at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
      for (int64_t p = first; p < last; ++p) fn(p);
    });
  }

 private:
  static constexpr int64_t kMinPartWork = 1 << 17;  // multiply-adds: about a microsecond
  int64_t width_, blocks_ = 1, per_block_ = 1;

  int64_t block_start(int64_t block) const {  // the nearest vector boundary to an even share
    return std::min(size, (size * block / blocks_ + width_ / 2) / width_ * width_);
  }

  int64_t boundary(int64_t part) const {
    if (part >= parts) return size;
    const int64_t block = part / per_block_, i = part % per_block_;
    const int64_t start = block_start(block), length = block_start(block + 1) - start;
    return start + (length - (length >> i)) / width_ * width_;  // 1 - 2^-i of the block in
  }
};

// How the threads share a step: part p takes sequences (rows) [row_begin, row_end) times
// columns (hidden units, or features) [begin, end). By rows, when there are enough sequences for
// every thread to fill the product's register blocks: each part then runs the whole step for its
// own sequences, and the parts never wait for each other. Otherwise by slices of the columns over
// all sequences: a part then multiplies by its own slice of the weight (slice(p)), and the parts
// meet after every phase of a step, since each reads the state all of them wrote. A thread's
// block of columns comes in up to kSlicesPerThread slices, each half the one before (Split), so
// that a thread done with its own takes the last, small ones of a slower one's (Team::Member::
// each): a virtual machine's cores can run a fifth apart for seconds at a time (a 2-core AMD EPYC
// here), and a step split in even halves waited for the slower.
class Tiles {
 public:
  static constexpr int64_t kMinRows = 8;
  static constexpr int64_t kSlicesPerThread = 4;
  // About what a core's L2 cache holds of a weight.
  static constexpr int64_t kCachedWeightBytes = 1 << 21;
  // A weight up to this size every thread streams from its L2 at each step at little cost.
  static constexpr int64_t kSharedWeightBytes = 1 << 19;

  // Whether a step of ``rows`` sequences with a weight of ``weight_bytes`` goes by rows: the
  // choice for every phase of a loop. By rows every thread streams the whole weight each step;
  // past a small weight, slices of it pay unless each thread has many rows (LSTM I28 H256 B32 on
  // two threads, 1.2 MB of weights: its forward took 0.95x torch.nn's time by slices, 1.05x by rows).
  static bool by_rows(int64_t rows, int64_t weight_bytes) {
    const int64_t threads = at::get_num_threads(), per_thread = rows / std::max<int64_t>(threads, 1);
    return threads > 1 && per_thread >= (weight_bytes <= kSharedWeightBytes ? kMinRows : 4 * kMinRows);
  }

  Tiles(int64_t rows, int64_t size, int64_t work_per_column, int64_t width, bool by_rows)
      : rows_(rows), size_(size), by_rows_(by_rows),
        // By rows, the split depends on the rows alone, so that every phase splits them alike.
        split_(by_rows ? Split(rows, std::numeric_limits<int32_t>::max(), kMinRows)
                       : Split(size, work_per_column, width, kSlicesPerThread)) {}

  int64_t parts() const { return split_.parts; }
  // Whether the team must meet after a phase on these tiles: by slices, a phase reads what other
  // members wrote in the one before, even when this phase has one part. By rows, every phase
  // splits the rows alike, so a member reads only its own sequences.
  bool meet() const { return !by_rows_; }
  // Whether each part takes every column of its rows: by rows, or in one part.
  bool whole_rows() const { return by_rows_ || split_.parts == 1; }
  int64_t row_begin(int64_t p) const { return by_rows_ ? split_.begin(p) : 0; }
  int64_t row_end(int64_t p) const { return by_rows_ ? split_.end(p) : rows_; }
  int64_t begin(int64_t p) const { return by_rows_ ? 0 : split_.begin(p); }
  int64_t end(int64_t p) const { return by_rows_ ? size_ : split_.end(p); }
  // The weight slices the parts multiply by: one, shared, by rows; one per part otherwise.
  int64_t slices() const { return by_rows_ ? 1 : split_.parts; }
  int64_t slice(int64_t p) const { return by_rows_ ? 0 : p; }

  // Runs fn(s) for every slice s on its own thread (the weight's slices are packed there).
  template <typename F>
  void each_slice(const F& fn) const {
    if (by_rows_) return fn(0);
    split_.run(fn);
  }

 private:
  int64_t rows_, size_;
  bool by_rows_;
  Split split_;
};

// Threads that run a whole time loop in one parallel region, meeting at a barrier after each
// phase of a step: waking the threads for every step (a parallel region each) cost about as much
// as a small step's work. Member i of the team owns a block of each phase's parts, the block
// at::parallel_for gives thread i (where pack_slices packed their weights).
class Team {
 public:
  class Member {
   public:
    // Runs fn(p) for this member's parts. Where the parts meet (by slices), each part is claimed
    // first: the member takes its own in order, then, done with them, the others' unclaimed ones
    // from their blocks' ends; then it waits until every member has.
    template <typename F>
    void each(const Tiles& tiles, const F& fn) const {
      const int64_t parts = tiles.parts(), block = (parts + size_ - 1) / size_;
      if (size_ == 1 || !tiles.meet()) {
        for (int64_t p = index_ * block; p < std::min(parts, (index_ + 1) * block); ++p) fn(p);
        return;
      }
      const int64_t phase = ++phase_;
      for (int64_t k = 0; k < size_; ++k) {
        const int64_t owner = (index_ + k) % size_, first = owner * block, last = std::min(parts, first + block) - 1;
        for (int64_t i = 0; i <= last - first; ++i) {
          const int64_t p = k == 0 ? first + i : last - i;
          if (team_->claim(p, phase)) fn(p);
        }
      }
      team_->wait();
    }

   private:
    friend class Team;
    Member(int64_t index, int64_t size, Team* team) : index_(index), size_(size), team_(team) {}
    int64_t index_, size_;
    Team* team_;
    mutable int64_t phase_ = 0;  // the phases of parts this member has met in, as every member has
  };

  // Calls body(member) on min(parts, torch's threads) threads at once (on this one inside
  // another parallel region, or when there is one part): each runs the same loop of phases.
  // ``parts`` is the most any phase has.
  template <typename F>
  static void run(int64_t parts, const F& body) {
    Team team(parts);
    team.size_ = std::min<int64_t>(parts, at::get_num_threads());
    if (team.size_ == 1 || at::in_parallel_region()) return body(Member(0, 1, &team));
#pragma omp parallel num_threads(team.size_)
    {
      c10::ParallelGuard guard(true);
      if (omp_get_num_threads() == team.size_) {
        body(Member(omp_get_thread_num(), team.size_, &team));
      } else if (omp_get_thread_num() == 0) {  // fewer threads than asked for: one runs every part
        body(Member(0, 1, &team));
      }
    }
  }

 private:
  // A barrier that spins (then yields: more threads than cores must not starve the last one).
  // The last to arrive resets the count before it opens the generation, so no one re-enters early.
  void wait() {
    const int64_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == size_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int64_t spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < kSpins) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

  // Whether part p is this caller's to run in the given phase: the first to ask in it gets it.
  bool claim(int64_t p, int64_t phase) {
    std::atomic<int64_t>& last = claims_[p].phase;
    int64_t seen = last.load(std::memory_order_relaxed);
    return seen < phase && last.compare_exchange_strong(seen, phase, std::memory_order_acq_rel);
  }

  // The last phase each part was claimed in, a cache line each: a member claiming its own parts
  // finds their lines in its cache.
  struct alignas(64) Claim {
    std::atomic<int64_t> phase{0};
  };

  explicit Team(int64_t parts) : claims_(std::max<int64_t>(parts, 1)) {}

  static constexpr int64_t kSpins = 1 << 14;
  int64_t size_ = 1;
  std::atomic<int64_t> arrived_{0}, generation_{0};
  std::vector<Claim> claims_;
};

// d W's rows [g, g + ROWS) += grad^T y over all R rows, for y (R x n, rows ldy apart, n at most
// NV vectors) and grad (R x G): each row's sum of kDepth rows of y made from zero in registers,
// then added, as accumulate_transposed sums (the same rounding), with no packed copy of y: that
// pads n columns to kPanel (3.2x the inputs' memory at n = 10), written afresh at every call.
template <typename T, int64_t NV, int64_t ROWS>
void add_outer_products(int64_t R, int64_t G, int64_t g, const T* grad, const T* y, int64_t ldy, int64_t n, T* out,
                        int64_t ld) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t kDepth = 64, W = V::size();
  const int64_t tail = n - (NV - 1) * W;
  constexpr auto accumulators = std::make_index_sequence<ROWS * NV>{};
  for (int64_t r0 = 0; r0 < R; r0 += kDepth) {
    std::array<V, ROWS * NV> sums;  // in registers: indexed by compile-time constants only
    unrolled([&](auto i) { sums[i] = V(T(0)); }, accumulators);
    for (int64_t r = r0; r < std::min(R, r0 + kDepth); ++r) {
      std::array<V, NV> y_r;
      const T* y_row = y + r * ldy;
      unrolled([&](auto a) { y_r[a] = a + 1 < NV ? V::loadu(y_row + a * W) : V::loadu(y_row + a * W, tail); },
               std::make_index_sequence<NV>{});
      const T* grad_r = grad + r * G + g;
      unrolled([&](auto i) { sums[i] = at::vec::fmadd(V(grad_r[i / NV]), y_r[i % NV], sums[i]); }, accumulators);
    }
    unrolled(
        [&](auto i) {
          T* at = out + (g + i / NV) * ld + (i % NV) * W;
          const int64_t lanes = i % NV + 1 < NV ? W : tail;
          store_first(V::loadu(at, lanes) + sums[i], at, lanes);
        },
        accumulators);
  }
}

// add_outer_products for d W's rows [g0, g1): as many at a time as the registers hold (8 at most),
// the rest one by one.
template <typename T, int64_t NV>
void add_outer_products(int64_t R, int64_t G, int64_t g0, int64_t g1, const T* grad, const T* y, int64_t ldy,
                        int64_t n, T* out, int64_t ld) {
  constexpr int64_t kRows = std::min<int64_t>(8, 2 * kMaxBlockRows / NV);
  for (int64_t g = g0; g < g1; g += g + kRows <= g1 ? kRows : 1) {
    auto rows = g + kRows <= g1 ? add_outer_products<T, NV, kRows> : add_outer_products<T, NV, 1>;
    rows(R, G, g, grad, y, ldy, n, out, ld);
  }
}

// add_outer_products for a y of one column (one input feature, as MNIST-1D's or a sine wave's):
// d W's rows [g0, g1) of that column (ld apart), vectorised along the rows, where a vector per
// row would use one lane of it. Each element's sum over kDepth rows of y is made from zero, then
// added, in the order add_outer_products adds (the same rounding).
template <typename T>
void add_column_products(int64_t R, int64_t G, int64_t g0, int64_t g1, const T* grad, const T* y, int64_t ldy,
                         T* out, int64_t ld) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t kDepth = 64, W = V::size(), kVectors = 8;
  for (int64_t c0 = g0; c0 < g1; c0 += kVectors * W) {
    const int64_t lanes = std::min(g1 - c0, kVectors * W);
    for (int64_t r0 = 0; r0 < R; r0 += kDepth) {
      std::array<V, kVectors> sums;  // in registers: indexed by compile-time constants only
      unrolled([&](auto a) { sums[a] = V(T(0)); }, std::make_index_sequence<kVectors>{});
      for (int64_t r = r0; r < std::min(R, r0 + kDepth); ++r) {
        const V y_r(y[r * ldy]);
        const T* grad_r = grad + r * G + c0;
        unrolled(
            [&](auto a) {
              const int64_t count = std::clamp<int64_t>(lanes - a * W, 0, W);
              if (count > 0) sums[a] = at::vec::fmadd(V::loadu(grad_r + a * W, count), y_r, sums[a]);
            },
            std::make_index_sequence<kVectors>{});
      }
      __at_align__ T sum[kVectors * W];
      unrolled([&](auto a) { sums[a].store(sum + a * W); }, std::make_index_sequence<kVectors>{});
      for (int64_t i = 0; i < lanes; ++i) out[(c0 + i) * ld] += sum[i];
    }
  }
}

// d W (G x N) = grad^T [y_1 | y_2 | ...] over all R rows, grad (R x G) contiguous and the inputs
// y_i (R x N_i): the gradient of the weights used on those rows, at once; a column of ones
// among the inputs gives the bias's. Nothing is transposed. Threads split d W's rows where there
// are enough of them (inputs of at most two vectors' width, as x and h at I28 H10, are then read
// where they lie: add_outer_products); else (a gradient of few rows over many steps, as the input
// projection's at small H) they split the R rows, each packing its own and summing into a d W of
// its own, and the parts' sums are added in order.
inline at::Tensor weight_gradient(const at::Tensor& grad, at::TensorList inputs) {
  const int64_t R = grad.size(0), G = grad.size(1);
  int64_t n = 0;
  for (const auto& y : inputs) n += y.size(1);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "weight_gradient", [&] {
    using T = scalar_t;
    constexpr int64_t kWidth = PackedWeight<T>::kWidth, kPanel = PackedWeight<T>::kPanel;
    const int64_t ld = (n + kPanel - 1) / kPanel * kPanel;
    const T* pgrad = grad.data_ptr<T>();
    auto columns_of = [&](int64_t r0, int64_t rows) {
      std::vector<Columns<T>> columns;
      for (const auto& input : inputs) columns.push_back(Columns<T>::of(input).rows_from(r0, rows));
      return columns;
    };
    const Split by_gradient_rows(G, R * ld, kWidth);
    const Split by_steps(R, G * ld, PackedWeight<T>::kPackUses);
    if (by_gradient_rows.parts >= by_steps.parts) {
      using V = at::vec::Vectorized<T>;
      const bool narrow = std::all_of(inputs.begin(), inputs.end(), [](const at::Tensor& y) {
        return y.stride(1) == 1 && y.size(1) <= 2 * V::size();
      });
      if (narrow) {  // their outer products added straight from them
        out = zero_tensor({G, n}, grad.options());
        by_gradient_rows.run([&](int64_t p) {
          for (int64_t offset = 0; const auto& y : inputs) {
            const int64_t k = y.size(1), g0 = by_gradient_rows.begin(p), g1 = by_gradient_rows.end(p);
            if (k == 1) {
              add_column_products(R, G, g0, g1, pgrad, y.data_ptr<T>(), y.stride(0), out.data_ptr<T>() + offset, n);
            } else {
              auto add = k > V::size() ? add_outer_products<T, 2> : add_outer_products<T, 1>;
              add(R, G, g0, g1, pgrad, y.data_ptr<T>(), y.stride(0), k, out.data_ptr<T>() + offset, n);
            }
            offset += k;
          }
        });
        return;
      }
      const PackedWeight<T> packed(columns_of(0, R), PackedWeight<T>::kPackUses, nullptr, Slot::kPackedInputs);
      out = zero_tensor({G, ld}, grad.options());
      by_gradient_rows.run([&](int64_t p) {
        const int64_t m0 = by_gradient_rows.begin(p);
        packed.accumulate_transposed(by_gradient_rows.end(p) - m0, pgrad + m0, G, out.data_ptr<T>() + m0 * ld, ld);
      });
      return;
    }
    const at::Tensor partials = zero_tensor({by_steps.parts, G, ld}, grad.options());
    T* sums = partials.data_ptr<T>();
    by_steps.run([&](int64_t p) {
      const int64_t r0 = by_steps.begin(p), rows = by_steps.end(p) - r0;
      const PackedWeight<T> packed(columns_of(r0, rows), PackedWeight<T>::kPackUses, nullptr, Slot::kPackedInputs);
      packed.accumulate_transposed(G, pgrad + r0 * G, G, sums + p * G * ld, ld);
    });
    for (int64_t p = 1; p < by_steps.parts; ++p) {
      for (int64_t i = 0; i < G * ld; ++i) sums[i] += sums[p * G * ld + i];
    }
    out = partials[0];
  });
  return out.narrow(1, 0, n);
}

}  // namespace rnnkit
