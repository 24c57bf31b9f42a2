// Fused LSTM layer (one direction) for the CPU: forward and hand-written backward through time.
//
// Dimensions: T steps, B batch, I input features, H hidden, P = proj_size or H.
//   x       (T, B, I)   input
//   h_prev  (T, B, P+I) saved: [h_{t-1} | x_t]; step t multiplies it by [W_hh | W_ih], and the
//                       gradients of both weights are one product over these rows
//   gates   (T, B, 4H)  saved: activated i, f, g, o of every step
//   c_prev  (T, B, H)   saved: the cell state each step started from
// Without ``save`` (no gradient wanted) gates and c_prev hold one step, rewritten at every step.
// A step at t >= lengths[b] leaves sequence b's states as they are and outputs zero.
#include <torch/library.h>

#include "../csrc/autograd.h"
#include "../csrc/common.h"

namespace rnnkit {
namespace {

using at::Tensor;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& x_in, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh, const std::optional<Tensor>& w_hr,
    const std::optional<Tensor>& lengths_in, bool reverse, bool save) {
  const int64_t H = check_layer("lstm_forward", x_in, h0, w_ih, w_hh, b_ih, b_hh, 4);
  const Tensor x = x_in.contiguous();
  const int64_t T = x.size(0), B = x.size(1), P = h0.size(-1);
  const bool proj = w_hr.has_value();
  TORCH_CHECK(proj || P == H, "lstm_forward: without w_hr, h0 must have H = ", H, " features, got ", P);
  check_state("lstm_forward", "c0", c0, B, H, x);
  check_tensor("lstm_forward", "w_hr", w_hr, {P, H}, x);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  // Each step multiplies [h_{t-1} | x_t] by [W_hh | W_ih] and adds the bias: the input's product
  // is made by the thread that uses it, at the step that uses it (unless the weight is too large
  // for that, below).
  const int64_t I = x.size(2), S = P + I;
  const Tensor bias = add_biases(b_ih, b_hh, 4 * H, x.options());
  Tensor h_prev = empty_tensor({T, B, S}, x.options());
  h_prev.narrow(2, P, I).copy_(x);
  const int64_t kept = save ? T : std::min<int64_t>(T, 1);  // steps of gates and c_prev kept
  Tensor gates = step_results({kept, B, 4 * H}, x.options(), save ? lengths : std::nullopt);
  Tensor output = step_results({T, B, P}, x.options(), lengths);
  Tensor c_prev = empty_tensor({kept, B, H}, x.options());
  Tensor h = copy_of(h0), c = copy_of(c0);
  Tensor m = proj ? zero_tensor({B, H}, x.options()) : Tensor();  // o * tanh(c) before the projection

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    using T_ = scalar_t;
    // A part takes its units' cells (four gates' rows of the step's weight); with a projection,
    // then its features (their rows of W_hr): all of them for its sequences, or a slice of them
    // for every sequence.
    const int64_t weight_bytes = (w_hh.numel() + w_ih.numel()) * sizeof(T_);
    const bool by_rows = Tiles::by_rows(B, weight_bytes);
    const Tiles units(B, H, B * 4 * S, PackedWeight<T_>::kWidth, by_rows);
    const Tiles features(B, P, B * H, PackedWeight<T_>::kWidth, by_rows);
    // A slice of [W_hh | W_ih] beyond a core's cache would stream from memory at every step of
    // few sequences: then x W_ih^T + b of all steps is one product first, and a step reads W_hh.
    const bool project = !by_rows && weight_bytes / units.slices() > Tiles::kCachedWeightBytes;
    const Tensor xw = project ? project_input(x, w_ih, bias) : Tensor();  // (T, B, 4H)
    const auto recurrent =
        project ? unit_rows<T_>({w_hh}, 4, units, T * B) : unit_rows<T_>({w_hh, w_ih}, 4, units, T * B, bias);
    const auto projection = proj ? unit_rows<T_>({*w_hr}, 1, features, T * B) : std::vector<PackedWeight<T_>>();
    const int64_t parts = std::max(units.parts(), proj ? features.parts() : 1);
    Tensor products = scratch_for<T_>(parts, B, {&recurrent, &projection}, x.options());
    const int64_t ld = products.size(2);
    const StateSlots<T_> state(steps, h_prev, h);
    T_* pc = c.data_ptr<T_>();
    T_ *pc_prev = c_prev.data_ptr<T_>(), *pm = proj ? m.data_ptr<T_>() : nullptr;
    const T_* pxw = project ? xw.data_ptr<T_>() : nullptr;
    Team::run(parts, [&](const Team::Member& member) {
      for (int64_t i = 0; i < T; ++i) {
        const int64_t t = steps.at(i);
        const T_* h_in = state.in(i);
        T_* h_out = state.out(i);
        const int64_t ld_out = state.out_stride(i);
        const int64_t slot = save ? t : 0;  // the step's room in gates and c_prev
        T_* pg = gates.data_ptr<T_>() + slot * B * 4 * H;
        T_* po = output.data_ptr<T_>() + t * B * P;
        member.each(units, [&](int64_t p) {
          const int64_t j0 = units.begin(p), n = units.end(p) - j0, b0 = units.row_begin(p);
          const T_* hw = tile_product(recurrent, units, p, h_in, S, products);  // pre-activations, gate by gate
          for (int64_t b = b0; b < units.row_end(p); ++b) {
            T_* cb = pc + b * H + j0;
            T_* cb_prev = pc_prev + (slot * B + b) * H + j0;
            if (!steps.alive(t, b)) {
              std::copy(cb, cb + n, cb_prev);
              if (!proj) std::copy(h_in + b * S + j0, h_in + b * S + j0 + n, h_out + b * ld_out + j0);
              continue;
            }
            T_* g = pg + b * 4 * H + j0;
            const T_* r = hw + (b - b0) * ld;
            const T_* r_x = project ? pxw + (t * B + b) * 4 * H + j0 : nullptr;  // x_t's part
            // The cell's output o * tanh(c): the new state and output_t, or m for the projection.
            T_* out = proj ? pm + b * H + j0 : h_out + b * ld_out + j0;
            T_* out_t = proj ? nullptr : po + b * P + j0;
            // Two passes over the row, each with a short chain of dependent operations, so that the
            // processor overlaps the vectors of a pass (one pass ran ~2x slower, latency-bound).
            vectorized<T_>(n, [&](const auto& L, int64_t j) {
              using V = at::vec::Vectorized<T_>;
              auto pre = [&](int64_t k) {
                const V v = L.load(r + k * n + j);
                return r_x ? v + L.load(r_x + k * H + j) : v;
              };
              const V gi = sigmoid_(pre(0)), gf = sigmoid_(pre(1)), gg = tanh_(pre(2)), go = sigmoid_(pre(3));
              L.store(g + 3 * H + j, go);  // the second pass reads o; the backward reads all four
              const V c_old = L.load(cb + j);
              if (save) {
                L.store(g + j, gi), L.store(g + H + j, gf), L.store(g + 2 * H + j, gg);
                L.store(cb_prev + j, c_old);
              }
              // An explicit FMA: left to contraction, which product it fuses may differ with the branch
              // above, and a run without gradients would not give a training run's bits.
              L.store(cb + j, at::vec::fmadd(gf, c_old, gi * gg));
            });
            vectorized<T_>(n, [&](const auto& L, int64_t j) {
              const auto y = L.load(g + 3 * H + j) * tanh_(L.load(cb + j));
              L.store(out + j, y);
              if (!proj) L.store(out_t + j, y);
            });
          }
        });
        if (!proj) continue;
        member.each(features, [&](int64_t q) {
          const int64_t k0 = features.begin(q), n = features.end(q) - k0, b0 = features.row_begin(q);
          const T_* y = tile_product(projection, features, q, m.data_ptr<T_>(), H, products);  // W_hr m
          for (int64_t b = b0; b < features.row_end(q); ++b) {
            const bool alive = steps.alive(t, b);
            const T_* from = alive ? y + (b - b0) * ld : h_in + b * S + k0;
            std::copy(from, from + n, h_out + b * ld_out + k0);
            if (alive) std::copy(from, from + n, po + b * P + k0);
          }
        });
      }
    });
  });
  return {output, h, c, gates, h_prev, c_prev};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_output_in, const Tensor& grad_h_n, const Tensor& grad_c_n, const Tensor& x_in,
    const Tensor& w_ih, const Tensor& w_hh, const std::optional<Tensor>& w_hr, const std::optional<Tensor>& lengths_in,
    bool reverse, const Tensor& gates, const Tensor& h_prev, const Tensor& c_prev, bool input_grad, bool state_grad) {
  const Tensor grad_output = contiguous_of(grad_output_in), x = x_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), H = gates.size(2) / 4, P = w_hh.size(1), I = x.size(2);
  const bool proj = w_hr.has_value();
  check_tensor("lstm_backward", "grad_output", grad_output, {T, B, P}, gates);
  check_state("lstm_backward", "grad_h_n", grad_h_n, B, P, gates);
  check_tensor("lstm_backward", "h_prev", h_prev, {T, B, P + I}, gates);
  check_state("lstm_backward", "grad_c_n", grad_c_n, B, H, gates);
  check_tensor("lstm_backward", "c_prev", c_prev, {T, B, H}, gates);
  check_tensor("lstm_backward", "w_hh", w_hh, {4 * H, P}, gates);
  check_tensor("lstm_backward", "w_ih", w_ih, {4 * H, x.size(2)}, gates);
  check_tensor("lstm_backward", "w_hr", w_hr, {P, H}, gates);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor grad_gates = workspace(Slot::kGradInput, {T, B, 4 * H}, gates.options(), false);  // d(pre-activations)
  Tensor dh = copy_of(grad_h_n), dc = copy_of(grad_c_n);
  Tensor dh_step = zero_tensor({B, P}, gates.options());  // dh_t: carried dh plus d output_t
  Tensor dh_all = proj ? zero_tensor({T, B, P}, gates.options()) : Tensor();  // for grad W_hr
  Tensor m_all = proj ? zero_tensor({T, B, H}, gates.options()) : Tensor();

  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward", [&] {
    using T_ = scalar_t;
    // Part q of the features takes columns of dh (dh_{t-1} = dgates_t W_hh takes W_hh's columns);
    // part p of the units takes their cells and gates (with a projection, d m = dh_t W_hr takes
    // W_hr's columns of them): all of them for its sequences, or a slice for every sequence.
    // Without a projection the features are the units, and a step is one phase.
    const bool by_rows = Tiles::by_rows(B, w_hh.numel() * sizeof(T_));
    const Tiles units(B, H, B * 4 * P, PackedWeight<T_>::kWidth, by_rows);
    const Tiles features = proj ? Tiles(B, P, B * 4 * H, PackedWeight<T_>::kWidth, by_rows) : units;
    const auto recurrent = column_parts<T_>(w_hh, features, T * B);
    const auto projection = proj ? column_parts<T_>(*w_hr, units, T * B) : std::vector<PackedWeight<T_>>();
    const int64_t parts = std::max(units.parts(), features.parts());
    Tensor products = scratch_for<T_>(parts, B, {&recurrent, &projection}, gates.options());
    const int64_t ld = products.size(2);
    T_* pdh = dh.data_ptr<T_>();
    T_* pds = dh_step.data_ptr<T_>();
    T_* pdc = dc.data_ptr<T_>();
    T_* pm_all = proj ? m_all.data_ptr<T_>() : nullptr;

    // dh_t[part q's tile] = dh + d output_t for the sequences alive at t (output_t is zero past a length).
    auto step_gradient = [&](int64_t q, int64_t t) {
      const int64_t k0 = features.begin(q), n = features.end(q) - k0;
      const T_* pgo = grad_output.data_ptr<T_>() + t * B * P;
      for (int64_t b = features.row_begin(q); b < features.row_end(q); ++b) {
        if (!steps.alive(t, b)) continue;
        const int64_t row = b * P + k0;
        vectorized<T_>(n, [&](const auto& L, int64_t j) {
          L.store(pds + row + j, L.load(pdh + row + j) + L.load(pgo + row + j));
        });
        if (proj) std::copy(pds + row, pds + row + n, dh_all.data_ptr<T_>() + t * B * P + row);
      }
    };
    // The gate gradients of part p's units at step t, and dc carried to step t-1.
    auto gate_gradients = [&](int64_t p, int64_t t) {
      const int64_t j0 = units.begin(p), n = units.end(p) - j0, b0 = units.row_begin(p);
      const T_* dm = pds + b0 * P + j0;  // d(o * tanh(c)) of the tile, from its first row, row stride ld_dm
      int64_t ld_dm = P;
      if (proj) {
        dm = tile_product(projection, units, p, pds, P, products), ld_dm = ld;
      }
      const T_* pg = gates.data_ptr<T_>() + t * B * 4 * H + j0;
      const T_* pcp = c_prev.data_ptr<T_>() + t * B * H + j0;
      T_* pgg = grad_gates.data_ptr<T_>() + t * B * 4 * H + j0;
      for (int64_t b = b0; b < units.row_end(p); ++b) {
        T_* dg = pgg + b * 4 * H;
        if (!steps.alive(t, b)) {
          for (int64_t k = 0; k < 4; ++k) std::fill(dg + k * H, dg + k * H + n, T_(0));
          continue;
        }
        const T_* g = pg + b * 4 * H;
        const T_* cp = pcp + b * H;
        const T_* dmb = dm + (b - b0) * ld_dm;
        T_* dcb = pdc + b * H + j0;
        T_* mb = proj ? pm_all + (t * B + b) * H + j0 : nullptr;
        vectorized<T_>(n, [&](const auto& L, int64_t j) {
          using V = at::vec::Vectorized<T_>;
          const V gi = L.load(g + j), gf = L.load(g + H + j), gg = L.load(g + 2 * H + j);
          const V go = L.load(g + 3 * H + j), c_prev = L.load(cp + j), d_m = L.load(dmb + j);
          const V tc = tanh_(at::vec::fmadd(gf, c_prev, gi * gg));  // c_t as the forward computed it
          const V dct = L.load(dcb + j) + d_m * go * (V(1) - tc * tc);
          L.store(dg + j, dct * gg * gi * (V(1) - gi));
          L.store(dg + H + j, dct * c_prev * gf * (V(1) - gf));
          L.store(dg + 2 * H + j, dct * gi * (V(1) - gg * gg));
          L.store(dg + 3 * H + j, d_m * tc * go * (V(1) - go));
          L.store(dcb + j, dct * gf);
          if (proj) L.store(mb + j, go * tc);
        });
      }
    };
    // dh[part q's tile] = dgates_t W_hh[:, its columns]: the gradient of the state step t started from.
    auto carry = [&](int64_t q, int64_t t) {
      carry_back(recurrent, features, q, steps, t, grad_gates.data_ptr<T_>() + t * B * 4 * H, 4 * H, products, pdh, P);
    };

    lstm_backward_steps(parts, steps, proj, state_grad, features, units, carry, step_gradient, gate_gradients);
  });

  // Weight gradients: one product over all steps, after the recurrence.
  const auto grads = step_weight_gradients(grad_gates, {h_prev.narrow(2, 0, P), h_prev.narrow(2, P, I)}, true);
  Tensor grad_w_hr = proj ? step_weight_gradients(dh_all, {m_all}, false)[0] : empty_tensor({0}, gates.options());
  return {input_gradient(grad_gates, w_ih, input_grad), state_gradient(dh, state_grad), dc, grads[1], grads[0],
          grads[2], grad_w_hr};
}

struct LstmFunction : public torch::autograd::Function<LstmFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& h0, const Tensor& c0,
                               const Tensor& w_ih, const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                               const std::optional<Tensor>& b_hh, const std::optional<Tensor>& w_hr,
                               const std::optional<Tensor>& lengths, bool reverse, bool save) {
    static const auto op = typed_op<decltype(lstm_forward)>("rnnkit::lstm_forward");
    auto [output, h_n, c_n, gates, h_prev, c_prev] =
        call_below_autograd(op, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, save);
    ctx->set_materialize_grads(false);  // no zero tensors for the outputs the backward ignores
    ctx->mark_non_differentiable({gates, h_prev, c_prev});
    ctx->save_for_backward({x, h0, c0, w_ih, w_hh, or_undefined(b_ih), or_undefined(b_hh), or_undefined(w_hr),
                            or_undefined(lengths), gates, h_prev, c_prev});
    ctx->saved_data["flags"] = std::vector<int64_t>{reverse};
    return {output, h_n, c_n, gates, h_prev, c_prev};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &h0 = saved[1], &c0 = saved[2], &w_ih = saved[3], &w_hh = saved[4];
    const Tensor &w_hr = saved[7], &lengths = saved[8], &gates = saved[9], &h_prev = saved[10], &c_prev = saved[11];
    const auto flags = ctx->saved_data["flags"].toIntVector();
    variable_list inputs(saved.begin(), saved.begin() + 8);
    if (at::GradMode::is_enabled()) {
      inputs = replay_backward("lstm_forward", inputs, {lengths}, {grads[0], grads[1], grads[2]}, flags);
    } else {
      static const auto op = typed_op<decltype(lstm_backward)>("rnnkit::lstm_backward");
      const bool input_grad = ctx->needs_input_grad(0), state_grad = ctx->needs_input_grad(1);
      const Tensor output_like = h_prev.narrow(2, 0, h0.size(-1));  // h_prev is [h_{t-1} | x_t]
      auto [g_x, g_h0, g_c0, g_w_ih, g_w_hh, g_b, g_w_hr] =
          call_below_autograd(op, or_zeros(grads[0], output_like), or_zeros(grads[1], h0), or_zeros(grads[2], c0), x,
                              w_ih, w_hh, optional(w_hr), optional(lengths), bool(flags[0]), gates, h_prev, c_prev,
                              input_grad, state_grad);
      auto [g_b_ih, g_b_hh] = bias_gradients(g_b, inputs[5], inputs[6]);
      inputs = {input_grad ? g_x : Tensor(), state_grad ? g_h0 : Tensor(), g_c0, g_w_ih, g_w_hh, g_b_ih, g_b_hh,
                w_hr.defined() ? g_w_hr : Tensor()};
    }
    inputs.resize(11);  // lengths, reverse, save
    return inputs;
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_forward_autograd(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh, const std::optional<Tensor>& w_hr,
    const std::optional<Tensor>& lengths, bool reverse, bool save) {
  auto out = LstmFunction::apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, save);
  return {out[0], out[1], out[2], out[3], out[4], out[5]};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "lstm_forward(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? w_hr, Tensor? lengths, bool reverse, bool save=True) -> (Tensor output, Tensor h_n, Tensor c_n, "
      "Tensor gates, Tensor h_prev, Tensor c_prev)");
  m.def(
      "lstm_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_c_n, Tensor x, Tensor w_ih, Tensor w_hh, "
      "Tensor? w_hr, Tensor? lengths, bool reverse, Tensor gates, Tensor h_prev, Tensor c_prev, bool input_grad, "
      "bool state_grad) -> (Tensor grad_x, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
      "Tensor grad_bias, Tensor grad_w_hr)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) { m.impl("lstm_forward", &lstm_forward_autograd); }

}  // namespace rnnkit
