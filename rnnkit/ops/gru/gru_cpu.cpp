// Fused GRU layer (one direction) for the CPU: forward and hand-written backward through time.
//
// Dimensions: T steps, B batch, I input features, H hidden.
//   x       (T, B, I)   input; W_ih x_t for every step is one product before the loop
//   gates   (T, B, 3H)  saved: activated r, z, n of every step (W_ih x_t + b_ih past a length)
//   hn      (T, B, H)   saved: W_hn h_{t-1} + b_hn, which r scales
//   h_prev  (T, B, H)   saved: the state each step started from
// A step at t >= lengths[b] leaves sequence b's state as it is and outputs zero.
#include <torch/library.h>

#include "../csrc/autograd.h"
#include "../csrc/common.h"

namespace rnnkit {
namespace {

using at::Tensor;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward(const Tensor& x_in, const Tensor& h0,
                                                               const Tensor& w_ih, const Tensor& w_hh,
                                                               const std::optional<Tensor>& b_ih,
                                                               const std::optional<Tensor>& b_hh,
                                                               const std::optional<Tensor>& lengths_in, bool reverse) {
  const int64_t H = check_layer("gru_forward", x_in, h0, w_ih, w_hh, b_ih, b_hh, 3);
  TORCH_CHECK(w_hh.size(1) == H, "gru_forward: expected w_hh of shape (3*H, H), got ", w_hh.sizes());
  const Tensor x = x_in.contiguous();
  const int64_t T = x.size(0), B = x.size(1);
  // b_hn must stay apart from b_in: r scales it (n = tanh(W_in x + b_in + r * (W_hn h + b_hn))).
  const Tensor bias_h = add_biases(b_hh, std::nullopt, 3 * H, x.options());
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  // W_ih x_t + b_ih, then, step by step, the activated gates
  Tensor gates = project_input(x, w_ih, add_biases(b_ih, std::nullopt, 3 * H, x.options()));
  Tensor output = step_results({T, B, H}, x.options(), lengths);
  Tensor hn = empty_tensor({T, B, H}, x.options());
  Tensor h_prev = empty_tensor({T, B, H}, x.options());
  Tensor h = copy_of(h0);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward", [&] {
    using T_ = scalar_t;
    T_* pg = gates.data_ptr<T_>();
    T_* pn = hn.data_ptr<T_>();
    T_* po = output.data_ptr<T_>();
    const T_* pbh = bias_h.data_ptr<T_>();
    forward_loop<T_>(steps, w_hh, 3, h_prev, h, [&](int64_t t, int64_t b, int64_t j0, int64_t n, const T_* w,
                                                    const T_* h_in, T_* h_out) {
      T_* g = pg + (t * B + b) * 3 * H + j0;
      const int64_t row = (t * B + b) * H + j0;
      vectorized<T_>(n, [&](const auto& L, int64_t j) {
        using V = at::vec::Vectorized<T_>;
        auto from_h = [&](int64_t k) { return L.load(w + k * n + j) + L.load(pbh + k * H + j0 + j); };
        const V r = sigmoid_(L.load(g + j) + from_h(0));
        const V z = sigmoid_(L.load(g + H + j) + from_h(1));
        const V h_n = from_h(2);
        const V gn = tanh_(L.load(g + 2 * H + j) + r * h_n);
        L.store(g + j, r), L.store(g + H + j, z), L.store(g + 2 * H + j, gn);
        L.store(pn + row + j, h_n);
        const V h_new = at::vec::fmadd(z, L.load(h_in + j) - gn, gn);  // (1 - z) n + z h, as torch's kernel
        L.store(h_out + j, h_new), L.store(po + row + j, h_new);
      });
    });
  });
  return {output, h, gates, hn, h_prev};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& grad_output_in, const Tensor& grad_h_n, const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& lengths_in, bool reverse, const Tensor& gates, const Tensor& hn,
    const Tensor& h_prev, bool input_grad, bool state_grad) {
  const Tensor grad_output = contiguous_of(grad_output_in), x = x_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), H = gates.size(2) / 3;
  check_tensor("gru_backward", "x", x, {T, B, x.size(2)}, gates);
  check_tensor("gru_backward", "grad_output", grad_output, {T, B, H}, gates);
  check_state("gru_backward", "grad_h_n", grad_h_n, B, H, gates);
  check_tensor("gru_backward", "hn", hn, {T, B, H}, gates);
  check_tensor("gru_backward", "h_prev", h_prev, {T, B, H}, gates);
  check_tensor("gru_backward", "w_hh", w_hh, {3 * H, H}, gates);
  check_tensor("gru_backward", "w_ih", w_ih, {3 * H, x.size(2)}, gates);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  Tensor grad_xw = workspace(Slot::kGradInput, {T, B, 3 * H}, gates.options(), false);  // d(W_ih x + b_ih)
  Tensor grad_hw = workspace(Slot::kGradRecurrent, {T, B, 3 * H}, gates.options(), false);  // d(W_hh h + b_hh)
  Tensor dh = copy_of(grad_h_n);
  Tensor skip = zero_tensor({B, H}, gates.options());  // the part of dh_{t-1} that skips W_hh: z * dh_t

  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward", [&] {
    using T_ = scalar_t;
    // A part takes its units and W_hh's columns of them: all units for its sequences, or a slice for all.
    const Tiles units(B, H, B * 3 * H, PackedWeight<T_>::kWidth, Tiles::by_rows(B, w_hh.numel() * sizeof(T_)));
    const auto recurrent = column_parts<T_>(w_hh, units, T * B);
    Tensor products = scratch_for<T_>(units.parts(), B, {&recurrent}, gates.options());
    T_* pdh = dh.data_ptr<T_>();
    T_* pskip = skip.data_ptr<T_>();
    auto carry = [&](int64_t p, int64_t t) {  // dh[:, part p] = d(W_hh h)_t W_hh[:, part p] + z * dh_t
      carry_back(recurrent, units, p, steps, t, grad_hw.data_ptr<T_>() + t * B * 3 * H, 3 * H, products, pdh, H,
                 pskip);
    };
    Team::run(units.parts(), [&](const Team::Member& member) {
      for (int64_t i = T - 1; i >= 0; --i) {
        const int64_t t = steps.at(i);
        const T_* pgo = grad_output.data_ptr<T_>() + t * B * H;
        const T_* pg = gates.data_ptr<T_>() + t * B * 3 * H;
        const T_* pn = hn.data_ptr<T_>() + t * B * H;
        const T_* php = h_prev.data_ptr<T_>() + t * B * H;
        T_* pdx = grad_xw.data_ptr<T_>() + t * B * 3 * H;
        T_* pdw = grad_hw.data_ptr<T_>() + t * B * 3 * H;
        member.each(units, [&](int64_t p) {
          if (i + 1 < T) carry(p, steps.at(i + 1));
          const int64_t j0 = units.begin(p), n = units.end(p) - j0;
          for (int64_t b = units.row_begin(p); b < units.row_end(p); ++b) {
            T_* dx = pdx + b * 3 * H + j0;
            T_* dw = pdw + b * 3 * H + j0;
            if (!steps.alive(t, b)) {
              for (int64_t k = 0; k < 3; ++k) {
                std::fill(dx + k * H, dx + k * H + n, T_(0));
                std::fill(dw + k * H, dw + k * H + n, T_(0));
              }
              continue;
            }
            const int64_t row = b * H + j0;
            const T_* g = pg + b * 3 * H + j0;
            vectorized<T_>(n, [&](const auto& L, int64_t j) {
              using V = at::vec::Vectorized<T_>;
              const V r = L.load(g + j), z = L.load(g + H + j), gn = L.load(g + 2 * H + j);
              const V d = L.load(pdh + row + j) + L.load(pgo + row + j);
              const V dn = d * (V(1) - z) * (V(1) - gn * gn);
              const V dr = dn * L.load(pn + row + j) * r * (V(1) - r);
              const V dz = d * (L.load(php + row + j) - gn) * z * (V(1) - z);
              L.store(dx + j, dr), L.store(dx + H + j, dz), L.store(dx + 2 * H + j, dn);
              L.store(dw + j, dr), L.store(dw + H + j, dz), L.store(dw + 2 * H + j, dn * r);
              L.store(pskip + row + j, d * z);
            });
          }
        });
      }
      if (T > 0 && state_grad) member.each(units, [&](int64_t p) { carry(p, steps.at(0)); });
    });
  });

  const auto grads_x = step_weight_gradients(grad_xw, {x}, true);       // W_ih, b_ih
  const auto grads_h = step_weight_gradients(grad_hw, {h_prev}, true);  // W_hh, b_hh
  return {input_gradient(grad_xw, w_ih, input_grad), state_gradient(dh, state_grad), grads_x[0], grads_h[0],
          grads_x[1], grads_h[1]};
}

struct GruFunction : public torch::autograd::Function<GruFunction> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                               const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                               const std::optional<Tensor>& b_hh, const std::optional<Tensor>& lengths, bool reverse) {
    static const auto op = typed_op<decltype(gru_forward)>("rnnkit::gru_forward");
    auto [output, h_n, gates, hn, h_prev] = call_below_autograd(op, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse);
    ctx->set_materialize_grads(false);  // no zero tensors for the outputs the backward ignores
    ctx->mark_non_differentiable({gates, hn, h_prev});
    ctx->save_for_backward({x, h0, w_ih, w_hh, or_undefined(b_ih), or_undefined(b_hh), or_undefined(lengths), gates,
                            hn, h_prev});
    ctx->saved_data["flags"] = std::vector<int64_t>{reverse};
    return {output, h_n, gates, hn, h_prev};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &h0 = saved[1], &w_ih = saved[2], &w_hh = saved[3], &lengths = saved[6];
    const Tensor &gates = saved[7], &hn = saved[8], &h_prev = saved[9];
    const auto flags = ctx->saved_data["flags"].toIntVector();
    variable_list inputs(saved.begin(), saved.begin() + 6);
    if (at::GradMode::is_enabled()) {
      inputs = replay_backward("gru_forward", inputs, {lengths}, {grads[0], grads[1]}, flags);
    } else {
      static const auto op = typed_op<decltype(gru_backward)>("rnnkit::gru_backward");
      const bool input_grad = ctx->needs_input_grad(0), state_grad = ctx->needs_input_grad(1);
      auto [g_x, g_h0, g_w_ih, g_w_hh, g_b_ih, g_b_hh] =
          call_below_autograd(op, or_zeros(grads[0], h_prev), or_zeros(grads[1], h0), x, w_ih, w_hh,
                              optional(lengths), bool(flags[0]), gates, hn, h_prev, input_grad, state_grad);
      inputs = {input_grad ? g_x : Tensor(), state_grad ? g_h0 : Tensor(), g_w_ih, g_w_hh,
                inputs[4].defined() ? g_b_ih : Tensor(),
                inputs[5].defined() ? g_b_hh : Tensor()};
    }
    inputs.resize(8);  // lengths, reverse
    return inputs;
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_forward_autograd(
    const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const std::optional<Tensor>& b_ih,
    const std::optional<Tensor>& b_hh, const std::optional<Tensor>& lengths, bool reverse) {
  auto out = GruFunction::apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "gru_forward(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
      "bool reverse) -> (Tensor output, Tensor h_n, Tensor gates, Tensor hn, Tensor h_prev)");
  m.def(
      "gru_backward(Tensor grad_output, Tensor grad_h_n, Tensor x, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
      "bool reverse, Tensor gates, Tensor hn, Tensor h_prev, bool input_grad, bool state_grad) -> (Tensor grad_x, "
      "Tensor grad_h0, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) { m.impl("gru_forward", &gru_forward_autograd); }

}  // namespace rnnkit
