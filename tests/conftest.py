import os

import torch

# The test tensors are tiny: one thread avoids thread start-up and oversubscription
# when the suite shares the machine.
torch.set_num_threads(1)

# Without a GPU the Triton kernels run in Triton's interpreter, on CPU tensors. It must
# be chosen before the kernels are defined, i.e. before rnnkit's Triton modules load.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(items: list) -> None:
    """The tests marked ``long`` first: pytest-xdist hands tests out in this order, and a long test
    that starts last runs alone at the end while the other workers have nothing left."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
