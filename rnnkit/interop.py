"""Moving modules between torch.nn and rnnkit: the same arguments, device, dtype and weights."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

_CONFIG_KEYS = (
    "input_size",
    "hidden_size",
    "num_layers",
    "nonlinearity",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
    "proj_size",
)


def config_of(module: nn.Module) -> dict[str, Any]:
    """Constructor arguments of a torch.nn or rnnkit recurrent module or cell.

    Both libraries keep each argument as an attribute of the same name. proj_size
    is left out when 0: torch.nn's GRU and RNN store it but refuse it as an argument.
    """
    return {
        key: getattr(module, key)
        for key in _CONFIG_KEYS
        if hasattr(module, key) and not (key == "proj_size" and module.proj_size == 0)
    }


class TorchTwin:
    """``from_torch`` / ``to_torch`` for a module whose torch.nn counterpart is ``_torch_class``."""

    _torch_class: ClassVar[type[nn.Module]]

    @classmethod
    def from_torch(cls, module: nn.Module, backend: str = "auto", **variant: Any) -> Any:
        """Build the rnnkit twin of a torch.nn module: same arguments, device, dtype, weights and mode.

        ``variant``: keywords of a variant (``layer_norm=True``, ``zoneout=0.1``, ...) started from the
        module's weights; the parameters it adds take their initial values.
        """
        if type(module) is not cls._torch_class:
            raise TypeError(
                f"{cls.__name__}.from_torch expects a torch.nn.{cls._torch_class.__name__}, got {type(module).__name__}"
            )
        initialising = [name for name in ("forget_bias", "chrono_init") if variant.get(name) is not None]
        if initialising:
            raise ValueError(
                f"{cls.__name__}.from_torch keeps the module's biases, so {initialising[0]} (an initialisation) "
                f"does not apply; build {cls.__name__}(..., {initialising[0]}=...) to start from it"
            )
        reference = next(module.parameters())
        twin = cls(**config_of(module), device=reference.device, dtype=reference.dtype, backend=backend, **variant)
        twin.load_state_dict(module.state_dict(), strict=not variant)
        return twin.train(module.training)

    def _torch_lacks(self) -> list[str]:
        """The settings of this module that its torch.nn counterpart has no equivalent for."""
        return []

    def to_torch(self) -> nn.Module:
        """The torch.nn module with the same arguments, device, dtype, weights and mode."""
        lacking = self._torch_lacks()
        if lacking:
            name = self._torch_class.__name__
            raise ValueError(
                f"{type(self).__name__}.to_torch: torch.nn.{name} has no {', '.join(lacking)}. Its own weights "
                f"load into a torch.nn.{name} with load_state_dict(state_dict, strict=False), which drops the "
                "variant's parameters and computes the plain cell"
            )
        reference = next(self.parameters())
        module = self._torch_class(**config_of(self), device=reference.device, dtype=reference.dtype)
        module.load_state_dict(self.state_dict())
        return module.train(self.training)
