"""Rebuild the recurrent module of a saved state dict, for ``rnnkit explain --checkpoint``.

A state dict names its recurrent weights as torch.nn does (``weight_ih_l0``,
``weight_hh_l0_reverse``, ``weight_hr_l1``, ``weight_ih`` for a cell, under any prefix such
as ``rnn.``), and their shapes give every size: G*H rows per weight, I columns in
``weight_ih_l0``, P columns in ``weight_hh``. So the file may be ``torch.save(model.state_dict())``
of any model holding one LSTM/GRU/RNN or cell (rnnkit's or torch.nn's), or a dict
holding such a state dict under ``"model"`` or ``"state_dict"``. Two things are not in
the weights and come from the caller: the RNN's nonlinearity and ``batch_first``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell, RNNCell
from ..modules import GRU, LSTM, RNN

_MODES = {4: "LSTM", 3: "GRU", 1: "RNN"}  # gate blocks per weight -> cell type


def _state_dict(loaded: object, path: str) -> Mapping[str, Tensor]:
    if isinstance(loaded, Mapping):
        if loaded and all(isinstance(v, Tensor) for v in loaded.values()):
            return loaded
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), Mapping):
                return _state_dict(loaded[key], path)
    got = f"a dict with keys {sorted(map(str, loaded))[:8]}" if isinstance(loaded, Mapping) else type(loaded).__name__
    raise ValueError(
        f"{path} holds no state dict: expected torch.save(model.state_dict()) or a dict with one under "
        f"'model' or 'state_dict', got {got}"
    )


def _prefix(state: Mapping[str, Tensor], path: str) -> tuple[str, bool]:
    """The key prefix of the only recurrent module in ``state``, and whether it is a cell."""
    found = sorted(
        {(k.removesuffix("weight_ih_l0"), False) for k in state if k.endswith("weight_ih_l0")}
        | {(k.removesuffix("weight_ih"), True) for k in state if k == "weight_ih" or k.endswith(".weight_ih")}
    )
    if len(found) != 1:
        what = ", ".join(repr(p or "(top level)") for p, _ in found) if found else "none"
        raise ValueError(
            f"{path}: expected the weights of one LSTM, GRU, RNN or cell (keys ending in weight_ih_l0 or "
            f"weight_ih), found {what}"
        )
    return found[0]


def module_from_state_dict(
    state: Mapping[str, Tensor],
    *,
    nonlinearity: str = "tanh",
    batch_first: bool = False,
    backend: str = "auto",
    path: str = "state dict",
    variant: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, str]:
    """The rnnkit module or cell whose parameters ``state`` holds, loaded with them.

    Args:
        state: parameter name -> tensor; the recurrent module's keys may carry any prefix.
        nonlinearity, batch_first, backend: what the weights do not tell.
        variant: variant keywords the weights do not tell (dropouts, zoneout); layer norm and
            peepholes are read from the keys.
        path: where ``state`` came from, for the messages.

    Returns:
        (the module, the key prefix it was found under, "" at the top level).
    """
    prefix, is_cell = _prefix(state, path)
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    suffix = "" if is_cell else "_l0"
    w_ih, w_hh, w_hr = own[f"weight_ih{suffix}"], own.get(f"weight_hh{suffix}"), own.get(f"weight_hr{suffix}")
    if w_hh is None or w_ih.dim() != 2 or w_hh.dim() != 2:
        raise ValueError(f"{path}: {prefix}weight_ih{suffix} or weight_hh{suffix} is missing or not a matrix")
    hidden = w_hr.shape[1] if w_hr is not None else w_hh.shape[1]
    mode = _MODES.get(w_ih.shape[0] // hidden) if w_ih.shape[0] % hidden == 0 else None
    if mode is None:
        raise ValueError(
            f"{path}: {prefix}weight_ih{suffix} has {w_ih.shape[0]} rows, not 4, 3 or 1 blocks of hidden_size={hidden}"
        )
    arguments: dict = {"bias": f"bias_ih{suffix}" in own, "dtype": w_ih.dtype, "backend": backend}
    if mode == "RNN":
        arguments["nonlinearity"] = nonlinearity
    if is_cell:
        cls = {"LSTM": LSTMCell, "GRU": GRUCell, "RNN": RNNCell}[mode]
    else:
        cls = {"LSTM": LSTM, "GRU": GRU, "RNN": RNN}[mode]
        layers = 1 + max(
            int(k.removeprefix("weight_ih_l").removesuffix("_reverse")) for k in own if k.startswith("weight_ih_l")
        )
        arguments |= {"num_layers": layers, "batch_first": batch_first, "bidirectional": "weight_ih_l0_reverse" in own}
        places = tuple(p for p in ("ih", "hh", "c") if f"ln_{p}_weight_l0" in own)
        arguments |= {**(variant or {}), "layer_norm": places or False}
        if mode == "LSTM":
            arguments["peephole"] = "weight_ch_l0" in own
        if w_hr is not None:
            arguments["proj_size"] = w_hr.shape[0]
    module = cls(w_ih.shape[1], hidden, **arguments)
    try:
        module.load_state_dict(own)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ValueError(
            f"{path}: the weights under {prefix or 'the top level'} do not fit {module}: {first[-1].strip()}"
        ) from error
    return module, prefix.removesuffix(".")


def load_checkpoint(
    path: str, *, nonlinearity: str = "tanh", batch_first: bool = False, backend: str = "auto"
) -> tuple[nn.Module, str]:
    """Read ``path`` with ``torch.load(weights_only=True)`` and rebuild its recurrent module.

    Raises:
        FileNotFoundError: no such file. ValueError: unreadable, or no single recurrent module in it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways (zip, pickle, EOF, unsafe types): all mean unreadable
        raise ValueError(
            f"cannot read checkpoint {path}: truncated, corrupt or not written by torch.save ({type(error).__name__})"
        ) from error
    state = _state_dict(loaded, path)
    # a checkpoint of rnnkit train says which variant its model is
    model_args = loaded.get("model_args") if isinstance(loaded, Mapping) else None
    variant = model_args.get("variant") if isinstance(model_args, Mapping) else None
    return module_from_state_dict(
        state, nonlinearity=nonlinearity, batch_first=batch_first, backend=backend, path=path, variant=variant
    )
