"""``rnnkit train``, ``eval`` and ``generate``: bad input gets one line on stderr and exit status 2,
and nothing on disk is overwritten.

The commands run in this process through ``rnnkit.cli.main`` (``run_cli``), which is what
``python -m rnnkit`` calls, without a second of interpreter and torch start-up each; torchrun's
processes are real ones (tests/test_cli.py runs the entry point itself).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from rnnkit.data import Vocab, random_windows, timemachine
from rnnkit.train import CharLM, CharLMConfig, checkpoint, train

from .utils import run_cli as rnnkit
from .utils import write_idx_images


def torchrun(*args: str, processes: int) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N -m rnnkit ARGS``, one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, "-m", "rnnkit", *args], capture_output=True, text=True, timeout=300, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("rnnkit: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-epoch charlm run on a short text: checkpoint.pt, metrics.jsonl, curves.png."""
    folder = tmp_path_factory.mktemp("run")
    (folder / "text.txt").write_text(timemachine()[:3000])
    config = CharLMConfig(
        text=str(folder / "text.txt"), out_dir=str(folder), epochs=1, batch_size=8, num_steps=10, hidden_size=16
    )
    train(config)
    return folder


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("Café crème".encode("latin-1"))
    (tmp_path / "short.txt").write_text("too short to make one batch")
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "no_mnist").mkdir()
    return tmp_path


BAD_INPUT = {
    "missing text file": (
        ["train", "charlm", "--text", "{d}/missing.txt"],
        ["text file", "missing.txt does not exist"],
    ),
    "empty text file": (["train", "charlm", "--text", "{d}/empty.txt"], ["empty.txt is empty"]),
    "non-UTF-8 text file": (["train", "charlm", "--text", "{d}/latin1.txt"], ["is not UTF-8: byte 0xe9 at offset 3"]),
    "text too short": (["train", "charlm", "--text", "{d}/short.txt"], ["fewer than one batch of --batch-size 32"]),
    "unknown data set": (["train", "classify", "--data", "imagenet"], ["--data: invalid choice: 'imagenet'"]),
    "bad int": (["train", "classify", "--epochs", "ten"], ["--epochs: invalid int value: 'ten'"]),
    "bad float": (["train", "charlm", "--lr", "fast"], ["--lr: invalid float value: 'fast'"]),
    "number out of range": (["train", "classify", "--lr", "-1"], ["--lr must be in (0, inf), got -1.0"]),
    "nan": (["train", "charlm", "--dropout", "nan"], ["--dropout must be in [0, 1), got nan"]),
    "unwritable output folder": (["train", "classify", "--out-dir", "{d}/a_file/run"], ["cannot write to --out-dir"]),
    "MNIST missing": (["train", "classify", "--data", "mnist", "--data-dir", "{d}/no_mnist"], ["MNIST not found"]),
    "Fashion-MNIST missing": (
        ["train", "classify", "--data", "fashion-mnist", "--data-dir", "{d}/no_mnist"],
        ["Fashion-MNIST not found in {d}/no_mnist", "apt-get install dataset-fashion-mnist"],
    ),
    "missing checkpoint": (["generate", "--checkpoint", "{d}/nothing.pt"], ["nothing.pt does not exist"]),
    "export of a missing checkpoint": (
        ["export", "--checkpoint", "{d}/nothing.pt", "--onnx", "{d}/m.onnx"],
        ["nothing.pt does not exist"],
    ),
    "variant on torch.nn": (
        ["train", "classify", "--zoneout", "0.1", "--backend", "torch.nn"],
        ["--zoneout: torch.nn's modules have no such variant"],
    ),
    "LSTM variant on a GRU": (["train", "charlm", "--cell", "gru", "--peephole"], ["--peephole is for --cell lstm"]),
    "recurrence variant on torch": (
        ["train", "classify", "--layer-norm", "--backend", "torch"],
        ["--layer-norm runs on --backend auto or naive, not torch"],
    ),
    "two forget-gate inits": (
        ["train", "classify", "--forget-bias", "1", "--chrono-init", "8"],
        ["--forget-bias and --chrono-init both set"],
    ),
    "probability out of range": (["train", "classify", "--zoneout", "1"], ["--zoneout must be in [0, 1), got 1.0"]),
    "layer norm places without it": (["train", "classify", "--layer-norm-at", "hh"], ["give --layer-norm too"]),
    "layer norm at c of a GRU": (
        ["train", "classify", "--cell", "gru", "--layer-norm", "--layer-norm-at", "hh,c"],
        ["--layer-norm-at takes all or some of ih,hh, got hh,c"],
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(case, bad_files):
    args, fragments = BAD_INPUT[case]
    out = ["--out-dir", str(bad_files / "out")] if args[0] == "train" and "--out-dir" not in args else []
    result = rnnkit(*(a.format(d=bad_files) for a in args), *out)
    assert_one_line_error(result, *(f.format(d=bad_files) for f in fragments))
    assert not (bad_files / "out" / "checkpoint.pt").exists()


def test_bad_checkpoints_are_one_line_and_overwrite_nothing(run_dir, tmp_path):
    good = (run_dir / "checkpoint.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(1000))
    payload = checkpoint.load(run_dir / "checkpoint.pt")
    payload["model"]["output.weight"] = torch.zeros(28, 17)  # weights that do not fit the model
    checkpoint.save(tmp_path / "mismatched.pt", payload)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    before = snapshot(run_dir)
    cases = {
        "truncated.pt": "is truncated or corrupt",
        "garbage.pt": "is truncated or corrupt",
        "foreign.pt": "is not an rnnkit training checkpoint",
        "mismatched.pt": "does not fit this model: Error(s) in loading state_dict for CharLM: size mismatch",
    }
    for name, fragment in cases.items():
        resume = ["train", "charlm", "--resume", str(tmp_path / name), "--out-dir", str(run_dir), "--epochs", "2"]
        export = ["export", "--checkpoint", str(tmp_path / name), "--onnx", str(tmp_path / "model.onnx")]
        for args in (resume, ["eval", "--checkpoint", str(tmp_path / name)], export):
            assert_one_line_error(rnnkit(*args), name, fragment)
    other_model = rnnkit("train", "charlm", "--resume", str(run_dir / "checkpoint.pt"), "--hidden-size", "32")
    assert_one_line_error(other_model, "trained with hidden_size=16, this run has hidden_size=32")
    other_task = rnnkit("train", "classify", "--resume", str(run_dir / "checkpoint.pt"))
    assert_one_line_error(other_task, "is from a charlm run, not classify")
    no_prefix = rnnkit("generate", "--checkpoint", str(run_dir / "checkpoint.pt"), "--prefix", "")
    assert_one_line_error(no_prefix, "--prefix must hold at least one character, got ''")
    assert snapshot(run_dir) == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_nan_loss_is_one_line_and_keeps_the_checkpoint(run_dir, tmp_path):
    payload = checkpoint.load(run_dir / "checkpoint.pt")
    payload["model"]["output.bias"][0] = float("inf")
    payload["config"]["out_dir"] = str(tmp_path)
    checkpoint.save(tmp_path / "checkpoint.pt", payload)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    result = rnnkit("train", "charlm", "--resume", str(tmp_path / "checkpoint.pt"), "--epochs", "2")
    assert_one_line_error(result, "the loss became nan", "epoch 2, step 1", "last good checkpoint is")
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 1 only


def test_generate_and_eval(run_dir, tmp_path):
    ckpt = str(run_dir / "checkpoint.pt")
    result = rnnkit("generate", "--checkpoint", ckpt, "--prefix", "Time Traveller", "--length", "40")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("time traveller") and len(result.stdout.rstrip("\n")) == 14 + 40
    result = rnnkit("eval", "--checkpoint", ckpt, "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "(charlm, 1 epochs): val_loss" in result.stdout and (tmp_path / "eval.json").exists()
    result = rnnkit("eval", "--checkpoint", ckpt, "--text", str(run_dir / "text.txt"))
    assert result.returncode == 0 and "text_ppl" in result.stdout, result.stderr
    assert_one_line_error(rnnkit("eval", "--checkpoint", ckpt, "--data-dir", "x"), "--data-dir is for classify")


def test_a_variant_trains_evaluates_and_keeps_its_keywords(tmp_path):
    out = str(tmp_path / "run")
    flags = ["--hidden-size", "8", "--epochs", "1", "--no-progress", "--layer-norm", "--layer-norm-at", "hh,c"]
    flags += ["--zoneout", "0.1"]
    result = rnnkit("train", "classify", *flags, "--weight-dropout", "0.2", "--forget-bias", "1", "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert "lstm 1x8 layer_norm=('hh', 'c') zoneout=0.1 weight_dropout=0.2 forget_bias=1.0," in result.stdout
    payload = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    expected = dict(layer_norm=("hh", "c"), zoneout=0.1, weight_dropout=0.2, forget_bias=1.0)
    assert payload["model_args"]["variant"] == expected
    assert "rnn.ln_c_weight_l0" in payload["model"] and "rnn.ln_ih_weight_l0" not in payload["model"]
    result = rnnkit("eval", "--checkpoint", out + "/checkpoint.pt")
    assert result.returncode == 0 and "test_acc" in result.stdout, result.stderr
    assert_one_line_error(
        rnnkit("eval", "--checkpoint", out + "/checkpoint.pt", "--backend", "torch.nn"), "have no variant layer_norm"
    )


def test_fashion_mnist_trains_and_evaluates_from_its_folder(tmp_path):
    write_idx_images(tmp_path / "fashion", images=6, gz=True)
    out = str(tmp_path / "run")
    flags = ["--data", "fashion-mnist", "--data-dir", str(tmp_path / "fashion"), "--hidden-size", "8"]
    flags += ["--epochs", "1", "--batch-size", "3", "--no-progress"]
    result = rnnkit("train", "classify", *flags, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("classify: fashion-mnist: 6 train / 2 test sequences of 28 steps x 28 features")
    (tmp_path / "fashion").rename(tmp_path / "moved")
    moved = rnnkit("eval", "--checkpoint", out + "/checkpoint.pt", "--data-dir", str(tmp_path / "moved"))
    assert moved.returncode == 0 and "test_acc" in moved.stdout, moved.stderr


def test_classify_resume_from_the_command_line_continues_the_run(tmp_path):
    """``--resume PATH --epochs 3`` takes the checkpoint's settings and trains on to the same result."""
    flags = ["--hidden-size", "16", "--schedule", "constant", "--no-progress"]
    whole = rnnkit("train", "classify", *flags, "--epochs", "3", "--out-dir", str(tmp_path / "whole"))
    first = rnnkit("train", "classify", *flags, "--epochs", "2", "--out-dir", str(tmp_path / "part"))
    rest = rnnkit("train", "classify", "--resume", str(tmp_path / "part" / "checkpoint.pt"), "--epochs", "3")
    for result in (whole, first, rest):
        assert result.returncode == 0, result.stderr
    assert "confusion.png" in whole.stdout and (tmp_path / "part" / "confusion.png").exists()

    def last_epoch(stdout: str) -> str:  # without the timing at its end
        return next(line for line in stdout.splitlines() if line.startswith("epoch 3/3")).rsplit(" | ", 1)[0]

    assert last_epoch(rest.stdout) == last_epoch(whole.stdout)
    a, b = (checkpoint.load(tmp_path / run / "checkpoint.pt") for run in ("whole", "part"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]


def test_two_processes_take_the_same_step_as_one(tmp_path):
    """torchrun, 2 CPU processes with gloo: one step on a global batch of 16 (8 rows each) gives the
    parameters that one process gets on the same 16 rows."""
    text = timemachine()[:260]
    (tmp_path / "text.txt").write_text(text)
    ids = Vocab.build(text, "letters").encode(text)
    assert len(random_windows(ids, 16, 10, seed=0, epoch=0)) == 1  # one step
    flags = ["--text", str(tmp_path / "text.txt"), "--val-fraction", "0", "--max-tokens", "0", "--epochs", "1"]
    flags += ["--batch-size", "16", "--num-steps", "10", "--hidden-size", "16", "--device", "cpu", "--no-progress"]
    two = torchrun("train", "charlm", *flags, "--out-dir", str(tmp_path / "two"), processes=2)
    one = rnnkit("train", "charlm", *flags, "--out-dir", str(tmp_path / "one"))
    assert two.returncode == 0, two.stderr
    assert one.returncode == 0, one.stderr
    assert "2 processes on cpu" in two.stdout and two.stdout.count("epoch 1/1") == 1  # process 0 alone logs
    a, b = (checkpoint.load(tmp_path / run / "checkpoint.pt") for run in ("one", "two"))
    for name, weight in a["model"].items():
        torch.testing.assert_close(b["model"][name], weight, rtol=0, atol=1e-6)
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-6)
    torch.manual_seed(0)
    initial = CharLM(**a["model_args"]).state_dict()
    assert not torch.equal(initial["output.weight"], a["model"]["output.weight"])  # the step did move them
