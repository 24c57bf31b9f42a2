import torch

# The test tensors are tiny: one thread avoids thread start-up and oversubscription
# when the suite shares the machine.
torch.set_num_threads(1)
