"""The demo: a short tour (torch.nn weights in rnnkit, ``lengths=`` instead of packing, the parity
with torch), then two short training runs: a digits classifier and a character language model."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .modules import LSTM
from .sequences import last_valid
from .train import CharLMConfig, ClassifyConfig, GenerateConfig, generate, train
from .train.commands import user_errors


def tour() -> None:
    """Print the tour of the modules to stdout."""
    torch.manual_seed(0)
    reference = nn.LSTM(28, 10, num_layers=2, batch_first=True, bidirectional=True)
    model = LSTM(28, 10, num_layers=2, batch_first=True, bidirectional=True)
    model.load_state_dict(reference.state_dict())
    total = sum(p.numel() for p in model.parameters())
    print(f"{model}\n  {total:,} parameters (torch.nn.LSTM: {sum(p.numel() for p in reference.parameters()):,})")
    for name, p in model.named_parameters():
        print(f"  {name:<22} {tuple(p.shape)}")

    x = torch.randn(4, 28, 28)  # (B, T, I): four MNIST-like images, one row per step
    lengths = torch.tensor([28, 9, 17, 1])  # any order: no sorting, no packing
    output, (h_n, c_n) = model(x, lengths=lengths)
    print(f"\ninput {tuple(x.shape)}, lengths {lengths.tolist()}")
    print(f"output {tuple(output.shape)}  h_n {tuple(h_n.shape)}  c_n {tuple(c_n.shape)}")

    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_packed, (ref_h, ref_c) = reference(packed)
    ref_output, _ = pad_packed_sequence(ref_packed, batch_first=True, total_length=x.shape[1])
    naive_output, (naive_h, naive_c) = LSTM.from_torch(reference, backend="naive")(x, lengths=lengths)
    print("\nagainst pack_padded_sequence -> torch.nn.LSTM -> pad_packed_sequence, max |difference|:")
    print(f"  {'':<7} {'backend=auto':>13} {'backend=naive (the equations)':>31}")
    for name, ours, naive, theirs in (
        ("output", output, naive_output, ref_output),
        ("h_n", h_n, naive_h, ref_h),
        ("c_n", c_n, naive_c, ref_c),
    ):
        print(f"  {name:<7} {(ours - theirs).abs().max().item():>13.1e} {(naive - theirs).abs().max().item():>31.1e}")

    hidden = model.hidden_size
    forward_last = last_valid(output.transpose(0, 1), lengths)[:, :hidden]
    print(
        "\nrelations (last layer): forward half at each last valid step == h_n[-2], reverse half at step 0 == h_n[-1]"
    )
    print(f"  max |output[b, lengths[b]-1, :H] - h_n[-2]| = {(forward_last - h_n[-2]).abs().max().item():.1e}")
    print(f"  max |output[:, 0, H:] - h_n[-1]|            = {(output[:, 0, hidden:] - h_n[-1]).abs().max().item():.1e}")
    print(f"  output past each length is zero: {bool((output[1, 9:] == 0).all() and (output[3, 1:] == 0).all())}")


def train_two_models(out_dir: Path, quick: bool = False) -> None:
    """Train a digits classifier and a character language model under ``out_dir``, print a sample.

    ``quick`` trains for an epoch or two only: a smoke test, not a result.
    """
    print("\n--- digits, 8 rows of 8 pixels read one row per step: an LSTM classifier ---")
    epochs = 2 if quick else 30
    digits = train(ClassifyConfig(data="digits", epochs=epochs, log_every=5, out_dir=str(out_dir / "digits")))
    print(f"digits: test accuracy {100 * digits[-1]['test_acc']:.2f}%")

    print("\n--- The Time Machine: d2l's character language model (one-hot LSTM 256, its first 10,000 tokens) ---")
    print("(Adam instead of d2l's SGD, for a short run; validation is the last 10% of the book)")
    epochs = 1 if quick else 40
    charlm = CharLMConfig(
        optimizer="adam", lr=1e-2, epochs=epochs, eval_every=epochs, log_every=10, out_dir=str(out_dir / "charlm")
    )
    train(charlm)
    checkpoint = str(out_dir / "charlm" / "checkpoint.pt")
    text = generate(GenerateConfig(checkpoint=checkpoint, prefix="time traveller", length=100, temperature=0))
    print(f"generated, always the likeliest next letter (d2l's predict_ch8):\n  {text}")

    print(f"\nmetrics (metrics.jsonl), plots (curves.png, confusion.png) and checkpoints under {out_dir}/:")
    for path in sorted(out_dir.glob("*/*")):
        print(f"  {path}")
    print(f"more: rnnkit generate --checkpoint {checkpoint} --prefix 'the time' --length 200")


def run(args: argparse.Namespace) -> None:
    """The tour, then the two training runs."""
    tour()
    with user_errors():
        train_two_models(Path(args.out_dir), quick=args.quick)


def add_command(commands) -> None:
    """Register ``rnnkit demo``."""
    parser = commands.add_parser(
        "demo", help="a short tour (torch.nn weights, lengths=, parity with torch.nn), then two short training runs"
    )
    parser.add_argument("--out-dir", default="runs/demo", help="where the runs write (default: runs/demo)")
    parser.add_argument("--quick", action="store_true", help="train an epoch or two only (a smoke test)")
    parser.set_defaults(run=run)
