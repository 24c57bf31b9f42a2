// Fused LSTM layer (one direction) with the variants of ops/variant.py for the CPU: layer norm
// of W_hh (m h_{t-1}) and of c_t, peepholes, recurrent dropout's mask m and zoneout's keep masks
// in the time loop, forward and hand-written backward through time.
//
// The input projection of every step, a_t = LN(W_ih x_t; gamma_ih) + b_ih + b_hh, is one product
// before the loop, then each row's layer norm (csrc/variant.h's variant_input); b_ih + b_hh is
// summed first, as torch.nn's CPU LSTM sums them (ops/scan.py's summed_bias). A step then reads
//   u_t = LN(W_hh (m h_{t-1}); gamma_hh)
//   i, f, g, o = sigma, sigma, tanh, sigma(xw_t + u_t + (w_ci c_{t-1}, w_cf c_{t-1}, 0, w_co c~_t))
//   c~_t = f c_{t-1} + i g      h~_t = W_hr (o tanh(LN(c~_t; gamma_c, beta_c)))
//   c_t = k_c c_{t-1} + (1 - k_c) c~_t      h_t = k_h h_{t-1} + (1 - k_h) h~_t   (zoneout)
// Layer norm needs a whole row of a step, so a thread then takes whole sequences (Tiles by rows).
//
// Dimensions: T steps, B batch, H hidden, P = proj_size or H, G = 4H.
//   xw      (T, B, G)   a_t with both biases (variant_input)
//   hm      (T, B, P)   saved: m h_{t-1}, what W_hh multiplies (h_{t-1} without recurrent dropout)
//   gates   (T, B, G)   saved: activated i, f, g, o
//   c_prev  (T, B, H)   saved: c_{t-1}
//   c_new   (T, B, H)   saved: c~_t, before zoneout
//   u_hat   (T, B, G)   saved with layer norm on W_hh h: the normalised product; rstd_hh (T, B) its 1/std
//   c_hat   (T, B, H)   saved with layer norm on c: the normalised c~_t; rstd_c (T, B)
//   m       (T, B, H)   saved with a projection: o tanh(LN(c~_t)), what W_hr multiplies
//   a_hat   (T, B, G)   saved with layer norm on W_ih x_t: the normalised product; rstd_ih (T, B)
// Without ``save`` (no gradient wanted) the saved tensors hold one step (hm two), rewritten at
// every step, and a_hat none. A step at t >= lengths[b] leaves sequence b's states as they are and outputs zero.
#include <torch/library.h>

#include "../csrc/variant.h"

namespace rnnkit {
namespace {

using at::Tensor;
using OptionalTensor = std::optional<Tensor>;

// The variant's tensors as the kernels read them: raw pointers, nullptr where a variant is off.
template <typename T>
struct Variant {
  const T *ln_hh, *ln_c_weight, *ln_c_bias, *peephole, *mask, *keep_h, *keep_c;

  static Variant of(const std::vector<Tensor>& t) {
    return {data_or_null<T>(t[0]), data_or_null<T>(t[1]), data_or_null<T>(t[2]), data_or_null<T>(t[3]),
            data_or_null<T>(t[4]), data_or_null<T>(t[5]), data_or_null<T>(t[6])};
  }
};

// The variant's optional tensors checked (shapes and dtypes against ``like``) and made
// contiguous, in Variant's order; undefined where absent.
std::vector<Tensor> variant_tensors(const char* op, const Tensor& like, int64_t T, int64_t B, int64_t H, int64_t P,
                                    const OptionalTensor& ln_hh, const OptionalTensor& ln_c_weight,
                                    const OptionalTensor& ln_c_bias, const OptionalTensor& peephole,
                                    const OptionalTensor& mask, const OptionalTensor& keep_h,
                                    const OptionalTensor& keep_c) {
  TORCH_CHECK(ln_c_weight.has_value() == ln_c_bias.has_value(), op,
              ": layer norm on c takes both ln_c_weight and ln_c_bias");
  return {checked_contiguous(op, "ln_hh_weight", ln_hh, {4 * H}, like),
          checked_contiguous(op, "ln_c_weight", ln_c_weight, {H}, like),
          checked_contiguous(op, "ln_c_bias", ln_c_bias, {H}, like),
          checked_contiguous(op, "weight_ch", peephole, {3 * H}, like),
          checked_contiguous(op, "dropout_mask", mask, {B, P}, like),
          checked_contiguous(op, "keep_h", keep_h, {T, B, P}, like),
          checked_contiguous(op, "keep_c", keep_c, {T, B, H}, like)};
}

// output, h_n, c_n, every step's c_t (T, B, H), then what the backward reads (above).
using Forward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                           Tensor, Tensor, Tensor, Tensor>;

Forward lstm_variant_forward(const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                             const OptionalTensor& b_hh, const OptionalTensor& ln_ih_weight, const Tensor& h0,
                             const Tensor& c0, const Tensor& w_hh, const OptionalTensor& w_hr,
                             const OptionalTensor& ln_hh_weight, const OptionalTensor& ln_c_weight,
                             const OptionalTensor& ln_c_bias, const OptionalTensor& weight_ch,
                             const OptionalTensor& dropout_mask, const OptionalTensor& keep_h,
                             const OptionalTensor& keep_c, const OptionalTensor& lengths_in, bool reverse, bool save) {
  const char* op = "lstm_variant_forward";
  TORCH_CHECK(w_ih.dim() == 2, op, ": expected w_ih of shape (4*H, I), got ", w_ih.sizes());
  const OptionalTensor bias = b_ih.has_value() || b_hh.has_value()
                                  ? OptionalTensor(summed_input_bias(op, b_ih, b_hh, w_ih.size(0), x))
                                  : std::nullopt;
  const VariantInput input = variant_input(op, x, w_ih, bias, ln_ih_weight, save);
  const Tensor& xw = input.xw;
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % 4 == 0, op, ": expected w_hh of shape (4*H, P), got ", w_hh.sizes());
  const int64_t T = xw.size(0), B = xw.size(1), G = w_hh.size(0), H = G / 4, P = w_hh.size(1);
  const bool proj = w_hr.has_value();
  TORCH_CHECK(proj || P == H, op, ": without w_hr, w_hh must have H = ", H, " columns, got ", P);
  check_tensor(op, "xw", xw, {T, B, G}, xw);
  check_state(op, "h0", h0, B, P, xw);
  check_state(op, "c0", c0, B, H, xw);
  check_tensor(op, "w_hh", w_hh, {G, P}, xw);
  check_tensor(op, "w_hr", w_hr, {P, H}, xw);
  const auto v = variant_tensors(op, xw, T, B, H, P, ln_hh_weight, ln_c_weight, ln_c_bias, weight_ch, dropout_mask,
                                 keep_h, keep_c);
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);

  const auto options = xw.options();
  const int64_t kept = save ? T : std::min<int64_t>(T, 1);
  const auto kept_lengths = save ? lengths : std::nullopt;  // zeros where the backward reads dead rows
  const bool ln_hh = v[0].defined(), ln_c = v[1].defined();
  Tensor output = step_results({T, B, P}, options, lengths);
  Tensor cs = step_results({T, B, H}, options, lengths);  // every step's c_t
  Tensor hm = empty_tensor({save ? T : std::min<int64_t>(T, 2), B, P}, options);
  Tensor gates = empty_tensor({kept, B, G}, options);
  Tensor c_prev = step_results({kept, B, H}, options, kept_lengths);
  Tensor c_new = step_results({kept, B, H}, options, kept_lengths);
  Tensor u_hat = ln_hh ? step_results({kept, B, G}, options, kept_lengths) : empty_tensor({0}, options);
  Tensor rstd_hh = ln_hh ? step_results({kept, B}, options, kept_lengths) : empty_tensor({0}, options);
  Tensor c_hat = ln_c ? step_results({kept, B, H}, options, kept_lengths) : empty_tensor({0}, options);
  Tensor rstd_c = ln_c ? step_results({kept, B}, options, kept_lengths) : empty_tensor({0}, options);
  Tensor m = proj ? step_results({kept, B, H}, options, kept_lengths) : empty_tensor({0}, options);
  Tensor h = copy_of(h0), c = copy_of(c0);

  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_variant_forward", [&] {
    using T_ = scalar_t;
    using V = at::vec::Vectorized<T_>;
    const auto var = Variant<T_>::of(v);
    const bool by_rows = variant_by_rows(ln_hh || ln_c, B, w_hh.numel() * sizeof(T_));
    const Tiles units(B, H, B * G, PackedWeight<T_>::kWidth, by_rows);
    const Tiles features(B, P, B * H, PackedWeight<T_>::kWidth, by_rows);
    const auto recurrent = unit_product<T_>(w_hh, 4, units, B, T * B);
    const auto projection = proj ? unit_rows<T_>({*w_hr}, 1, features, T * B) : std::vector<PackedWeight<T_>>();
    const int64_t parts = std::max(units.parts(), proj ? features.parts() : 1);
    Tensor products = scratch_for<T_>(parts, B, {&recurrent.slices, &projection}, options, recurrent.across.width());
    const int64_t ld = products.size(2);
    T_* pc = c.data_ptr<T_>();
    const T_* pxw = xw.data_ptr<T_>();
    T_ *pgates = gates.data_ptr<T_>(), *pc_prev = c_prev.data_ptr<T_>(), *pc_new = c_new.data_ptr<T_>();
    T_ *pcs = cs.data_ptr<T_>(), *pm = data_or_null<T_>(m);
    T_ *pu_hat = data_or_null<T_>(u_hat), *prstd_hh = data_or_null<T_>(rstd_hh);
    T_ *pc_hat = data_or_null<T_>(c_hat), *prstd_c = data_or_null<T_>(rstd_c);
    const VariantState<T_> state(steps, save, h, hm, output, var.mask, var.keep_h);
    Team::run(parts, [&](const Team::Member& member) {
      for (int64_t i = 0; i < T; ++i) {
        const int64_t t = steps.at(i), s = save ? t : 0;  // s: the step's room in the saved tensors
        member.each(units, [&](int64_t p) {
          const int64_t j0 = units.begin(p), n = units.end(p) - j0, b0 = units.row_begin(p), b1 = units.row_end(p);
          T_* hw = recurrent(units, p, state.in(i), P, products);  // W_hh m h, gate by gate
          auto each_alive = [&](const auto& body) { rnnkit::each_alive(steps, t, b0, b1, body); };
          if (ln_hh) {  // by rows: u is the whole row, n = H
            alive_in_groups(
                steps, t, b0, b1,
                [&](int64_t b) {
                  return NormRow<T_>{hw + (b - b0) * ld, pu_hat + (s * B + b) * G, prstd_hh + s * B + b};
                },
                [&](const auto* rows, int64_t k) { normalise(G, rows, k); });
          }
          if (!proj) state.hold_ended(i, b0, b1, j0, n);
          each_alive([&](int64_t b) {  // the gates and c~_t; u_k's values lie n apart (H apart, normalised)
            const T_* u = ln_hh ? pu_hat + (s * B + b) * G : hw + (b - b0) * ld;
            const int64_t row = (s * B + b) * H + j0;  // b's units in the saved (kept, B, H) tensors
            T_* g = pgates + (s * B + b) * G + j0;
            const T_* a = pxw + (t * B + b) * G + j0;
            const T_* cb = pc + b * H + j0;
            vectorized<T_>(n, [&](const auto& L, int64_t j) {
              auto pre = [&](int64_t k) {
                const V uk = L.load(u + k * n + j);
                return L.load(a + k * H + j) + (ln_hh ? uk * L.load(var.ln_hh + k * H + j) : uk);
              };
              const V c_old = L.load(cb + j);
              V pi = pre(0), pf = pre(1), po = pre(3);
              if (var.peephole) {
                pi = at::vec::fmadd(L.load(var.peephole + j0 + j), c_old, pi);
                pf = at::vec::fmadd(L.load(var.peephole + H + j0 + j), c_old, pf);
              }
              const V gi = sigmoid_(pi), gf = sigmoid_(pf), gg = tanh_(pre(2));
              const V c_t = at::vec::fmadd(gf, c_old, gi * gg);
              // With peepholes o waits for c_t: its sigmoid comes in the next pass, beside tanh(c~_t),
              // not at the end of a chain of activations that short rows (H = 10) wait on.
              if (var.peephole) po = at::vec::fmadd(L.load(var.peephole + 2 * H + j0 + j), c_t, po);
              L.store(g + j, gi), L.store(g + H + j, gf), L.store(g + 2 * H + j, gg);
              L.store(g + 3 * H + j, var.peephole ? po : sigmoid_(po));
              L.store(pc_prev + row + j, c_old), L.store(pc_new + row + j, c_t);
            });
          });
          if (ln_c) {
            alive_in_groups(
                steps, t, b0, b1,
                [&](int64_t b) {
                  const int64_t row = (s * B + b) * H + j0;
                  return NormRow<T_>{pc_new + row, pc_hat + row, prstd_c + s * B + b};
                },
                [&](const auto* rows, int64_t k) { normalise(H, rows, k); });
          }
          each_alive([&](int64_t b) {  // h~_t = o tanh(c~_t or its layer norm), and zoneout
            const int64_t row = (s * B + b) * H + j0;
            T_* g = pgates + (s * B + b) * G + j0;
            const T_ *cp = pc_prev + row, *cn = pc_new + row, *cl = ln_c ? pc_hat + row : cn;
            T_* cb = pc + b * H + j0;
            const T_* keep = var.keep_c ? var.keep_c + (t * B + b) * H + j0 : nullptr;
            T_* c_out = pcs + (t * B + b) * H + j0;
            vectorized<T_>(n, [&](const auto& L, int64_t j) {
              V x = L.load(cl + j);
              if (ln_c) x = at::vec::fmadd(x, L.load(var.ln_c_weight + j), L.load(var.ln_c_bias + j));
              V o = L.load(g + 3 * H + j);
              if (var.peephole) o = sigmoid_(o), L.store(g + 3 * H + j, o);
              const V y = o * tanh_(x);
              if (proj) {
                L.store(pm + row + j, y);
              } else {
                state.put(i, b, j0 + j, L, y);
              }
              const V c_t = keep ? zoned(L.load(keep + j), L.load(cp + j), L.load(cn + j)) : L.load(cn + j);
              L.store(cb + j, c_t), L.store(c_out + j, c_t);
            });
          });
        });
        if (!proj) continue;
        member.each(features, [&](int64_t q) {
          const int64_t k0 = features.begin(q), n = features.end(q) - k0, b0 = features.row_begin(q);
          const T_* y = tile_product(projection, features, q, pm + s * B * H, H, products);  // W_hr m
          for (int64_t b = b0; b < features.row_end(q); ++b) {
            if (steps.alive(t, b)) {
              state.write(i, b, k0, n, y + (b - b0) * ld);
            } else {
              state.hold(i, b, k0, n);
            }
          }
        });
      }
    });
  });
  return {output, h, c, cs, hm, gates, c_prev, c_new, u_hat, rstd_hh, c_hat, rstd_c, m, input.a_hat, input.rstd};
}

std::vector<Tensor> lstm_variant_backward(
    const Tensor& grad_output_in, const Tensor& grad_h_n, const Tensor& grad_c_n, const OptionalTensor& grad_cs_in,
    const Tensor& x, const Tensor& w_ih, bool bias_grad, bool input_grad, bool state_grad,
    const OptionalTensor& ln_ih_weight, const Tensor& w_hh, const OptionalTensor& w_hr,
    const OptionalTensor& ln_hh_weight, const OptionalTensor& ln_c_weight, const OptionalTensor& ln_c_bias,
    const OptionalTensor& weight_ch, const OptionalTensor& dropout_mask, const OptionalTensor& keep_h,
    const OptionalTensor& keep_c, const OptionalTensor& lengths_in, bool reverse, const Tensor& hm, const Tensor& gates,
    const Tensor& c_prev, const Tensor& c_new, const Tensor& u_hat, const Tensor& rstd_hh, const Tensor& c_hat,
    const Tensor& rstd_c, const Tensor& m, const Tensor& a_hat, const Tensor& rstd_ih) {
  const char* op = "lstm_variant_backward";
  const Tensor grad_output = contiguous_of(grad_output_in);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), H = G / 4, P = w_hh.size(1);
  const bool proj = w_hr.has_value();
  check_tensor(op, "grad_output", grad_output, {T, B, P}, gates);
  check_state(op, "grad_h_n", grad_h_n, B, P, gates);
  check_state(op, "grad_c_n", grad_c_n, B, H, gates);
  check_tensor(op, "grad_cs", grad_cs_in, {T, B, H}, gates);
  check_tensor(op, "w_hh", w_hh, {G, P}, gates);
  check_tensor(op, "w_hr", w_hr, {P, H}, gates);
  check_tensor(op, "hm", hm, {T, B, P}, gates);
  check_tensor(op, "c_prev", c_prev, {T, B, H}, gates);
  check_tensor(op, "c_new", c_new, {T, B, H}, gates);
  const auto v = variant_tensors(op, gates, T, B, H, P, ln_hh_weight, ln_c_weight, ln_c_bias, weight_ch, dropout_mask,
                                 keep_h, keep_c);
  const bool ln_hh = v[0].defined(), ln_c = v[1].defined();
  if (ln_hh) check_tensor(op, "u_hat", u_hat, {T, B, G}, gates), check_tensor(op, "rstd_hh", rstd_hh, {T, B}, gates);
  if (ln_c) check_tensor(op, "c_hat", c_hat, {T, B, H}, gates), check_tensor(op, "rstd_c", rstd_c, {T, B}, gates);
  if (proj) check_tensor(op, "m", m, {T, B, H}, gates);
  const Tensor grad_cs = grad_cs_in.has_value() ? contiguous_of(*grad_cs_in) : Tensor();
  const auto lengths = checked_lengths(lengths_in, B, T);
  const Steps steps = make_steps(T, reverse, lengths);
  const auto options = gates.options();

  Tensor grad_xw = step_results({T, B, G}, options, lengths, Slot::kGradInput);  // d(pre-activations)
  Tensor grad_u = ln_hh ? step_results({T, B, G}, options, lengths, Slot::kGradRecurrent) : grad_xw;  // d(W_hh m h)
  Tensor grad_h_new = proj ? step_results({T, B, P}, options, lengths, Slot::kGradProjected) : Tensor();  // d h~_t
  Tensor dh = copy_of(grad_h_n), dc = copy_of(grad_c_n);
  Tensor dh_step = zero_tensor({B, P}, options);  // dh_t: carried dh plus d output_t
  // The new parameters' gradients, summed over the steps: each part adds its sequences' terms into
  // its row of a step (layer norm's gains and shift, then the peepholes), then the rows are summed
  // by halves after the loop (as exact as torch's sums).
  const int64_t at_ln_c = ln_hh ? G : 0, at_peephole = at_ln_c + (ln_c ? 2 * H : 0);
  const int64_t extra = at_peephole + (v[3].defined() ? 3 * H : 0);
  Tensor partials;

  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_variant_backward", [&] {
    using T_ = scalar_t;
    using V = at::vec::Vectorized<T_>;
    const auto var = Variant<T_>::of(v);
    const bool by_rows = variant_by_rows(ln_hh || ln_c, B, w_hh.numel() * sizeof(T_));
    const Tiles units(B, H, B * G, PackedWeight<T_>::kWidth, by_rows);
    const Tiles features = proj ? Tiles(B, P, B * G, PackedWeight<T_>::kWidth, by_rows) : units;
    const auto recurrent = column_product<T_>(w_hh, features, B, T * B);
    const auto projection = proj ? column_parts<T_>(*w_hr, units, T * B) : std::vector<PackedWeight<T_>>();
    const int64_t parts = std::max(units.parts(), features.parts());
    const bool whole = !proj && features.whole_rows();  // d h_{t-1}'s rows end to end
    Tensor products = variant_scratch<T_>(whole, P, parts, B, {&recurrent.slices, &projection}, options,
                                          recurrent.across.width());
    const int64_t ld = products.size(2);
    partials = zero_tensor({T, units.parts(), extra}, options);
    T_* pdh = dh.data_ptr<T_>();
    T_* pds = dh_step.data_ptr<T_>();
    T_* pdc = dc.data_ptr<T_>();
    const T_ *pgo = grad_output.data_ptr<T_>(), *pgates = gates.data_ptr<T_>(), *pc_prev = c_prev.data_ptr<T_>();
    const T_ *pc_new = c_new.data_ptr<T_>(), *pc_hat = data_or_null<T_>(c_hat), *prstd_c = data_or_null<T_>(rstd_c);
    const T_ *pu_hat = data_or_null<T_>(u_hat), *prstd_hh = data_or_null<T_>(rstd_hh);
    const T_* pgrad_cs = data_or_null<T_>(grad_cs);
    T_ *pgrad_xw = grad_xw.data_ptr<T_>(), *pgrad_u = grad_u.data_ptr<T_>(), *ppartials = partials.data_ptr<T_>();
    T_* pgrad_h_new = data_or_null<T_>(grad_h_new);

    // dh_t = dh + d output_t for part q's features of the sequences alive at t; with a
    // projection, also d h~_t = (1 - k_h) dh_t, which W_hr's backward multiplies.
    auto step_gradient = [&](int64_t q, int64_t t) {
      const int64_t k0 = features.begin(q), n = features.end(q) - k0, b0 = features.row_begin(q);
      each_alive_run(steps, t, b0, features.row_end(q), n, features.whole_rows(), [&](int64_t b, int64_t count) {
        const int64_t row = b * P + k0, at_t = t * B * P + row;
        vectorized<T_>(count, [&](const auto& L, int64_t j) {
          const V d = L.load(pdh + row + j) + L.load(pgo + at_t + j);
          L.store(pds + row + j, d);
          if (proj) L.store(pgrad_h_new + at_t + j, var.keep_h ? (V(1) - L.load(var.keep_h + at_t + j)) * d : d);
        });
      });
    };
    // The gate gradients of part p's units at step t, and dc carried to step t - 1.
    auto gate_gradients = [&](int64_t p, int64_t t) {
      const int64_t j0 = units.begin(p), n = units.end(p) - j0, b0 = units.row_begin(p), b1 = units.row_end(p);
      const T_* dm = proj ? tile_product(projection, units, p, pgrad_h_new + t * B * P, P, products)
                          : nullptr;  // d(o tanh(.)) = d h~_t W_hr, rows from the tile's first
      T_* sums = ppartials + (t * units.parts() + p) * extra;
      auto each_alive = [&](const auto& body) { rnnkit::each_alive(steps, t, b0, b1, body); };
      // d c~_t through tanh (and LN), in the forget gate's room until the gates' phase, and d pre_o.
      each_alive([&](int64_t b) {
        const int64_t row = (t * B + b) * H + j0, row_p = b * P + j0;
        const T_* g = pgates + (t * B + b) * G + j0;
        const T_* cl = ln_c ? pc_hat + row : pc_new + row;
        const T_* dmb = proj ? dm + (b - b0) * ld : nullptr;
        const T_* keep_h_t = var.keep_h ? var.keep_h + t * B * P + row_p : nullptr;
        T_* dg = pgrad_xw + (t * B + b) * G + j0;
        vectorized<T_>(n, [&](const auto& L, int64_t j) {
          V d_m = proj ? L.load(dmb + j) : L.load(pds + row_p + j);
          if (!proj && keep_h_t) d_m = (V(1) - L.load(keep_h_t + j)) * d_m;
          const V x_hat = L.load(cl + j);
          const V x = ln_c ? at::vec::fmadd(x_hat, L.load(var.ln_c_weight + j), L.load(var.ln_c_bias + j)) : x_hat;
          const V tc = tanh_(x), go = L.load(g + 3 * H + j);
          L.store(dg + H + j, d_m * go * (V(1) - tc * tc));  // d LN(c~_t)
          L.store(dg + 3 * H + j, d_m * tc * go * (V(1) - go));
        });
      });
      const T_* dg_t = pgrad_xw + t * B * G + j0;  // gate k of sequence b at dg_t + b * G + k * H
      if (ln_c) {
        const T_* c_hat_t = pc_hat + t * B * H + j0;
        add_rows(sums + at_ln_c + j0, n, steps, t, b0, b1, [&](const V& sum, const auto& L, int64_t j, int64_t b) {
          return at::vec::fmadd(L.load(dg_t + b * G + H + j), L.load(c_hat_t + b * H + j), sum);
        });
        add_rows(sums + at_ln_c + H + j0, n, steps, t, b0, b1, [&](const V& sum, const auto& L, int64_t j, int64_t b) {
          return sum + L.load(dg_t + b * G + H + j);
        });
        alive_in_groups(
            steps, t, b0, b1,
            [&](int64_t b) {
              const int64_t row = t * B + b;
              T_* d = pgrad_xw + row * G + j0 + H;
              return NormGrad<T_>{pc_hat + row * H + j0, prstd_c[row], d, d};
            },
            [&](const auto* rows, int64_t k) { normalise_backward(n, rows, k, var.ln_c_weight); });
      }
      each_alive([&](int64_t b) {  // the gates' gradients and dc carried to step t - 1
        const int64_t row = (t * B + b) * H + j0;
        const T_* g = pgates + (t * B + b) * G + j0;
        const T_* cp = pc_prev + row;
        const T_* keep_c_t = var.keep_c ? var.keep_c + row : nullptr;
        const T_* dcs = pgrad_cs ? pgrad_cs + row : nullptr;
        T_* dg = pgrad_xw + (t * B + b) * G + j0;
        T_* dcb = pdc + b * H + j0;
        vectorized<T_>(n, [&](const auto& L, int64_t j) {
          const V gi = L.load(g + j), gf = L.load(g + H + j), gg = L.load(g + 2 * H + j), c_old = L.load(cp + j);
          V d_c = L.load(dcb + j);
          if (dcs) d_c = d_c + L.load(dcs + j);
          V dct = keep_c_t ? (V(1) - L.load(keep_c_t + j)) * d_c : d_c;  // d c~_t from c_t
          dct = dct + L.load(dg + H + j);
          const V d_o = L.load(dg + 3 * H + j);
          if (var.peephole) dct = at::vec::fmadd(d_o, L.load(var.peephole + 2 * H + j0 + j), dct);
          const V d_i = dct * gg * gi * (V(1) - gi), d_f = dct * c_old * gf * (V(1) - gf);
          V d_old = dct * gf;
          if (keep_c_t) d_old = at::vec::fmadd(L.load(keep_c_t + j), d_c, d_old);
          if (var.peephole) {
            d_old = at::vec::fmadd(d_i, L.load(var.peephole + j0 + j), d_old);
            d_old = at::vec::fmadd(d_f, L.load(var.peephole + H + j0 + j), d_old);
          }
          L.store(dg + j, d_i), L.store(dg + H + j, d_f), L.store(dg + 2 * H + j, dct * gi * (V(1) - gg * gg));
          L.store(dcb + j, d_old);
        });
      });
      if (var.peephole) {  // w_ci, w_cf and w_co: d_i c_{t-1}, d_f c_{t-1} and d_o c~_t
        const T_ *c_prev_t = pc_prev + t * B * H + j0, *c_new_t = pc_new + t * B * H + j0;
        for (int64_t k = 0; k < 3; ++k) {
          const T_* c = k < 2 ? c_prev_t : c_new_t;
          const int64_t gate = k < 2 ? k : 3;
          add_rows(sums + at_peephole + k * H + j0, n, steps, t, b0, b1,
                   [&](const V& sum, const auto& L, int64_t j, int64_t b) {
                     return at::vec::fmadd(L.load(dg_t + b * G + gate * H + j), L.load(c + b * H + j), sum);
                   });
        }
      }
      if (ln_hh) {  // by rows: the whole row, n = H
        recurrent_layer_norm_backward(G, B, steps, t, b0, b1, pu_hat, prstd_hh, pgrad_xw, pgrad_u, var.ln_hh, sums);
      }
    };
    auto carry = [&](int64_t q, int64_t t) {  // dh = m (d u_t W_hh) + k_h dh_t, for h_{t-1}
      carry_variant(recurrent, features, q, steps, t, pgrad_u + t * B * G, G, products, pdh, pds, P,
                    var.mask, var.keep_h ? var.keep_h + t * B * P : nullptr);
    };

    lstm_backward_steps(parts, steps, proj, state_grad, features, units, carry, step_gradient, gate_gradients);
  });

  // Weight gradients: one product over all steps, after the recurrence. Without layer norm on either
  // product W_hh's has d a_t's gradient, and one product gives W_ih's and W_hh's.
  const bool joined = !ln_hh && !ln_ih_weight.has_value();
  auto grads = variant_input_gradients(op, grad_xw, x, w_ih, bias_grad, input_grad, ln_ih_weight, a_hat, rstd_ih,
                                       joined ? hm : Tensor());
  Tensor grad_w_hh = joined ? grads[4] : step_weight_gradients(grad_u, {hm}, false)[0];
  grads.resize(4);
  Tensor grad_w_hr = proj ? step_weight_gradients(grad_h_new, {m}, false)[0] : empty_tensor({0}, options);
  const Tensor sums = summed_rows(partials);
  auto part = [&](bool on, int64_t from, int64_t size) {
    return on ? sums.narrow(0, from, size) : empty_tensor({0}, options);
  };
  grads.insert(grads.end(), {state_gradient(dh, state_grad), dc, grad_w_hh, grad_w_hr, part(ln_hh, 0, G),
                             part(ln_c, at_ln_c, H), part(ln_c, at_ln_c + H, H),
                             part(v[3].defined(), at_peephole, 3 * H)});
  return grads;
}

// The autograd formula of lstm_variant_forward (csrc/autograd.h's arrangement). Inputs x, w_ih,
// b_ih, b_hh, ln_ih, h0, c0, w_hh, w_hr, ln_hh, ln_c_weight, ln_c_bias, weight_ch get gradients; the
// masks and lengths do not. The backward kernel gives one gradient of the summed bias, b_ih's and b_hh's.
struct LstmVariantFunction : public torch::autograd::Function<LstmVariantFunction> {
  static constexpr size_t kInputs = 13;

  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                               const OptionalTensor& b_hh, const OptionalTensor& ln_ih, const Tensor& h0,
                               const Tensor& c0, const Tensor& w_hh, const OptionalTensor& w_hr,
                               const OptionalTensor& ln_hh, const OptionalTensor& ln_c_weight,
                               const OptionalTensor& ln_c_bias, const OptionalTensor& weight_ch,
                               const OptionalTensor& mask, const OptionalTensor& keep_h, const OptionalTensor& keep_c,
                               const OptionalTensor& lengths, bool reverse, bool save) {
    static const auto op = typed_op<decltype(lstm_variant_forward)>("rnnkit::lstm_variant_forward");
    const auto results = call_below_autograd(op, x, w_ih, b_ih, b_hh, ln_ih, h0, c0, w_hh, w_hr, ln_hh, ln_c_weight,
                                             ln_c_bias, weight_ch, mask, keep_h, keep_c, lengths, reverse, save);
    variable_list out = std::apply([](const auto&... t) { return variable_list{t...}; }, results);
    ctx->set_materialize_grads(false);
    ctx->mark_non_differentiable(variable_list(out.begin() + 4, out.end()));
    variable_list saved{x, w_ih, or_undefined(b_ih), or_undefined(b_hh), or_undefined(ln_ih), h0, c0, w_hh};
    for (const auto* t : {&w_hr, &ln_hh, &ln_c_weight, &ln_c_bias, &weight_ch, &mask, &keep_h, &keep_c, &lengths}) {
      saved.push_back(or_undefined(*t));
    }
    saved.insert(saved.end(), out.begin() + 4, out.end());  // hm, gates, ..., a_hat, rstd_ih
    ctx->save_for_backward(saved);
    ctx->saved_data["flags"] = std::vector<int64_t>{reverse};
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const bool reverse = ctx->saved_data["flags"].toIntVector()[0];
    variable_list inputs(s.begin(), s.begin() + kInputs);
    if (at::GradMode::is_enabled()) {
      const variable_list others(s.begin() + kInputs, s.begin() + kInputs + 4);  // mask, keep_h, keep_c, lengths
      inputs = replay_backward("lstm_variant_forward", inputs, others, {grads[0], grads[1], grads[2], grads[3]},
                               {reverse});
    } else {
      static const auto op = typed_op<decltype(lstm_variant_backward)>("rnnkit::lstm_variant_backward");
      const Tensor& hm = s[17];  // shaped as the output
      const bool bias_grad = wants_gradient(ctx, inputs, 2) || wants_gradient(ctx, inputs, 3);
      auto found = call_below_autograd(
          op, or_zeros(grads[0], hm), or_zeros(grads[1], s[5]), or_zeros(grads[2], s[6]), optional(grads[3]), s[0],
          s[1], bias_grad, wants_gradient(ctx, inputs, 0), wants_gradient(ctx, inputs, 5), optional(s[4]), s[7],
          optional(s[8]), optional(s[9]), optional(s[10]), optional(s[11]), optional(s[12]), optional(s[13]),
          optional(s[14]), optional(s[15]), optional(s[16]), reverse, hm, s[18], s[19], s[20], s[21], s[22], s[23],
          s[24], s[25], s[26], s[27]);
      const auto [grad_b_ih, grad_b_hh] = bias_gradients(found[2], s[2], s[3]);
      found[2] = grad_b_ih;
      found.insert(found.begin() + 3, grad_b_hh);
      inputs = wanted_gradients(ctx, inputs, found);
    }
    inputs.resize(kInputs + 6);  // the masks, lengths, reverse, save
    return inputs;
  }
};

Forward lstm_variant_forward_autograd(const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih,
                                      const OptionalTensor& b_hh, const OptionalTensor& ln_ih, const Tensor& h0,
                                      const Tensor& c0,
                                      const Tensor& w_hh, const OptionalTensor& w_hr, const OptionalTensor& ln_hh,
                                      const OptionalTensor& ln_c_weight, const OptionalTensor& ln_c_bias,
                                      const OptionalTensor& weight_ch, const OptionalTensor& mask,
                                      const OptionalTensor& keep_h, const OptionalTensor& keep_c,
                                      const OptionalTensor& lengths, bool reverse, bool save) {
  const auto o = LstmVariantFunction::apply(x, w_ih, b_ih, b_hh, ln_ih, h0, c0, w_hh, w_hr, ln_hh, ln_c_weight,
                                            ln_c_bias, weight_ch, mask, keep_h, keep_c, lengths, reverse, save);
  return {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12], o[13], o[14]};
}

// The kernel of lstm_variant_drawn (CompositeImplicitAutograd): the masks drawn here, then the op
// (csrc/variant.h's SingleStateVariantFunction::drawn says why); output, h_n, c_n and cs come back.
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_variant_drawn(
    const Tensor& x, const Tensor& w_ih, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
    const OptionalTensor& ln_ih, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, const OptionalTensor& w_hr,
    const OptionalTensor& ln_hh, const OptionalTensor& ln_c_weight, const OptionalTensor& ln_c_bias,
    const OptionalTensor& weight_ch,
    double dropout, double zoneout_h, double zoneout_c, bool training, const OptionalTensor& lengths, bool reverse,
    bool save) {
  static const auto op = typed_op<decltype(lstm_variant_forward)>("rnnkit::lstm_variant_forward");
  const Noise noise = draw_noise(dropout, zoneout_h, zoneout_c, training, x.size(0), x.size(1),
                                 {h0.size(-1), c0.size(-1)}, x.options());
  const auto r = op.call(x, w_ih, b_ih, b_hh, ln_ih, h0, c0, w_hh, w_hr, ln_hh, ln_c_weight, ln_c_bias, weight_ch,
                         noise.mask, noise.zone[0], noise.zone[1], lengths, reverse, save);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r), std::get<3>(r)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def(
      "lstm_variant_forward(Tensor x, Tensor w_ih, Tensor? b_ih, Tensor? b_hh, Tensor? ln_ih_weight, Tensor h0, "
      "Tensor c0, Tensor w_hh, Tensor? w_hr, Tensor? ln_hh_weight, Tensor? ln_c_weight, Tensor? ln_c_bias, "
      "Tensor? weight_ch, Tensor? dropout_mask, Tensor? keep_h, Tensor? keep_c, Tensor? lengths, bool reverse, "
      "bool save=True) -> "
      "(Tensor output, Tensor h_n, Tensor c_n, Tensor cs, Tensor hm, Tensor gates, Tensor c_prev, Tensor c_new, "
      "Tensor u_hat, Tensor rstd_hh, Tensor c_hat, Tensor rstd_c, Tensor m, Tensor a_hat, Tensor rstd_ih)");
  m.def(
      "lstm_variant_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_c_n, Tensor? grad_cs, Tensor x, "
      "Tensor w_ih, bool bias_grad, bool input_grad, bool state_grad, Tensor? ln_ih_weight, Tensor w_hh, "
      "Tensor? w_hr, Tensor? ln_hh_weight, Tensor? ln_c_weight, Tensor? ln_c_bias, Tensor? weight_ch, "
      "Tensor? dropout_mask, Tensor? keep_h, Tensor? keep_c, Tensor? lengths, bool reverse, Tensor hm, Tensor gates, "
      "Tensor c_prev, Tensor c_new, Tensor u_hat, Tensor rstd_hh, Tensor c_hat, Tensor rstd_c, Tensor m, "
      "Tensor a_hat, Tensor rstd_ih) -> Tensor[]");
  m.def(
      "lstm_variant_drawn(Tensor x, Tensor w_ih, Tensor? b_ih, Tensor? b_hh, Tensor? ln_ih_weight, Tensor h0, "
      "Tensor c0, Tensor w_hh, Tensor? w_hr, Tensor? ln_hh_weight, Tensor? ln_c_weight, Tensor? ln_c_bias, "
      "Tensor? weight_ch, float dropout, float zoneout_h, float zoneout_c, bool training, Tensor? lengths, "
      "bool reverse, bool save=True) -> (Tensor output, Tensor h_n, Tensor c_n, Tensor cs)");
}

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  m.impl("lstm_variant_forward", &lstm_variant_forward);
  m.impl("lstm_variant_backward", &lstm_variant_backward);
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) { m.impl("lstm_variant_forward", &lstm_variant_forward_autograd); }

TORCH_LIBRARY_IMPL(rnnkit, CompositeImplicitAutograd, m) { m.impl("lstm_variant_drawn", &lstm_variant_drawn); }

}  // namespace rnnkit
