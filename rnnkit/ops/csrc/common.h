// Shared pieces of the fused CPU recurrences.
//
// Dimensions: T steps, B batch, H hidden units, P = proj_size or H, G gates (LSTM 4, GRU 3, RNN 1).
// Matrices are row-major; xw is the input projection W_ih x_t + b_ih of every step, computed
// before the loop by one GEMM, so the kernels run only the recurrence.
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

// Elementwise math written once for a scalar T and for at::vec::Vectorized<T> (Sleef's exp and
// tanh, as torch's own kernels use), so each gate loop is one generic body; see ``vectorized``.
template <typename T>
inline T tanh_(T x) {
  return std::tanh(x);
}
template <typename T>
inline at::vec::Vectorized<T> tanh_(const at::vec::Vectorized<T>& x) {
  return x.tanh();
}
template <typename T>
inline T exp_(T x) {
  return std::exp(x);
}
template <typename T>
inline at::vec::Vectorized<T> exp_(const at::vec::Vectorized<T>& x) {
  return x.exp();
}
template <typename T>
inline T relu_(T x) {
  return std::max(x, T(0));
}
template <typename T>
inline at::vec::Vectorized<T> relu_(const at::vec::Vectorized<T>& x) {
  return at::vec::maximum(x, at::vec::Vectorized<T>(0));
}
template <typename T>
inline T positive_(T x) {  // 1 where x > 0, else 0: the slope of ReLU
  return T(x > T(0));
}
template <typename T>
inline at::vec::Vectorized<T> positive_(const at::vec::Vectorized<T>& x) {
  return x.gt(at::vec::Vectorized<T>(0));
}
template <typename V>
inline V sigmoid_(const V& x) {
  return V(1) / (V(1) + exp_(V(0) - x));
}

template <typename T>
struct Lanes {  // load and store one scalar, or (specialised below) one vector, at a pointer
  static T load(const T* p) { return *p; }
  static void store(T* p, T v) { *p = v; }
};
template <typename T>
struct Lanes<at::vec::Vectorized<T>> {
  static at::vec::Vectorized<T> load(const T* p) { return at::vec::Vectorized<T>::loadu(p); }
  static void store(T* p, const at::vec::Vectorized<T>& v) { v.store(p); }
};

// Calls body(V{}, j) over j in [0, n): with V = Vectorized<T> a vector at a time, then V = T for the tail.
// In the body, ``Lanes<V>::load(p + j)`` reads the lanes at p + j and ``Lanes<V>::store`` writes them.
template <typename T, typename F>
inline void vectorized(int64_t n, const F& body) {
  using Vec = at::vec::Vectorized<T>;
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) body(Vec(), j);
  for (; j < n; ++j) body(T(), j);
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

inline std::optional<at::Tensor> checked_lengths(const std::optional<at::Tensor>& lengths) {
  if (!lengths.has_value()) return lengths;
  TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->device().is_cpu() && lengths->dim() == 1,
              "lengths must be a 1-D int64 CPU tensor");
  return lengths->contiguous();
}

}  // namespace rnnkit
