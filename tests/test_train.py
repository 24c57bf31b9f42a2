"""rnnkit.train through its Python API: resuming, checkpoints, divergence, the models."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit import ops
from rnnkit.data import timemachine
from rnnkit.train import (
    CharLM,
    CharLMConfig,
    CheckpointError,
    Classifier,
    ClassifyConfig,
    ConfigError,
    TrainingDiverged,
    checkpoint,
    load_model,
    sample,
    train,
)
from rnnkit.train import loop as loop_module


@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(timemachine()[:3000])
    return path


def small_lm(text, out_dir, **changes) -> CharLMConfig:
    settings = dict(
        text=str(text),
        out_dir=str(out_dir),
        epochs=4,
        batch_size=8,
        num_steps=10,
        hidden_size=24,
        num_layers=2,
        embedding=8,
        dropout=0.2,  # the dropout masks come from the generator state stored in the checkpoint
        partition="sequential",
        optimizer="adam",
        lr=1e-2,
        schedule="cosine",
        progress=False,
    )
    return CharLMConfig(**{**settings, **changes})


def without_timing(history):
    return [{k: v for k, v in m.items() if k not in ("seconds", "tokens_per_s")} for m in history]


def test_resume_after_an_interruption_reaches_the_same_result(tmp_path, small_text, monkeypatch):
    """Adam state, cosine schedule, dropout generator, batch order: all continue where they stopped."""
    whole = train(small_lm(small_text, tmp_path / "whole"))
    save = checkpoint.save

    def save_then_stop_after_epoch_2(path, payload):
        save(path, payload)
        if len(payload["history"]) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(small_lm(small_text, tmp_path / "cut"))
    monkeypatch.undo()
    resumed = train(small_lm(small_text, tmp_path / "cut", resume=str(tmp_path / "cut" / "checkpoint.pt")))

    assert without_timing(resumed) == without_timing(whole)
    a, b = (checkpoint.load(tmp_path / run / "checkpoint.pt")["model"] for run in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_more_epochs_on_resume_stretch_the_schedule(tmp_path, small_text):
    """A cosine schedule ends at 0; resumed with more epochs, the run goes on at the stretched schedule's rate."""
    first = train(small_lm(small_text, tmp_path, epochs=2, dropout=0.0))
    before = checkpoint.load(tmp_path / "checkpoint.pt")["model"]
    more = train(small_lm(small_text, tmp_path, epochs=4, dropout=0.0, resume=str(tmp_path / "checkpoint.pt")))
    assert [m["lr"] for m in first] == [1e-2, 0.5 * 1e-2 * (1 + math.cos(math.pi / 2))]
    assert more[2]["lr"] == pytest.approx(0.5 * 1e-2 * (1 + math.cos(math.pi * 2 / 4)))
    after = checkpoint.load(tmp_path / "checkpoint.pt")["model"]
    assert not torch.equal(before["output.weight"], after["output.weight"])


def test_same_seed_same_run_and_other_seed_another(tmp_path, small_text):
    first = train(small_lm(small_text, tmp_path / "a", epochs=1))
    again = train(small_lm(small_text, tmp_path / "b", epochs=1))
    other = train(small_lm(small_text, tmp_path / "c", epochs=1, seed=1))
    assert without_timing(first) == without_timing(again) != without_timing(other)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, small_text):
    config = small_lm(small_text, tmp_path, epochs=1, dropout=0.0)
    train(config)
    path = tmp_path / "checkpoint.pt"
    payload = checkpoint.load(path)
    payload["model"]["output.bias"][0] = math.inf  # the next forward pass gives an infinite loss
    checkpoint.save(path, payload)
    kept, metrics = path.read_bytes(), (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(TrainingDiverged, match=r"loss became nan.*epoch 2, step 1.*last good checkpoint is"):
        train(small_lm(small_text, tmp_path, epochs=2, dropout=0.0, resume=str(path)))
    assert path.read_bytes() == kept
    assert (tmp_path / "metrics.jsonl").read_text() == metrics


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"model": torch.zeros(3)})
    before = path.read_bytes()

    def fail_halfway(obj, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"model": torch.ones(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


class NotATensor:
    pass


def test_checkpoints_load_with_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "payload": NotATensor()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt is truncated or corrupt: Weights only load failed"):
        checkpoint.load(path)


def test_resume_refuses_another_model(tmp_path, small_text):
    train(small_lm(small_text, tmp_path, epochs=1))
    path = str(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="trained with hidden_size=24, this run has hidden_size=32"):
        train(small_lm(small_text, tmp_path, hidden_size=32, resume=path))
    with pytest.raises(CheckpointError, match="from a charlm run, cannot resume classify"):
        train(ClassifyConfig(out_dir=str(tmp_path), resume=path))


def test_config_errors_name_flag_range_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"--lr must be in \(0, inf\), got -1"):
        train(ClassifyConfig(lr=-1, out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"--epochs must be int, got 2\.5 \(float\)"):
        train(ClassifyConfig(epochs=2.5, out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"--dropout must be in \[0, 1\), got nan"):
        train(ClassifyConfig(dropout=math.nan, out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="--cell must be one of lstm, gru, rnn, got 'transformer'"):
        train(ClassifyConfig(cell="transformer", out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"--backend must be one of auto, .*, torch\.nn, got 'x'"):
        train(ClassifyConfig(backend="x", out_dir=str(tmp_path)))
    if ops.unavailable_reason("triton") is not None:
        with pytest.raises(ConfigError, match="--backend: backend='triton' is not available"):
            train(ClassifyConfig(backend="triton", out_dir=str(tmp_path)))


def test_torch_nn_backend_trains_the_same_model(tmp_path, small_text):
    """torch.nn's module and rnnkit's share parameter names: a torch.nn run evaluates in rnnkit."""
    ours = train(small_lm(small_text, tmp_path / "ours", epochs=1, dropout=0.0, backend="torch"))
    theirs = train(small_lm(small_text, tmp_path / "theirs", epochs=1, dropout=0.0, backend="torch.nn"))
    assert without_timing(ours)[0] == pytest.approx(without_timing(theirs)[0])
    _, _, model = load_model(tmp_path / "theirs" / "checkpoint.pt", torch.device("cpu"), "naive")
    assert type(model.rnn).__module__ == "rnnkit.modules"


def test_sample_greedy_is_deterministic_and_keeps_the_prefix(tmp_path, small_text):
    train(small_lm(small_text, tmp_path, epochs=1))
    payload, _, model = load_model(tmp_path / "checkpoint.pt", torch.device("cpu"), "auto")
    vocab = checkpoint.vocab_of(payload)
    greedy = sample(model, vocab, "The Time", 30, temperature=0)
    assert greedy.startswith("the time") and len(greedy) == len("the time") + 30
    assert sample(model, vocab, "The Time", 30, temperature=0) == greedy
    drawn = [sample(model, vocab, "the", 30, 1.0, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert drawn[0] == drawn[1] != drawn[2]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_classifier_reads_the_last_layer_at_the_ends(cell, bidirectional):
    torch.manual_seed(0)
    model = Classifier(5, 3, cell, 6, 2, bidirectional, "last", 0.0)
    x = torch.randn(4, 7, 5)
    y, _ = model.rnn(x)
    features = torch.cat([y[:, -1, :6], y[:, 0, 6:]], 1) if bidirectional else y[:, -1]
    torch.testing.assert_close(model(x), model.output(features))


def test_charlm_one_hot_and_embedding_shapes():
    for embedding in (0, 5):
        logits, (h, c) = CharLM(28, "lstm", 16, 2, embedding, 0.0)(torch.randint(28, (3, 7)))
        assert logits.shape == (3, 7, 28) and h.shape == c.shape == (2, 3, 16)


def test_loop_log_line_has_a_fixed_format():
    task = loop_module.ClassifyTask.__new__(loop_module.ClassifyTask)
    metrics = {"epoch": 3, "train_loss": 0.5, "train_acc": 0.9, "test_loss": 0.25, "test_acc": 0.975}
    line = loop_module._line(task, {**metrics, "samples_per_s": 12345, "seconds": 0.52}, 30)
    assert line == "epoch  3/30 | train loss 0.5000 acc 90.00% | test loss 0.2500 acc 97.50% | 12.3k samples/s, 0.5 s"
