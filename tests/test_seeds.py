"""The questions of the source posts (../shared/seeds/), answered by rnnkit and checked."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit


def shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in module.named_parameters()]


def test_seed_000_lstm_100_100_has_80800_parameters():
    """4 gates x (100*100 + 100*100 + 2*100): two biases per gate, not the textbook 80,400."""
    ours, theirs = rnnkit.LSTM(100, 100), nn.LSTM(100, 100)
    assert sum(p.numel() for p in ours.parameters()) == 80_800
    assert sum(p.numel() for p in theirs.parameters()) == 80_800
    assert shapes(ours) == shapes(theirs)
    assert [s for _, s in shapes(ours)] == [(400, 100), (400, 100), (400,), (400,)]


def test_seed_000_two_layer_bidirectional_shapes():
    ours = rnnkit.LSTM(input_size=100, hidden_size=100, num_layers=2, bidirectional=True)
    assert shapes(ours) == shapes(nn.LSTM(input_size=100, hidden_size=100, num_layers=2, bidirectional=True))
    assert ours.weight_ih_l1.shape == (400, 200)  # layer 2 reads both directions of layer 1
    assert ours.weight_ih_l1_reverse.shape == (400, 200)


def test_seed_000_001_bidirectional_output_and_h_n():
    """batch_first, 2 layers, bidirectional: output[:, -1, :H] == h_n[-2], output[:, 0, H:] == h_n[-1]."""
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(input_size=10, hidden_size=20, num_layers=2, bidirectional=True, batch_first=True)
    x, h0, c0 = torch.randn(5, 3, 10), torch.randn(4, 5, 20), torch.randn(4, 5, 20)
    output, (h_n, c_n) = lstm(x, (h0, c0))
    assert output.shape == (5, 3, 40)
    assert h_n.shape == c_n.shape == (4, 5, 20)
    torch.testing.assert_close(output[:, -1, :20], h_n[-2], rtol=0, atol=0)
    torch.testing.assert_close(output[:, 0, 20:], h_n[-1], rtol=0, atol=0)
    torch.testing.assert_close(output[4, 2, :20], h_n[2, 4], rtol=0, atol=0)  # the post's own example
    torch.testing.assert_close(output[4, 0, 20:], h_n[3, 4], rtol=0, atol=0)


def test_seed_001_lengths_replace_the_sort_pack_unsort_dance():
    """The post sorts by length, packs, runs, pads and unsorts; rnnkit takes lengths= in any order."""
    torch.manual_seed(0)
    tokens = torch.tensor([[1, 2, 3], [4, 5, 0], [6, 0, 0], [7, 8, 0]])
    lengths = torch.tensor([3, 2, 1, 2])
    emb = nn.Embedding(20, 2, padding_idx=0)
    theirs = nn.LSTM(input_size=2, hidden_size=4, batch_first=True)
    ours = rnnkit.LSTM.from_torch(theirs)

    sorted_lengths, order = lengths.sort(0, descending=True)
    _, restore = order.sort(0)
    packed = pack_padded_sequence(emb(tokens)[order], sorted_lengths, batch_first=True)
    packed_out, (h_n, _) = theirs(packed)
    expected, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=tokens.shape[1])
    expected = expected[restore]

    output, (our_h_n, _) = ours(emb(tokens), lengths=lengths)
    assert output.shape == (4, 3, 4)  # the padded length stays; no total_length needed
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(our_h_n, h_n[:, restore])  # the post leaves h_n in sorted order
    torch.testing.assert_close(our_h_n[0], rnnkit.last_valid(output.transpose(0, 1), lengths))


class Seed003Classifier(nn.Module):
    """The MNIST row-by-row model of seed 003, with the state built from the input's batch size."""

    def __init__(self, lstm_class) -> None:
        super().__init__()
        self.lstm = lstm_class(28, 10, 2, batch_first=True)
        self.classifier = nn.Linear(10, 10)

    def forward(self, x):
        h0 = torch.zeros(2, x.size(0), 10)
        c0 = torch.zeros(2, x.size(0), 10)
        _, (h_n, _) = self.lstm(x, (h0, c0))
        return self.classifier(h_n[-1])


def test_seed_003_classifier_trains_on_batches_of_128_and_96():
    torch.manual_seed(0)
    net = Seed003Classifier(rnnkit.LSTM)
    reference = Seed003Classifier(nn.LSTM)
    reference.load_state_dict(net.state_dict())
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (net, reference)]
    for batch in (128, 96):
        images, labels = torch.rand(batch, 28, 28), torch.randint(0, 10, (batch,))
        for model, optimizer in zip((net, reference), optimizers, strict=True):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            assert torch.isfinite(loss)
    for (name, ours), theirs in zip(net.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, msg=name)
