"""Precision benchmark: every backend's float32 error against a float64 reference, beside torch.nn's own.

For each cell (LSTM, LSTM with proj_size, GRU, RNN tanh, RNN relu) and activation scale s (weights
and inputs multiplied by s: small activations are common early in training and deep in a stack), a
seeded torch.nn module computes in float64 the reference: output, final states, and the gradient of
the input and of every parameter against fixed random upstream gradients. The float32 contenders,
torch.nn itself and every rnnkit backend usable here, get the same float32 weights and inputs (the
reference starts from those very values, so rounding the inputs is no one's error). Each tensor's
elementwise relative error |a - ref| / |ref| (over the elements where ref is not 0), pooled over
``--seeds`` nets and inputs, is summed up by its median and 99th percentile.

DESIGN.md's Numerics section is the contract: every backend within 2x of torch.nn's error, median
and 99th percentile, on every tensor and at every scale. The variants (layer norm, peepholes,
zoneout's expectation; in evaluation) have no torch.nn twin: their rows give the compiled kernels'
error over the naive ops' (rnnkit's naive ops in float64 are then the reference). The table gives, per cell, scale and
backend, the worst tensor's ratio of errors (backend / torch.nn; at most 2 passes) and torch.nn's
own median error of the output. The CPU kernels' instruction-set path is the widest this CPU has,
or the one ``--isa`` names (torch's kernels then limited to it too, as on a CPU without the wider
ones) or ``$RNNKIT_CPU_ISA`` (rnnkit's alone); the JSON under ``benchmarks/results/`` records
it with every tensor's errors.

Usage::

    python benchmarks/precision.py                    # I64 H128 B32 T50, 16 seeds
    python benchmarks/precision.py --isa avx2 --out /tmp/precision-avx2.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import rnnkit
from rnnkit import ops
from rnnkit.ops import compiled

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_isa_argument, measured_on, run_as_isa, write_json

SCALES = (1.0, 1e-2, 1e-4, 1e-6)
# A backend passes where its error is at most LIMIT times torch.nn's, or FLOOR (one float32 ulp,
# relative) where torch.nn happens to be nearly exact.
LIMIT = 2.0
FLOOR = 2.0**-23
TORCH_NN = "torch.nn"
NAIVE = "naive"
TORCH_CLASSES = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN}


@dataclass(frozen=True)
class Case:
    """One net whose precision is measured: cell, sizes, and the input it runs on."""

    mode: str
    input_size: int = 64
    hidden_size: int = 128
    batch: int = 32
    steps: int = 50
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    # Variant keywords (name, value); then rnnkit's naive ops are the reference and the baseline.
    variant: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """``LSTM P32``, ``RNN_TANH``, ``GRU layer_norm`` and the like."""
        return self.mode + (f" P{self.proj_size}" if self.proj_size else "") + "".join(f" {k}" for k, _ in self.variant)

    @property
    def baseline(self) -> str:
        """Whose float32 error the backends' is measured against: torch.nn's, or for a variant the naive ops'."""
        return NAIVE if self.variant else TORCH_NN

    def constructor_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_layers": self.num_layers, "bidirectional": self.bidirectional}
        if self.mode.startswith("RNN"):
            kwargs["nonlinearity"] = self.mode[4:].lower()
        if self.proj_size:
            kwargs["proj_size"] = self.proj_size
        return kwargs


def cases(**sizes: int | bool) -> list[Case]:
    """Every cell, the LSTM also with a projection to a quarter of its hidden size."""
    hidden = int(sizes.get("hidden_size", Case.hidden_size))
    modes = [("LSTM", 0), ("LSTM", max(1, hidden // 4)), ("GRU", 0), ("RNN_TANH", 0), ("RNN_RELU", 0)]
    return [Case(mode, proj_size=proj, **sizes) for mode, proj in modes]


def variant_cases(**sizes: int | bool) -> list[Case]:
    """The variants that change the time loop, in evaluation (no masks: zoneout's expectation)."""
    layer_norm = (("layer_norm", True),)
    return [
        Case("LSTM", variant=(*layer_norm, ("peephole", True)), **sizes),
        Case("LSTM", variant=(("zoneout", (0.2, 0.1)),), **sizes),
        Case("GRU", variant=layer_norm, **sizes),
        Case("RNN_TANH", variant=layer_norm, **sizes),
    ]


def _relative_errors(actual: Tensor, expected: Tensor) -> Tensor:
    """|actual - expected| / |expected| elementwise, flattened, over the elements where expected is not 0."""
    kept = expected != 0
    return ((actual.double() - expected).abs()[kept] / expected[kept].abs()).flatten()


def _median_p99(errors: Tensor) -> list[float]:
    if errors.numel() == 0:
        return [0.0, 0.0]
    return [errors.median().item(), torch.quantile(errors, 0.99, interpolation="higher").item()]


def _results(module: nn.Module, x: Tensor, upstream: Sequence[Tensor]) -> dict[str, Tensor]:
    """Output, final states and gradients (input, then every parameter by name) of one forward+backward."""
    x = x.detach().requires_grad_()
    output, hx = module(x)
    states = hx if isinstance(hx, tuple) else (hx,)
    named = dict(module.named_parameters())
    grads = torch.autograd.grad((output, *states), [x, *named.values()], upstream)
    results = {"output": output, "h_n": states[0]}
    if len(states) > 1:
        results["c_n"] = states[1]
    results["grad input"] = grads[0]
    results.update((f"grad {name}", grad) for name, grad in zip(named, grads[1:], strict=True))
    return {name: value.detach() for name, value in results.items()}


def _on(module: nn.Module, backend: str) -> nn.Module:
    module.backend = backend
    return module


def _errors_of_one_net(case: Case, scale: float, backends: Sequence[str], seed: int) -> dict[str, dict[str, Tensor]]:
    """Per contender, per tensor: the elementwise relative errors of one seeded net and input."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ours = getattr(rnnkit, TORCH_CLASSES[case.mode].__name__)
    if case.variant:
        single = ours(case.input_size, case.hidden_size, **case.constructor_kwargs(), **dict(case.variant))
        single = _on(single.eval(), NAIVE)
    else:
        single = TORCH_CLASSES[case.mode](case.input_size, case.hidden_size, **case.constructor_kwargs())
    with torch.no_grad():
        for param in single.parameters():
            param.mul_(scale)
    reference = copy.deepcopy(single).double()
    x = (torch.randn(case.steps, case.batch, case.input_size, generator=generator) * scale).float()
    directions = 2 if case.bidirectional else 1
    out_size = case.proj_size or case.hidden_size
    shapes = [(case.steps, case.batch, directions * out_size), (case.num_layers * directions, case.batch, out_size)]
    if case.mode == "LSTM":
        shapes.append((case.num_layers * directions, case.batch, case.hidden_size))
    upstream = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes]
    expected = _results(reference, x.double(), upstream)

    contenders: dict[str, nn.Module] = {case.baseline: single}
    if case.variant:
        contenders.update((backend, _on(copy.deepcopy(single), backend)) for backend in backends)
    else:
        contenders.update((backend, ours.from_torch(single, backend=backend)) for backend in backends)
    errors = {}
    for name, module in contenders.items():
        actual = _results(module, x, [u.float() for u in upstream])
        errors[name] = {key: _relative_errors(actual[key], value) for key, value in expected.items()}
    return errors


def measure(case: Case, scale: float, backends: Sequence[str], seeds: int = 1) -> dict[str, dict[str, list[float]]]:
    """Per contender (``"torch.nn"`` and each backend): per tensor, [median, p99] relative error in float32.

    The errors of ``seeds`` nets and inputs are pooled: a tensor of few elements (a bias of a few
    hundred) has a 99th percentile that is nearly its largest error, which one ill-conditioned sum decides.
    """
    nets = [_errors_of_one_net(case, scale, backends, seed) for seed in range(seeds)]
    return {
        name: {key: _median_p99(torch.cat([net[name][key] for net in nets])) for key in tensors}
        for name, tensors in nets[0].items()
    }


def worst_ratios(
    errors: dict[str, dict[str, list[float]]], backend: str, baseline: str = TORCH_NN
) -> dict[str, tuple[float, str]]:
    """For ``"median"`` and ``"p99"``: the largest backend / baseline (torch.nn's, or the naive ops')
    error ratio over the tensors, and its tensor.

    A ratio is taken against max(the baseline's error, FLOOR / LIMIT), so a tensor the baseline gets
    exactly leaves the backend one ulp.
    """
    worst = {}
    for index, statistic in enumerate(("median", "p99")):
        ratios = {
            tensor: values[index] / max(errors[baseline][tensor][index], FLOOR / LIMIT)
            for tensor, values in errors[backend].items()
        }
        tensor = max(ratios, key=ratios.__getitem__)
        worst[statistic] = (ratios[tensor], tensor)
    return worst


def usable_backends() -> list[str]:
    """The rnnkit backends usable here, "auto" left out (it runs one of the others)."""
    backends = []
    for backend in ops.BACKENDS:
        if backend == "auto" or ops.unavailable_reason(backend) is not None:
            continue
        if backend == "triton" and not torch.cuda.is_available():
            continue  # Triton's interpreter: float32 on the CPU is the GPU's program, but slowly
        backends.append(backend)
    return backends


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="float32 relative error of every rnnkit backend and of torch.nn")
    add_isa_argument(parser)
    parser.add_argument("--input-size", type=int, default=Case.input_size)
    parser.add_argument("--hidden-size", type=int, default=Case.hidden_size)
    parser.add_argument("--batch", type=int, default=Case.batch)
    parser.add_argument("--steps", type=int, default=Case.steps)
    parser.add_argument("--seeds", type=int, default=16, help="nets whose errors are pooled per row (default 16)")
    parser.add_argument("--out", type=Path, help="JSON file (default: benchmarks/results/precision-<isa>.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every case at every scale, print the table, write the JSON; exit 1 where a backend fails."""
    args = parse_args(argv)
    run_as_isa(args.isa, __file__, argv)
    isa = compiled.selected_isa()
    backends = usable_backends()
    sizes = dict(input_size=args.input_size, hidden_size=args.hidden_size, batch=args.batch, steps=args.steps)
    print(
        f"torch {torch.__version__}, CPU kernels' path {isa}, I{args.input_size} H{args.hidden_size} B{args.batch} "
        f"T{args.steps}, {args.seeds} seeds pooled. Per backend, the worst tensor's relative error over "
        f"torch.nn's, median / p99 (at most {LIMIT:g}x passes); the worst tensor of all is named last.\n"
    )
    header = f"{'cell':<10} {'scale':>6} {'torch.nn output median':>22}"
    header += "".join(f" | {backend:>15}" for backend in backends) + " | worst tensor"
    print(header)
    print("-" * len(header))
    rows, failures = [], 0
    # The variants have no torch.nn twin: the compiled kernels' error is measured against the naive ops'.
    variant_backends = [backend for backend in backends if backend == "cpu"]
    runs = [(case, backends) for case in cases(**sizes)]
    runs += [(case, variant_backends) for case in variant_cases(**sizes) if variant_backends]
    for case, contenders in runs:
        for scale in SCALES:
            errors = measure(case, scale, contenders, args.seeds)
            name = case.name if case.baseline == TORCH_NN else f"{case.name} (against {case.baseline})"
            line = f"{name:<10} {scale:>6g} {errors[case.baseline]['output'][0]:>22.2e}"
            worst_of_all = (0.0, "")
            for backend in contenders:
                worst = worst_ratios(errors, backend, case.baseline)
                failures += sum(ratio > LIMIT for ratio, _ in worst.values())
                line += f" | {worst['median'][0]:>6.2f}x/{worst['p99'][0]:>6.2f}x"
                worst_of_all = max(worst_of_all, *worst.values())
            print(f"{line} | {worst_of_all[1]}", flush=True)
            rows.append({"case": asdict(case), "scale": scale, "errors": errors})
    report = {
        **measured_on(),
        "isa": isa,
        "seeds": args.seeds,
        "limit": LIMIT,
        "floor": FLOOR,
        "failures": failures,
        "rows": rows,
    }
    out = args.out or Path(__file__).resolve().parent / "results" / f"precision-{isa}.json"
    write_json(out, report)
    print(f"\n{failures} failures; wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
