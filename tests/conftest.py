import os

import torch

# The test tensors are tiny: one thread avoids thread start-up and oversubscription
# when the suite shares the machine.
torch.set_num_threads(1)

# Without a GPU the Triton kernels run in Triton's interpreter, on CPU tensors. It must
# be chosen before the kernels are defined, i.e. before rnnkit's Triton modules load.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
