"""Run the Triton layer kernels in Triton's interpreter with one thread per program, against naive.

The interpreter runs a grid's programs one after another, so a kernel whose programs wait for
each other at a grid barrier can only run there with a single program per direction. This
script replaces the interpreter's grid loop by one Python thread per program, started in a
random order after random delays, and plans the launch as for a GPU with ``--multiprocessors``
SMs: several programs per direction then split the hidden units, meet at the barrier every
step and read each other's states. It checks the barrier protocol, every program's slice of
the index math, and that a second run, in another thread order, and a run without gradients
(two steps' states in turn) give the same bits; not the GPU's memory model.

It patches interpreter internals (``triton.runtime.interpreter``) and exits with status 2 when
this Triton lacks them. Each argument is ``mode:H:P:B:directions:tiled`` (P = 0: no projection).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import random
import sys
import threading
import time
import traceback

os.environ["TRITON_INTERPRET"] = "1"

import torch
import triton.language as tl
from triton.runtime import interpreter

from rnnkit.modules import GATES
from rnnkit.ops import persistent

from .test_ops_triton import layer_inputs, run_inference, run_layer
from .utils import relative_error

# Steps of each run: three meet at the barrier twice forward and twice backward, in both directions.
STEPS = 3

# The interpreter internals patched here.
NEEDED = {
    interpreter: ("GridExecutor", "_patch_lang", "_implicit_cvt", "interpreter_builder"),
    getattr(interpreter, "GridExecutor", None): ("_init_args_hst", "_restore_args_dev"),
    type(getattr(interpreter, "interpreter_builder", None)): (
        "set_grid_dim",
        "set_grid_idx",
        "create_barrier",
        "create_atomic_rmw",
    ),
    getattr(interpreter, "InterpretedFunction", None): ("rewrite",),
}
# Tiled: weights read every step, and the programs' shares of dh summed a few at a time.
TILED = {"RESIDENT_BYTES": 0, "MAX_BLOCK_K": 16, "MAX_BLOCK_B": 16, "SHARE_TILE": tl.constexpr(4)}
DEFAULTS = {name: getattr(persistent, name) for name in TILED}


def run_programs_in_threads() -> None:
    """Make the interpreter run each program of a grid in its own thread, with its own program id."""
    local = threading.local()
    builder = type(interpreter.interpreter_builder)
    builder.grid_idx = property(lambda self: getattr(local, "idx", None), lambda self, v: setattr(local, "idx", v))

    def call(self, *args_dev, **kwargs):
        parameters = inspect.getfullargspec(self.fn)
        kwargs = {k: v for k, v in kwargs.items() if k in parameters.args or k in parameters.kwonlyargs}
        args_hst, kwargs_hst = self._init_args_hst(args_dev, kwargs)
        scope = interpreter._patch_lang(self.fn)
        try:
            args = inspect.getcallargs(self.fn, *args_hst, **kwargs_hst)
            args = {n: a if n in self.constexprs else interpreter._implicit_cvt(a) for n, a in args.items()}
            grid = self.grid(args) if callable(self.grid) else self.grid
            grid = tuple(grid) + (1,) * (3 - len(grid))
            interpreter.interpreter_builder.set_grid_dim(*grid)

            def program(x, y, z):
                try:
                    time.sleep(random.random() * 0.01)
                    interpreter.interpreter_builder.set_grid_idx(x, y, z)
                    self.fn(**args)
                except BaseException as error:  # a dead program would leave the others at the barrier
                    print(f"program {(x, y, z)} failed: {error!r}", file=sys.stderr)
                    traceback.print_exc()
                    os._exit(3)

            threads = [
                threading.Thread(target=program, args=(x, y, z))
                for x in range(grid[0])
                for y in range(grid[1])
                for z in range(grid[2])
            ]
            random.shuffle(threads)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            scope.restore()
        self._restore_args_dev(args_dev, args_hst, kwargs, kwargs_hst)

    interpreter.GridExecutor.__call__ = call

    # A program that dawdles after a barrier lets the others run ahead of it: what a GPU's
    # scheduler may do, and what a buffer reused too early by the fast programs shows up under.
    def dawdle(self):
        if random.random() < 0.1:
            time.sleep(random.random() * 0.05)

    builder.create_barrier = dawdle

    # A program that polls a barrier's counter (adds 0 to it) gives up Python's lock at once, to the
    # programs that still have work before the barrier; spinning, it would hold it a time slice.
    atomic_rmw = builder.create_atomic_rmw

    def poll(self, op, ptr, val, mask, sem, scope):
        result = atomic_rmw(self, op, ptr, val, mask, sem, scope)
        if not val.data.any():
            time.sleep(1e-4)
        return result

    builder.create_atomic_rmw = poll


def rewrite_jitted_functions() -> None:
    """Have the interpreter rewrite every jitted function of the kernels once, before threads share them.

    Its first rewrite of a function adds names to the function's module globals, which a thread
    calling another function of that module may be iterating at that moment.
    """
    for module in (persistent, *(importlib.import_module(f"rnnkit.ops.{op}.triton") for op in ("lstm", "gru", "rnn"))):
        for value in list(vars(module).values()):
            if isinstance(value, interpreter.InterpretedFunction):
                value.rewrite()


def plan_for_gpu(multiprocessors: int):
    """``persistent.plan`` as on a GPU with ``multiprocessors`` SMs, whatever the device."""
    plan = persistent.plan

    def planned(hidden, proj, gates, batch, directions, dtype, device, **options):
        saved = persistent.triton_interpreting, persistent.multiprocessors
        persistent.triton_interpreting, persistent.multiprocessors = (lambda: False), (lambda d: multiprocessors)
        try:
            return plan(hidden, proj, gates, batch, directions, dtype, torch.device("cuda"), **options)
        finally:
            persistent.triton_interpreting, persistent.multiprocessors = saved

    return planned


def check(spec: str) -> float:
    """The worst relative error against naive in float64 of one ``mode:H:P:B:directions:tiled`` layer.

    Infinite when a direction has one program, or when the bits of a second run, or of a run
    without gradients, differ from the first's.
    """
    mode, hidden, proj, batch, directions, tiled = spec.split(":")
    hidden, proj, batch, directions = int(hidden), int(proj), int(batch), int(directions)
    for name, value in (TILED if tiled == "1" else DEFAULTS).items():
        setattr(persistent, name, value)
    rng = random.Random(batch)
    lengths = torch.tensor([STEPS] + [rng.randint(1, STEPS) for _ in range(batch - 1)])
    x, states, weights = layer_inputs(
        mode, steps=STEPS, batch=batch, features=5, hidden=hidden, proj=proj, directions=directions
    )
    sizes = (hidden, proj or None, GATES[mode], batch, directions, torch.float32, None)
    plan, backward = persistent.plan(*sizes), persistent.plan(*sizes, backward=True)
    expected = run_layer("naive", mode, x, states, weights, lengths, torch.float64)
    actual = run_layer("triton", mode, x, states, weights, lengths, torch.float32)
    again = run_layer("triton", mode, x, states, weights, lengths, torch.float32)
    inference = run_inference(mode, x, states, weights, lengths, torch.float32)
    worst = max(relative_error(actual[name], e) for name, e in expected.items())
    shape = f"{plan.programs} programs of {plan.block_u} units, backward {backward.programs}"
    shape += " split" if backward.split else f" of {backward.block_u}"
    print(f"{spec}: {shape}, worst relative error {worst:.1e}", flush=True)
    if plan.programs < 2:
        print(f"{spec}: one program per direction meets nobody at the barrier", file=sys.stderr)
        return float("inf")
    differ = [name for name, a in actual.items() if not torch.equal(a, again[name])]
    differ += [f"{name} without gradients" for name, a in inference.items() if not torch.equal(a, actual[name])]
    if differ:
        print(f"{spec}: bits differ from the first run in {differ}", file=sys.stderr)
        return float("inf")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--multiprocessors", type=int, default=8)
    args = parser.parse_args()
    if not all(hasattr(owner, name) for owner, names in NEEDED.items() for name in names):
        print("this Triton's interpreter lacks the internals patched here", file=sys.stderr)
        return 2
    run_programs_in_threads()
    rewrite_jitted_functions()
    persistent.plan = plan_for_gpu(args.multiprocessors)
    worst = max(check(spec) for spec in args.specs)
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
