// Shared pieces of the fused CPU recurrences.
//
// Dimensions: T steps, B batch, I input features, H hidden units, P = proj_size or H,
// G gates (LSTM 4, GRU 3, RNN 1). Matrices are row-major. Each op runs one direction of one
// layer: the GRU's and RNN's input projection W_ih x_t + b of every step is one product before
// the time loop (project_input; the LSTM's step multiplies [h | x_t] instead, unless its weight
// is too large); in the loop, threads split the sequences or the hidden units (packed.h's Tiles).
#pragma once

// ATen's Tensor and the few ops used, not <ATen/ATen.h>: that declares every op of torch, which
// took 4 s of each build's compile here.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <optional>
#include <vector>

#include "activations.h"
#include "packed.h"

namespace rnnkit {

// Loads and stores whole vectors at a pointer, or, for a row's tail, its first ``count`` lanes
// (unloaded lanes read as zero), so short rows (H = 10, say) stay vectorised too. ``only``
// zeroes the lanes past the row, for sums over it of values that are not zero there.
template <typename T>
struct WholeLanes {
  using V = at::vec::Vectorized<T>;
  C10_ALWAYS_INLINE V load(const T* p) const { return V::loadu(p); }
  C10_ALWAYS_INLINE void store(T* p, const V& v) const { v.store(p); }
  C10_ALWAYS_INLINE V only(const V& v) const { return v; }
};
// (Always inlined: AVX2's tail store is a few branches, which compiled as a call cost short rows
// a call per store.)
template <typename T>
struct Lanes {
  using V = at::vec::Vectorized<T>;
  int count;
  C10_ALWAYS_INLINE V load(const T* p) const { return V::loadu(p, count); }
  C10_ALWAYS_INLINE void store(T* p, const V& v) const { store_first(v, p, count); }
  C10_ALWAYS_INLINE V only(const V& v) const { return V::set(V(T(0)), v, count); }
};

// Calls body(lanes, j) for j = 0, V::size(), ... < n: one vector of a row at a time. The body is
// compiled twice, for whole vectors (no test per load) and for the tail.
template <typename T, typename F>
inline void vectorized(int64_t n, const F& body) {
  constexpr int64_t width = at::vec::Vectorized<T>::size();
  int64_t j = 0;
  for (; j + width <= n; j += width) body(WholeLanes<T>{}, j);
  if (j < n) body(Lanes<T>{static_cast<int>(n - j)}, j);
}

// a (R x K) W^T + bias -> (R x N) for W (N x K): a product over the rows of all steps at once,
// threads splitting the rows (or, for a few rows, W's rows).
inline at::Tensor rows_product(const at::Tensor& a, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  const int64_t R = a.size(0), N = weight.size(0), K = a.size(1);
  const at::Tensor inputs = a.contiguous();
  at::Tensor out = empty_tensor({R, N}, a.options());
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rows_product", [&] {
    const scalar_t* pb = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
    const auto w = Columns<scalar_t>::transposed(weight);
    if (R < PackedWeight<scalar_t>::kPackUses) {  // too few rows to split: threads split W's rows instead
      const Split columns(N, R * K, PackedWeight<scalar_t>::kWidth);
      columns.run([&](int64_t p) {
        const int64_t n0 = columns.begin(p), n = columns.end(p) - n0;
        const PackedWeight<scalar_t> part({w.columns(n0, n)}, R, pb == nullptr ? pb : pb + n0);
        part.apply(R, inputs.data_ptr<scalar_t>(), K, out.data_ptr<scalar_t>() + n0, N);
      });
      return;
    }
    const PackedWeight<scalar_t> packed({w}, R, pb);
    const Split rows(R, N * K, 1);
    rows.run([&](int64_t p) {
      const int64_t r0 = rows.begin(p);
      packed.apply(rows.end(p) - r0, inputs.data_ptr<scalar_t>() + r0 * K, K, out.data_ptr<scalar_t>() + r0 * N, N);
    });
  });
  return out;
}

// x (T, B, I) -> x W_ih^T + bias (T, B, G): the input projection of every step, one product before the loop.
inline at::Tensor project_input(const at::Tensor& x, const at::Tensor& w_ih, const std::optional<at::Tensor>& bias) {
  const int64_t T = x.size(0), B = x.size(1);
  return rows_product(x.reshape({T * B, x.size(2)}), w_ih, bias).view({T, B, w_ih.size(0)});
}

// The backward of project_input for x: d xw (T, B, G) -> d x (T, B, I) = d xw W_ih; empty unless
// ``wanted`` (a first layer's input seldom needs a gradient, and this product is a third of the
// products after the recurrence).
inline at::Tensor input_gradient(const at::Tensor& grad_xw, const at::Tensor& w_ih, bool wanted) {
  if (!wanted) return empty_tensor({0}, grad_xw.options());
  const int64_t T = grad_xw.size(0), B = grad_xw.size(1);
  return rows_product(grad_xw.reshape({T * B, w_ih.size(0)}), w_ih.t(), std::nullopt).view({T, B, w_ih.size(1)});
}

// The gradient of the state h0 a backward started from: dh, where it was ``wanted``; else empty, and
// the last step's product into it (as costly as a step's, all of a generated token's) was skipped.
inline at::Tensor state_gradient(const at::Tensor& dh, bool wanted) {
  return wanted ? dh : empty_tensor({0}, dh.options());
}

// out (n) = the sums of the columns of a (rows x n, rows ld apart), by halves: each sum's rounding
// error grows with log2(rows), not with rows as in one running sum. scratch: room for n values per
// halving.
template <typename T>
void column_sums(const T* a, int64_t rows, int64_t n, int64_t ld, T* out, T* scratch) {
  if (rows <= 8) {  // each vector's sum in a register: a masked store read back stalls the next addition
    vectorized<T>(n, [&](const auto& L, int64_t j) {
      at::vec::Vectorized<T> sum(T(0));
      for (int64_t r = 0; r < rows; ++r) sum = sum + L.load(a + r * ld + j);
      L.store(out + j, sum);
    });
    return;
  }
  const int64_t half = rows / 2;
  column_sums(a, half, n, ld, out, scratch + n);
  column_sums(a + half * ld, rows - half, n, ld, scratch, scratch + n);
  vectorized<T>(n, [&](const auto& L, int64_t j) { L.store(out + j, L.load(out + j) + L.load(scratch + j)); });
}

// The depth of column_sums' halvings of ``rows`` rows: the scratch it takes is G values for each.
inline int64_t halvings(int64_t rows) {
  int64_t depth = 0;
  for (; rows > 8; rows -= rows / 2) ++depth;
  return depth;
}

// The sums of the columns of a (rows x G, contiguous) by halves, as column_sums. (Its scratch is
// sized to the rows: a generated token's few rows take none, where room for 64 halvings of the
// 4H = 1024 sums of a layer was a quarter megabyte allocated at every call.)
inline at::Tensor summed_rows(const at::Tensor& a) {
  const int64_t G = a.size(-1), rows = a.numel() / std::max<int64_t>(G, 1), depth = halvings(rows);
  at::Tensor sums = empty_tensor({G}, a.options());
  at::Tensor scratch = empty_tensor({depth * G}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "column_sums", [&] {
    using T = scalar_t;
    const T* pa = a.data_ptr<T>();
    T *ps = sums.data_ptr<T>(), *pscratch = scratch.data_ptr<T>();
    // The threads split the columns (each sum as one thread would make it): the sums of a layer's
    // gate gradients over all steps (LSTM I28 H256 B32 T35: 1,120 x 1,024) are a pass over megabytes.
    const int64_t grain = std::max<int64_t>(64, (int64_t(1) << 16) / std::max<int64_t>(rows, 1));
    at::parallel_for(0, G, grain, [&](int64_t g0, int64_t g1) {
      column_sums(pa + g0, rows, g1 - g0, G, ps + g0, pscratch + depth * g0);
    });
  });
  return sums;
}

// grad^T y (G x K) for grad (R x G) and y (R x K), both contiguous, R below kPackUses (a generated
// token's backward): row g is the sum over r of grad(r, g) y_r, in the order of r, written straight
// into the result; packing y, zeroing the result and copying each weight's part out would cost
// more than these few products.
inline at::Tensor outer_products(const at::Tensor& grad, const at::Tensor& y) {
  const int64_t R = grad.size(0), G = grad.size(1), K = y.size(1);
  at::Tensor out = empty_tensor({G, K}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "outer_products", [&] {
    using T = scalar_t;
    using V = at::vec::Vectorized<T>;
    const T *pg = grad.data_ptr<T>(), *py = y.data_ptr<T>();
    T* po = out.data_ptr<T>();
    at::parallel_for(0, G, std::max<int64_t>(1, 16384 / std::max<int64_t>(R * K, 1)), [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        T* row = po + g * K;
        vectorized<T>(K, [&](const auto& L, int64_t k) {
          V sum(T(0));
          for (int64_t r = 0; r < R; ++r) sum = at::vec::fmadd(V(pg[r * G + g]), L.load(py + r * K + k), sum);
          L.store(row + k, sum);
        });
      }
    });
  });
  return out;
}

// The gradients of weights applied at every step to inputs y_i (T, B, K_i), whose products
// (summed, with the bias when ``bias``) have the gradient grad (T, B, G): [d W_1 (G, K_1), ...,
// then d b (G) when ``bias``], the weights' from one product over the T*B rows, the bias's summed
// by halves (as exact as torch's per-step sums).
inline std::vector<at::Tensor> step_weight_gradients(const at::Tensor& grad, const std::vector<at::Tensor>& inputs,
                                                     bool bias) {
  const int64_t G = grad.size(-1), rows = grad.numel() / G;
  std::vector<at::Tensor> columns;
  for (const auto& y : inputs) columns.push_back(y.reshape({rows, y.size(-1)}));
  const at::Tensor by_row = grad.reshape({rows, G}).contiguous();
  std::vector<at::Tensor> grads;  // separate memory each: autograd accumulates them one by one
  if (rows < PackedWeight<float>::kPackUses) {
    for (const auto& y : columns) grads.push_back(outer_products(by_row, y.contiguous()));
  } else {
    const at::Tensor all = weight_gradient(by_row, columns);
    for (int64_t offset = 0; const auto& y : columns) {
      grads.push_back(all.narrow(1, offset, y.size(1)).contiguous());
      offset += y.size(1);
    }
  }
  if (bias) grads.push_back(summed_rows(by_row));
  return grads;
}

// A contiguous copy of t. (The small tensors a one-token step copies cost less this way than
// through clone's TensorIterator, as in add_biases; a gradient that comes expanded, as sum's
// backward gives it, is copied once.)
inline at::Tensor copy_of(const at::Tensor& t) {
  at::Tensor copy = empty_tensor(t.sizes(), t.options());
  if (!t.is_contiguous()) return copy.copy_(t);
  std::memcpy(copy.data_ptr(), t.data_ptr(), t.nbytes());
  return copy;
}

// t where it is contiguous, else copy_of(t) (not clone's dispatch through empty_like).
inline at::Tensor contiguous_of(const at::Tensor& t) { return t.is_contiguous() ? t : copy_of(t); }

// The sum of two optional bias vectors of size G (zeros where neither is given), of b only its
// first ``of_b`` values where given (the gates whose a and u a variant kernel only sums).
inline at::Tensor add_biases(const std::optional<at::Tensor>& a, const std::optional<at::Tensor>& b, int64_t G,
                             const at::TensorOptions& options, std::optional<int64_t> of_b = std::nullopt) {
  const int64_t n = of_b.value_or(G);
  if (!b.has_value() || n == 0) return a.has_value() ? a->contiguous() : zero_tensor({G}, options);
  if (!a.has_value() && n == G) return b->contiguous();
  at::Tensor sum = a.has_value() ? copy_of(*a) : zero_tensor({G}, options);
  const at::Tensor other = b->contiguous();
  AT_DISPATCH_FLOATING_TYPES(sum.scalar_type(), "add_biases", [&] {
    scalar_t* s = sum.data_ptr<scalar_t>();
    const scalar_t* o = other.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) s[i] += o[i];
  });
  return sum;
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

// The phases of an LSTM layer's backward through time (the plain and the variant kernels'), from
// the last step back: over the features, carry(q, t') takes dh from the step t' after this one and
// step_gradient(q, t) adds d output_t; then, over the units, gate_gradients(p, t). With a
// projection these are two phases (the units' part reads every feature); without, the features are
// the units, and a step is one phase. Last, where ``state_grad``, carry into the state the first
// step started from.
template <typename Carry, typename StepGradient, typename GateGradients>
void lstm_backward_steps(int64_t parts, const Steps& steps, bool proj, bool state_grad, const Tiles& features,
                         const Tiles& units, const Carry& carry, const StepGradient& step_gradient,
                         const GateGradients& gate_gradients) {
  const int64_t T = steps.T;
  Team::run(parts, [&](const Team::Member& member) {
    for (int64_t i = T - 1; i >= 0; --i) {
      const int64_t t = steps.at(i);
      auto features_step = [&](int64_t q) {
        if (i + 1 < T) carry(q, steps.at(i + 1));
        step_gradient(q, t);
      };
      if (proj) {
        member.each(features, features_step);
        member.each(units, [&](int64_t p) { gate_gradients(p, t); });
      } else {
        member.each(units, [&](int64_t p) {
          features_step(p);
          gate_gradients(p, t);
        });
      }
    }
    if (T > 0 && state_grad) member.each(features, [&](int64_t q) { carry(q, steps.at(0)); });
  });
}

// Where the forward loop keeps the state h (B x P): step i reads it from its slot of h_prev
// (T, B, S), which the backward needs, in the first P values of each row; it writes the next
// step's slot, or h_n (B x P) after the last.
template <typename T>
struct StateSlots {
  const Steps& steps;
  T* slots;
  T* h_n;  // holds h0 until the last step
  int64_t B, P, S;

  StateSlots(const Steps& steps, at::Tensor& h_prev, at::Tensor& h_n)
      : steps(steps), slots(h_prev.data_ptr<T>()), h_n(h_n.data_ptr<T>()), B(h_n.size(-2)), P(h_n.size(-1)),
        S(h_prev.size(2)) {
    for (int64_t b = 0; steps.T > 0 && b < B; ++b) {
      std::copy(this->h_n + b * P, this->h_n + (b + 1) * P, slots + (steps.at(0) * B + b) * S);
    }
  }
  const T* in(int64_t i) const { return slots + steps.at(i) * B * S; }  // rows S apart
  T* out(int64_t i) const { return i + 1 < steps.T ? slots + steps.at(i + 1) * B * S : h_n; }
  int64_t out_stride(int64_t i) const { return i + 1 < steps.T ? S : P; }
};

// Packs slice(s), W^T's slice s for the parts of the tiles, on the thread that multiplies by it
// (the packing then leaves it in that core's cache).
template <typename T, typename F>
std::vector<PackedWeight<T>> pack_slices(const Tiles& tiles, const F& slice) {
  std::vector<PackedWeight<T>> slices(tiles.slices());
  tiles.each_slice([&](int64_t s) { slices[s] = slice(s); });
  return slices;
}

// The slices of W = [W_1 | W_2 | ...] (G*H x K_1 + K_2 + ...) for the product h W^T (+ bias)
// of a step: the rows of each slice's units in every gate, so a slice's product holds G blocks of
// its n units. ``uses``: the rows a slice multiplies over the loop (steps times sequences).
template <typename T>
std::vector<PackedWeight<T>> unit_rows(at::TensorList weights, int64_t gates, const Tiles& tiles, int64_t uses,
                                       const at::Tensor& bias = {}) {
  const int64_t H = weights[0].size(0) / gates;
  return pack_slices<T>(tiles, [&](int64_t s) {
    const int64_t j0 = tiles.begin(s), n = tiles.end(s) - j0;
    typename PackedWeight<T>::Pieces pieces;  // each W_i^T's columns of the slice's units, gate by gate
    for (const auto& weight : weights) {
      const auto w = Columns<T>::transposed(weight);
      auto& piece = pieces.emplace_back();
      for (int64_t g = 0; g < gates; ++g) piece.push_back(w.columns(g * H + j0, n));
    }
    std::vector<T> units_bias;
    for (int64_t g = 0; bias.defined() && g < gates; ++g) {
      const T* from = bias.data_ptr<T>() + g * H + j0;
      units_bias.insert(units_bias.end(), from, from + n);
    }
    return PackedWeight<T>(std::move(pieces), uses, bias.defined() ? units_bias.data() : nullptr);
  });
}

// The slices of W (N x K) by columns, for the products a W[:, slice] of the backward; ``uses`` as
// unit_rows'.
template <typename T>
std::vector<PackedWeight<T>> column_parts(const at::Tensor& weight, const Tiles& tiles, int64_t uses) {
  const auto w = Columns<T>::of(weight);
  return pack_slices<T>(tiles, [&](int64_t s) {
    return PackedWeight<T>({w.columns(tiles.begin(s), tiles.end(s) - tiles.begin(s))}, uses);
  });
}

// Part p's product in a step: the rows of its tile in a (B x K, row stride lda) times its slice
// of the weight, into its room in products. Returns the product, rows from the tile's first,
// row stride products.size(2).
template <typename T>
T* tile_product(const std::vector<PackedWeight<T>>& slices, const Tiles& tiles, int64_t p, const T* a, int64_t lda,
                at::Tensor& products) {
  const int64_t b0 = tiles.row_begin(p), ld = products.size(2);
  T* out = products.data_ptr<T>() + p * products.size(1) * ld;
  slices[tiles.slice(p)].apply(tiles.row_end(p) - b0, a + b0 * lda, lda, out, ld);
  return out;
}

// A step's product a w (w = W^T, K x N: Columns::transposed(W) in a forward, Columns::of(W) in a
// backward) for a loop whose tiles are one part (layer norm takes whole rows, and fewer than 16
// sequences are one thread's worth: one generated token is one row): threads split w's N columns,
// where one thread would stream all of W (1 MB at H = 256) alone. At a few rows the product reads
// W from memory, about four times a packed multiply-add's cost, which sets the work a thread
// must have. Inactive where the tiles have parts of their own or the product is too small.
template <typename T>
class SplitProduct {
 public:
  SplitProduct(const Columns<T>& w, const Tiles& tiles, int64_t rows, int64_t uses)
      : split_(w.cols, tiles.parts() == 1 ? 4 * rows * w.rows : 0, PackedWeight<T>::kWidth) {
    for (int64_t p = 0; active() && p < split_.parts; ++p) {
      const int64_t c0 = split_.begin(p);
      slices_.emplace_back(typename PackedWeight<T>::Pieces{{w.columns(c0, split_.end(p) - c0)}}, uses, nullptr);
    }
  }

  bool active() const { return split_.parts > 1; }
  // The width of the product's rows where active (scratch_for's), else 0.
  int64_t width() const { return active() ? split_.size : 0; }

  // a (rows x K, row stride lda) w into products' first part, rows products.size(2) apart; returns it.
  T* apply(const T* a, int64_t lda, at::Tensor& products) const {
    T* out = products.data_ptr<T>();
    split_.run([&](int64_t p) { slices_[p].apply(products.size(1), a, lda, out + split_.begin(p), products.size(2)); });
    return out;
  }

 private:
  Split split_;
  std::vector<PackedWeight<T>> slices_;
};

// A step's product for each part of a loop over a recurrent weight: the part's slice of it
// (tile_product), or, for a loop of one part, SplitProduct's threads. ``products`` (scratch_for of
// ``slices`` at least ``across.width()`` wide) takes it.
template <typename T>
struct StepProduct {
  SplitProduct<T> across;
  std::vector<PackedWeight<T>> slices;  // none where ``across`` is active

  T* operator()(const Tiles& tiles, int64_t p, const T* a, int64_t lda, at::Tensor& products) const {
    return across.active() ? across.apply(a, lda, products) : tile_product(slices, tiles, p, a, lda, products);
  }
};

// A forward's m h W_hh^T: unit_rows' slices of W_hh (G*H x K) for ``units``, ``rows`` sequences a step.
template <typename T>
StepProduct<T> unit_product(const at::Tensor& w_hh, int64_t gates, const Tiles& units, int64_t rows, int64_t uses) {
  SplitProduct<T> across(Columns<T>::transposed(w_hh), units, rows, uses);
  auto slices = across.active() ? std::vector<PackedWeight<T>>() : unit_rows<T>({w_hh}, gates, units, uses);
  return {std::move(across), std::move(slices)};
}

// A backward's d u W_hh (what reaches h_{t-1}): column_parts' slices of W_hh (G*H x P) for ``features``,
// ``rows`` sequences a step.
template <typename T>
StepProduct<T> column_product(const at::Tensor& w_hh, const Tiles& features, int64_t rows, int64_t uses) {
  SplitProduct<T> across(Columns<T>::of(w_hh), features, rows, uses);
  auto slices = across.active() ? std::vector<PackedWeight<T>>() : column_parts<T>(w_hh, features, uses);
  return {std::move(across), std::move(slices)};
}

// The forward time loop of a GRU or Elman RNN layer, state h (B x H), W_hh (G*H x H). Each
// step, every part multiplies the state by its slice of W_hh, then calls
// cell(t, b, j0, n, hw, h_in, h_out) for each sequence b of its tile alive at t: hw is the
// product for units [j0, j0 + n) (G blocks of n), h_in and h_out b's state from unit j0. A
// sequence past its length keeps its state. The state moves through h_prev's slots to h_n.
template <typename T, typename Cell>
void forward_loop(const Steps& steps, const at::Tensor& w_hh, int64_t gates, at::Tensor& h_prev, at::Tensor& h_n,
                  const Cell& cell) {
  const int64_t B = h_n.size(-2), H = h_n.size(-1);
  // A part takes its units' rows of W_hh and their cells: all units for its sequences, or a slice for all.
  const Tiles units(B, H, B * gates * H, PackedWeight<T>::kWidth, Tiles::by_rows(B, w_hh.numel() * sizeof(T)));
  const auto recurrent = unit_rows<T>({w_hh}, gates, units, steps.T * B);
  at::Tensor products = scratch_for<T>(units.parts(), B, {&recurrent}, h_n.options());
  const StateSlots<T> state(steps, h_prev, h_n);  // rows H apart in both
  Team::run(units.parts(), [&](const Team::Member& member) {
    for (int64_t i = 0; i < steps.T; ++i) {
      const int64_t t = steps.at(i);
      const T* h_in = state.in(i);
      T* h_out = state.out(i);
      member.each(units, [&](int64_t p) {
        const int64_t j0 = units.begin(p), n = units.end(p) - j0, b0 = units.row_begin(p);
        const T* hw = tile_product(recurrent, units, p, h_in, H, products);
        for (int64_t b = b0; b < units.row_end(p); ++b) {
          const int64_t row = b * H + j0;
          if (steps.alive(t, b)) {
            cell(t, b, j0, n, hw + (b - b0) * products.size(2), h_in + row, h_out + row);
          } else {
            std::copy(h_in + row, h_in + row + n, h_out + row);
          }
        }
      });
    }
  });
}

// dh[part q's tile] = grad_t (B x G*H) W_hh[:, the tile's columns] (+ skip there) for the
// sequences alive at t, in place: the gradient that reaches the state step t started from. The
// others keep dh.
template <typename T>
void carry_back(const std::vector<PackedWeight<T>>& recurrent, const Tiles& tiles, int64_t q, const Steps& steps,
                int64_t t, const T* grad_t, int64_t ld_grad, at::Tensor& products, T* dh, int64_t P,
                const T* skip = nullptr) {
  const int64_t ld = products.size(2), k0 = tiles.begin(q), n = tiles.end(q) - k0, b0 = tiles.row_begin(q);
  const T* y = tile_product(recurrent, tiles, q, grad_t, ld_grad, products);
  for (int64_t b = b0; b < tiles.row_end(q); ++b) {
    if (!steps.alive(t, b)) continue;
    const T* from = y + (b - b0) * ld;
    T* row = dh + b * P + k0;
    if (skip == nullptr) {
      std::copy(from, from + n, row);
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] = from[j] + skip[b * P + k0 + j];
    }
  }
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

// A (T, B, ...) buffer of per-step results: zeros where lengths skip steps (nothing is written
// past a length), uninitialised where every step writes it. Given a workspace slot, a buffer the
// kernel keeps to itself, from the thread's workspace.
inline at::Tensor step_results(at::IntArrayRef shape, const at::TensorOptions& options,
                               const std::optional<at::Tensor>& lengths, std::optional<Slot> slot = std::nullopt) {
  if (slot) return workspace(*slot, shape, options, lengths.has_value());
  return lengths.has_value() ? zero_tensor(shape, options) : empty_tensor(shape, options);
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

// A state (h0, c0) or its gradient (grad_h_n, grad_c_n): (B, n), or (1, B, n) as a net of one
// layer and direction holds it, which spares its caller a select and an unsqueeze, each an autograd
// view. The results made from it (h_n, c_n and their gradients, copies of it) keep its shape.
inline void check_state(const char* op, const char* name, const at::Tensor& t, int64_t B, int64_t n,
                        const at::Tensor& x) {
  if (t.dim() == 3 && t.size(0) == 1) return check_tensor(op, name, t, {1, B, n}, x);
  check_tensor(op, name, t, {B, n}, x);
}

// The arguments every forward op shares: x (T, B, I), h0 (B, P) or (1, B, P), W_ih (G*H, I),
// W_hh (G*H, P), the biases (G*H,). Returns H.
inline int64_t check_layer(const char* op, const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                           const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                           const std::optional<at::Tensor>& b_hh, int64_t gates) {
  TORCH_CHECK(x.dim() == 3 && x.device().is_cpu(), op, ": expected x of 3 dimensions (T, B, I) on the CPU, got ",
              x.sizes(), " on ", x.device());
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % gates == 0, op, ": expected w_hh of shape (", gates,
              "*H, P), got ", w_hh.sizes());
  const int64_t B = x.size(1), G = w_hh.size(0), P = w_hh.size(1);
  check_state(op, "h0", h0, B, P, x);
  check_tensor(op, "w_ih", w_ih, {G, x.size(2)}, x);
  check_tensor(op, "w_hh", w_hh, {G, P}, x);
  check_tensor(op, "b_ih", b_ih, {G}, x);
  check_tensor(op, "b_hh", b_hh, {G}, x);
  return G / gates;
}

}  // namespace rnnkit
