// Shared pieces of the fused CPU recurrences.
//
// Dimensions: T steps, B batch, I input features, H hidden units, P = proj_size or H,
// G gates (LSTM 4, GRU 3, RNN 1). Matrices are row-major. Each op runs one direction of one
// layer: the input projection W_ih x_t of every step is one product before the time loop
// (project_input), the biases are added in the loop's gate math.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <cstdint>
#include <optional>

extern "C" {
// BLAS from torch's own library where it exports one (MKL in the x86 wheels); weak, so a
// build without it still loads and falls back to ATen's matmul.
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

namespace rnnkit {

// C (M x N) = op(A) op(B) + beta C, row-major; op(A) is M x K, op(B) is K x N.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const T one = 1;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc;
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr) return sgemm_(&ta, &tb, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
  } else {
    if (dgemm_ != nullptr) return dgemm_(&ta, &tb, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc);
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto a = trans_a ? at::from_blob(const_cast<T*>(A), {K, M}, {lda, 1}, options).t()
                   : at::from_blob(const_cast<T*>(A), {M, K}, {lda, 1}, options);
  auto b = trans_b ? at::from_blob(const_cast<T*>(B), {N, K}, {ldb, 1}, options).t()
                   : at::from_blob(const_cast<T*>(B), {K, N}, {ldb, 1}, options);
  auto c = at::from_blob(C, {M, N}, {ldc, 1}, options);
  if (beta == T(0)) {
    at::mm_out(c, a, b);
  } else {
    c.addmm_(a, b);
  }
}

// Loads and stores ``count`` lanes of a vector at a pointer; a partial vector for a row's tail,
// so short rows (H = 10, say) stay vectorised too. Unloaded lanes read as zero.
template <typename T>
struct Lanes {
  using V = at::vec::Vectorized<T>;
  int64_t count;
  V load(const T* p) const { return count == V::size() ? V::loadu(p) : V::loadu(p, count); }
  void store(T* p, const V& v) const { count == V::size() ? v.store(p) : v.store(p, static_cast<int>(count)); }
};

// Calls body(lanes, j) for j = 0, V::size(), ... < n: one vector of a row at a time.
template <typename T, typename F>
inline void vectorized(int64_t n, const F& body) {
  constexpr int64_t width = at::vec::Vectorized<T>::size();
  for (int64_t j = 0; j < n; j += width) body(Lanes<T>{std::min(width, n - j)}, j);
}

// out (M x N) = a (M x K) wt (K x N), all row-major, for the tiny products of a step (one
// sequence, or few inputs per unit): a row of out is K vector multiply-adds over wt's rows, kept
// in four accumulators, with no call overhead. Larger products go to BLAS or oneDNN.
template <typename T>
void small_matmul(int64_t M, int64_t N, int64_t K, const T* a, const T* wt, T* out) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t W = V::size();
  for (int64_t m = 0; m < M; ++m) {
    const T* am = a + m * K;
    for (int64_t j0 = 0; j0 < N; j0 += 4 * W) {
      const Lanes<T> lanes[4] = {{std::clamp<int64_t>(N - j0, 0, W)},
                                 {std::clamp<int64_t>(N - j0 - W, 0, W)},
                                 {std::clamp<int64_t>(N - j0 - 2 * W, 0, W)},
                                 {std::clamp<int64_t>(N - j0 - 3 * W, 0, W)}};
      V acc[4] = {V(0), V(0), V(0), V(0)};
      for (int64_t k = 0; k < K; ++k) {
        const V s(am[k]);
        const T* row = wt + k * N + j0;
        for (int v = 0; v < 4; ++v) {
          if (lanes[v].count > 0) acc[v] = at::vec::fmadd(s, lanes[v].load(row + v * W), acc[v]);
        }
      }
      for (int v = 0; v < 4; ++v) {
        if (lanes[v].count > 0) lanes[v].store(out + m * N + j0 + v * W, acc[v]);
      }
    }
  }
}

// A weight used ``uses`` times (once per step, say): out (M x N) = a (M x K) W^T for a fixed W
// (N x K), row-major. Large float products go to oneDNN through torch's mkldnn::_linear_pointwise
// with the weight packed once (on x86 it is 2-3x faster than the BLAS here), when the uses
// together pay for the packing (about 0.1 ms); tiny ones to small_matmul with the weight
// transposed once (float and double); the rest, and the rest of double, to BLAS.
class FixedWeight {
 public:
  FixedWeight(const at::Tensor& weight, int64_t rows, int64_t uses = 1) : weight_(weight.contiguous()), rows_(rows) {
    const int64_t work = rows * weight_.size(0) * weight_.size(1);
    if (onednn_pays(weight_.scalar_type(), work) && work * uses >= kPackedMinWork) {
      c10::Stack stack{weight_, std::optional<int64_t>(rows)};
      pack_op()->callBoxed(&stack);
      packed_ = stack[0].toTensor();
    } else if (work <= kSmallMaxWork) {
      transposed_ = weight_.t().contiguous();
    }
  }

  // Whether a product of ``work`` multiply-adds in ``dtype`` is worth oneDNN's call.
  static bool onednn_pays(at::ScalarType dtype, int64_t work) {
    return dtype == at::kFloat && work >= kOneDnnMinWork && linear_op() && pack_op();
  }

  template <typename T>
  void apply(const T* a, T* out) const {
    const int64_t N = weight_.size(0), K = weight_.size(1);
    if (transposed_.defined()) {
      small_matmul<T>(rows_, N, K, a, transposed_.data_ptr<T>(), out);
      return;
    }
    if (!packed_.defined()) {
      gemm<T>(false, true, rows_, N, K, a, K, weight_.data_ptr<T>(), K, T(0), out, N);
      return;
    }
    at::Tensor x = at::from_blob(const_cast<T*>(a), {rows_, K}, weight_.options());
    c10::Stack stack{x, packed_, std::optional<at::Tensor>(), std::string("none"),
                     c10::List<std::optional<at::Scalar>>(), std::optional<std::string>("")};
    linear_op()->callBoxed(&stack);
    const at::Tensor y = stack[0].toTensor().contiguous();
    std::copy(y.data_ptr<T>(), y.data_ptr<T>() + rows_ * N, out);
  }

 private:
  static constexpr int64_t kOneDnnMinWork = 1 << 20;  // multiply-adds; below it the call costs more than it saves
  static constexpr int64_t kPackedMinWork = 1 << 24;  // multiply-adds over all uses that pay for the packing
  static constexpr int64_t kSmallMaxWork = 1 << 16;  // multiply-adds; above it BLAS's blocking pays
  static const std::optional<c10::OperatorHandle>& linear_op() {
    static const auto op = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    return op;
  }
  static const std::optional<c10::OperatorHandle>& pack_op() {
    static const auto op = c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_linear_weight", ""});
    return op;
  }
  at::Tensor weight_, packed_, transposed_;
  int64_t rows_;
};

// x (T, B, I) -> x W_ih^T (T, B, G): the input projection of every step, one product before the loop.
inline at::Tensor project_input(const at::Tensor& x, const at::Tensor& w_ih) {
  const int64_t T = x.size(0), B = x.size(1);
  at::Tensor xw = at::empty({T, B, w_ih.size(0)}, x.options());
  const FixedWeight weight(w_ih, T * B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "project_input",
                             [&] { weight.apply(x.data_ptr<scalar_t>(), xw.data_ptr<scalar_t>()); });
  return xw;
}

// The gradient of a weight used at every step: grad (T, B, G) and its input y (T, B, K) over all
// steps give d W (G, K) = sum_t grad_t^T y_t, one product over T*B rows. Large float ones run on
// oneDNN, which wants both operands transposed (copies that cost far less than the product).
inline at::Tensor weight_gradient(const at::Tensor& grad, const at::Tensor& y) {
  const int64_t G = grad.size(-1), K = y.size(-1), rows = grad.numel() / G;
  at::Tensor out = at::empty({G, K}, grad.options());
  // The transposed copies and the packing pay for themselves only on large products.
  const bool onednn = FixedWeight::onednn_pays(grad.scalar_type(), G * K * rows / 16);
  const auto weight = onednn ? std::optional<FixedWeight>(std::in_place, y.reshape({rows, K}).t(), G) : std::nullopt;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "weight_gradient", [&] {
    if (onednn) {
      const at::Tensor grad_t = grad.reshape({rows, G}).t().contiguous();
      weight->apply(grad_t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
    } else {
      gemm<scalar_t>(true, false, G, K, rows, grad.data_ptr<scalar_t>(), G, y.data_ptr<scalar_t>(), K, scalar_t(0),
                     out.data_ptr<scalar_t>(), K);
    }
  });
  return out;
}

// The backward of project_input: d xw (T, B, G) -> (d x (T, B, I), d W_ih (G, I)).
inline std::tuple<at::Tensor, at::Tensor> project_input_backward(const at::Tensor& grad_xw, const at::Tensor& x,
                                                                 const at::Tensor& w_ih) {
  const int64_t T = x.size(0), B = x.size(1), I = w_ih.size(1);
  at::Tensor grad_x = at::empty({T, B, I}, x.options());
  const FixedWeight weight(w_ih.t(), T * B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "project_input_backward",
                             [&] { weight.apply(grad_xw.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>()); });
  return {grad_x, weight_gradient(grad_xw, x)};
}

// The sum of two optional bias vectors of size G (zeros where neither is given).
inline at::Tensor add_biases(const std::optional<at::Tensor>& a, const std::optional<at::Tensor>& b, int64_t G,
                             const at::TensorOptions& options) {
  at::Tensor sum = at::zeros({G}, options);
  if (a.has_value()) sum += *a;
  if (b.has_value()) sum += *b;
  return sum;
}

// Elementwise math on at::vec::Vectorized<T>. For float, exp is at::vec's inline polynomial
// exp_u20 (relative error ~2e-6, far inside float32's tolerance against the oracle) rather than
// Sleef's call: at small H the gate math, not the matmul, is most of a step. tanh is written
// through the sigmoid, tanh(x) = 2 sigmoid(2x) - 1, exact to the precision of exp in absolute terms.
template <typename T>
inline at::vec::Vectorized<T> exp_(const at::vec::Vectorized<T>& x) {
  if constexpr (std::is_same_v<T, float>) {
    return x.exp_u20();
  } else {
    return x.exp();
  }
}
// 1 / x. For float, the hardware's reciprocal estimate refined by one Newton step
// (r' = r (2 - x r), about 1e-7 relative): a division costs several times more.
template <typename T>
inline at::vec::Vectorized<T> reciprocal_(const at::vec::Vectorized<T>& x) {
  if constexpr (std::is_same_v<T, float>) {
#if defined(CPU_CAPABILITY_AVX512)
    const __m512 r = _mm512_rcp14_ps(x);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(2.0f)));
#elif defined(CPU_CAPABILITY_AVX2)
    const __m256 r = _mm256_rcp_ps(x);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(x, r, _mm256_set1_ps(2.0f)));
#endif
  }
  return x.reciprocal();
}
// sigmoid(x) = 1 / (1 + exp(-x)). The exponent is clamped to [-80, 80], where the result is
// already 0 or 1 to working precision, so exp never overflows to inf: the reciprocal estimate
// would turn 1 / inf into NaN.
template <typename V>
inline V sigmoid_(const V& x) {
  return reciprocal_(V(1) + exp_(at::vec::clamp(V(0) - x, V(-80), V(80))));
}
template <typename V>
inline V tanh_(const V& x) {
  return V(2) * sigmoid_(V(2) * x) - V(1);
}

// Which sequences take part in step t: all of them without lengths, else those with t < lengths[b].
struct Steps {
  int64_t T;
  bool reverse;
  const int64_t* lengths;  // (B,) or nullptr

  int64_t at(int64_t i) const { return reverse ? T - 1 - i : i; }
  bool alive(int64_t t, int64_t b) const { return lengths == nullptr || t < lengths[b]; }
};

inline Steps make_steps(int64_t T, bool reverse, const std::optional<at::Tensor>& lengths) {
  return Steps{T, reverse, lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr};
}

// Runs fn(b) for every sequence b, on torch's threads once a step holds enough work to pay for them.
template <typename F>
inline void for_each_row(int64_t B, int64_t row_work, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(row_work, 1));
  at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) fn(b);
  });
}

// lengths as the kernels read them: None, or B int64 values in [1, T] on the CPU.
inline std::optional<at::Tensor> checked_lengths(const std::optional<at::Tensor>& lengths, int64_t B, int64_t T) {
  if (!lengths.has_value()) return lengths;
  TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->device().is_cpu() && lengths->dim() == 1,
              "lengths must be a 1-D int64 CPU tensor");
  TORCH_CHECK(lengths->numel() == B, "expected ", B, " lengths, got ", lengths->numel());
  TORCH_CHECK(B == 0 || (lengths->min().item<int64_t>() >= 1 && lengths->max().item<int64_t>() <= T),
              "lengths must lie in [1, ", T, "]");
  return lengths->contiguous();
}

// The ops are public (torch.ops.rnnkit.*): every tensor's shape and dtype is checked against x
// (T, B, I) before a kernel reads it, so a mismatch is an error, never an out-of-bounds read.
inline void check_tensor(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef shape,
                         const at::Tensor& x) {
  TORCH_CHECK(t.sizes() == shape, op, ": expected ", name, " of shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type() && t.device() == x.device(), op, ": expected ", name, " of dtype ",
              x.scalar_type(), " on ", x.device(), ", got ", t.scalar_type(), " on ", t.device());
}

inline void check_tensor(const char* op, const char* name, const std::optional<at::Tensor>& t,
                         at::IntArrayRef shape, const at::Tensor& x) {
  if (t.has_value()) check_tensor(op, name, *t, shape, x);
}

// The arguments every forward op shares: x (T, B, I), h0 (B, P), W_ih (G*H, I), W_hh (G*H, P),
// the biases (G*H,). Returns H.
inline int64_t check_layer(const char* op, const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                           const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                           const std::optional<at::Tensor>& b_hh, int64_t gates) {
  TORCH_CHECK(x.dim() == 3 && x.device().is_cpu(), op, ": expected x of 3 dimensions (T, B, I) on the CPU, got ",
              x.sizes(), " on ", x.device());
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % gates == 0, op, ": expected w_hh of shape (", gates,
              "*H, P), got ", w_hh.sizes());
  const int64_t B = x.size(1), G = w_hh.size(0), P = w_hh.size(1);
  check_tensor(op, "h0", h0, {B, P}, x);
  check_tensor(op, "w_ih", w_ih, {G, x.size(2)}, x);
  check_tensor(op, "w_hh", w_hh, {G, P}, x);
  check_tensor(op, "b_ih", b_ih, {G}, x);
  check_tensor(op, "b_hh", b_hh, {G}, x);
  return G / gates;
}

}  // namespace rnnkit
