// The cells' elementwise math on at::vec::Vectorized<T>, as precise as torch.nn's own: a few
// units in the last place (ulp) of relative error at every scale, and exact where the math is
// (sigmoid(0) = 1/2, tanh(0) = 0, so zero weights give exact zeros).
//
// float is computed inline (always: the compiler would otherwise call tanh_), so that it overlaps a
// row's independent gates (at small H the gate math, not the product, is most of a step; a call to
// Sleef per gate ran ~2x slower):
//   exp(x)   2^n exp(r) for x = n ln2 + r, |r| <= ln2 / 2, ln2 in two parts so that r is exact;
//            exp(r) by Cephes' degree-6 polynomial (expf): about 1 ulp.
//   1 / x    the hardware's estimate refined by Newton's steps r + r (1 - x r) to float's
//            rounding (AVX-512: one step from 14 bits; AVX2: two from 12); a division elsewhere.
//   tanh(x)  x + x^3 P(x^2) for |x| < 0.625 (Cephes' tanhf), where 1 - 2 / (exp(2|x|) + 1)
//            would cancel the leading digits; that formula, with x's sign, above.
// An identity such as tanh(x) = 2 sigmoid(2x) - 1 is exact in absolute terms only: near 0 it
// loses every digit. double uses Sleef's 1-ulp exp and tanh through at::vec.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <type_traits>

#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace rnnkit {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// exp(x) for float x in [-87, 88], where 2^n stays a normal number.
C10_ALWAYS_INLINE Vec<float> exp_float(const Vec<float>& x) {
  using V = Vec<float>;
  const V n = (x * V(1.44269504088896341f)).round();
  V r = at::vec::fmadd(n, V(-0.693359375f), x);  // n ln2's leading bits: n * this is exact
  r = at::vec::fmadd(n, V(2.12194440e-4f), r);
  V p = at::vec::fmadd(V(1.9875691500e-4f), r, V(1.3981999507e-3f));
  p = at::vec::fmadd(p, r, V(8.3334519073e-3f));
  p = at::vec::fmadd(p, r, V(4.1665795894e-2f));
  p = at::vec::fmadd(p, r, V(1.6666665459e-1f));
  p = at::vec::fmadd(p, r, V(5.0000001201e-1f));
  const V exp_r = at::vec::fmadd(p * r, r, r) + V(1);
  // 2^n: the float whose exponent field is n + 127, i.e. whose bits are (n + 127) 2^23.
  const V two_n = at::vec::cast<float>(at::vec::convert_to_int_of_same_size((n + V(127)) * V(8388608.0f)));
  return exp_r * two_n;
}

template <typename T>
C10_ALWAYS_INLINE Vec<T> reciprocal_(const Vec<T>& x) {
  if constexpr (std::is_same_v<T, float>) {
#if defined(CPU_CAPABILITY_AVX512)
    const __m512 r = _mm512_rcp14_ps(x);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(1.0f)), r);
#elif defined(CPU_CAPABILITY_AVX2)
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 r = _mm256_rcp_ps(x);
    r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r);
    return _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r);
#endif
  }
  return x.reciprocal();
}

// sigmoid(x) = 1 / (1 + exp(-x)). The exponent is clamped to [-87, 87], where the result is
// already 1 or below float's normal range, so exp never overflows to inf (the reciprocal's
// estimate would turn 1 / inf into NaN).
template <typename T>
C10_ALWAYS_INLINE Vec<T> sigmoid_(const Vec<T>& x) {
  using V = Vec<T>;
  const V minus_x = at::vec::clamp(V(0) - x, V(-87), V(87));
  if constexpr (std::is_same_v<T, float>) {
    return reciprocal_<T>(V(1) + exp_float(minus_x));
  } else {
    return reciprocal_<T>(V(1) + minus_x.exp());
  }
}

template <typename T>
C10_ALWAYS_INLINE Vec<T> tanh_(const Vec<T>& x) {
  using V = Vec<T>;
  if constexpr (std::is_same_v<T, float>) {
    const V z = x * x;
    V p = at::vec::fmadd(V(-5.70498872745e-3f), z, V(2.06390887954e-2f));
    p = at::vec::fmadd(p, z, V(-5.37397155531e-2f));
    p = at::vec::fmadd(p, z, V(1.33314422036e-1f));
    p = at::vec::fmadd(p, z, V(-3.33332819422e-1f));
    const V near_zero = at::vec::fmadd(p * z, x, x);
    // tanh is 1 in float from |x| = 9.1 on; the clamp keeps exp(2|x|) finite.
    const V a = at::vec::minimum(x.abs(), V(20));
    const V far = V(1) - V(2) * reciprocal_<T>(exp_float(a + a) + V(1));
    const V signed_far = V::blendv(far, V(0) - far, x < V(0));
    return V::blendv(signed_far, near_zero, x.abs() < V(0.625f));
  } else {
    return x.tanh();
  }
}

}  // namespace rnnkit
