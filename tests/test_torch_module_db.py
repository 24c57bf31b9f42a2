"""torch's own module tests as an external check: the ModuleInfo entries that torch ships for
RNN, GRU, LSTM and the cells (torch.testing._internal.common_modules), run against rnnkit."""

from __future__ import annotations

import re

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db

import rnnkit

TWINS = {
    torch.nn.RNN: rnnkit.RNN,
    torch.nn.GRU: rnnkit.GRU,
    torch.nn.LSTM: rnnkit.LSTM,
    torch.nn.RNNCell: rnnkit.RNNCell,
    torch.nn.GRUCell: rnnkit.GRUCell,
    torch.nn.LSTMCell: rnnkit.LSTMCell,
}
INFOS = [info for info in module_db if info.module_cls in TWINS]


def tensors(value) -> list[torch.Tensor]:
    """Every tensor in a (nested) module output, PackedSequence data included."""
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors(v)]
    return [value]


def samples(info, error: bool, dtype: torch.dtype = torch.float64):
    make = info.module_error_inputs_func if error else info.module_inputs_func
    kwargs = {} if error or info.module_cls not in (torch.nn.RNN, torch.nn.GRU) else {"with_packed_sequence": True}
    return make(info, device="cpu", dtype=dtype, requires_grad=False, training=True, **kwargs)


def test_the_entries_exist():
    assert {info.module_cls for info in INFOS} == set(TWINS)


@pytest.mark.parametrize("info", INFOS, ids=lambda info: info.name)
def test_module_inputs_match_torch(info):
    for sample in samples(info, error=False):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        torch.manual_seed(0)
        reference = info.module_cls(*args, **kwargs, dtype=torch.float64)
        torch.manual_seed(0)
        ours = TWINS[info.module_cls](*args, **kwargs, dtype=torch.float64)
        inputs = sample.forward_input
        expected = tensors(reference(*inputs.args, **inputs.kwargs))
        actual = tensors(ours(*inputs.args, **inputs.kwargs))
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=0, atol=1e-12)


@pytest.mark.parametrize("info", INFOS, ids=lambda info: info.name)
def test_error_inputs_raise_what_torch_raises(info):
    """Each error input raises an instance of the exception type torch raises."""
    for error_input in samples(info, error=True, dtype=torch.float32):
        sample = error_input.module_error_input
        cls = TWINS[info.module_cls]
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        with pytest.raises(error_input.error_type) as raised:
            module = cls(*args, **kwargs)
            assert error_input.error_on == ModuleErrorEnum.FORWARD_ERROR, "construction should have failed"
            module(*sample.forward_input.args, **sample.forward_input.kwargs)
        if error_input.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
            # constructor messages keep torch's wording; forward errors use rnnkit's (expected and got)
            assert re.search(error_input.error_regex, str(raised.value)), str(raised.value)
