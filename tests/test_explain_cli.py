"""``rnnkit explain``: as a subprocess, the way a user runs it, and its bad arguments in this process
(``rnnkit.cli.main``, which ``python -m rnnkit`` calls; tests/test_cli.py runs the entry point itself)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def start(*args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "rnnkit", "explain", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def test_text_report_of_the_seed_000_lstm() -> None:
    code, stdout, stderr = finish(
        start("lstm", "--input-size", "100", "--hidden-size", "100", "--num-layers", "2", "--bidirectional",
              "--backend", "naive")
    )  # fmt: skip
    assert code == 0, stderr
    assert "layer 0 forward       80,800  = 4*(100*100 + 100*100 + 2*100)" in stdout
    assert "120,800  = 4*(100*200 + 100*100 + 2*100)" in stdout
    assert "403,200" in stdout and "textbook" in stdout
    assert "PASS  output[-1, :, :100] == h_n[-2]" in stdout and "FAIL" not in stdout
    assert r"i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi})" in stdout


def test_json_pictures_and_checkpoint(tmp_path) -> None:
    """Two runs at once: torch.nn's GRU with lengths as JSON plus both pictures, and a saved state dict."""
    model = nn.Sequential(nn.Embedding(28, 8), nn.LSTM(8, 16, proj_size=4))
    torch.save({"model": model.state_dict(), "config": {"hidden_size": 16}}, tmp_path / "charlm.pt")
    params, gates = tmp_path / "params.png", tmp_path / "gates.png"
    runs = [
        start("gru", "--input-size", "4", "--hidden-size", "6", "--batch-first", "--torch", "--lengths", "5,2,4",
              "--json", "--plot", str(params), "--gates", str(gates)),
        start("--checkpoint", str(tmp_path / "charlm.pt"), "--backend", "naive", "--seq-len", "7", "--batch", "2"),
    ]  # fmt: skip
    (json_code, json_out, json_err), (ckpt_code, ckpt_out, ckpt_err) = map(finish, runs)

    assert json_code == 0, json_err
    report = json.loads(json_out)  # stdout holds the JSON only; "wrote ..." goes to stderr
    assert report["schema"] == "rnnkit.explain/1" and report["passed"] is True
    assert report["model"]["library"] == "torch.nn" and report["model"]["arguments"]["batch_first"] is True
    assert report["packed"]["batch_sizes"] == [3, 3, 2, 2, 1]
    assert report["run"]["input_shape"] == [3, 5, 4]
    for path in (params, gates):
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert f"wrote {path}" in json_err

    assert ckpt_code == 0, ckpt_err
    assert ckpt_out.startswith("rnnkit.LSTM(8, 16, proj_size=4, backend='naive')")
    assert "dims: T=7  B=2  I=8  H=16  P=4" in ckpt_out and "all relations hold" in ckpt_out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lsmt", "--input-size", "3", "--hidden-size", "4"], "invalid choice: 'lsmt'"),
        (["lstm", "--input-size", "3", "--hidden-size", "-4"], "--hidden-size: expected an integer >= 1"),
        (["gru", "--hidden-size", "4"], "explain gru needs --input-size and --hidden-size"),
        ([], "say which module to explain"),
        (["gru", "--input-size", "3", "--hidden-size", "4", "--proj-size", "2"], "only supported by LSTM"),
        (["lstm", "--input-size", "3", "--hidden-size", "4", "--proj-size", "4"], "proj_size must be smaller"),
        (["rnn", "--input-size", "3", "--hidden-size", "4", "--lengths", "9,2", "--seq-len", "5"], "[1, 5]"),
        (["rnn", "--input-size", "3", "--hidden-size", "4", "--lengths", "2,x"], "positive integers separated by"),
        (["rnn", "--input-size", "3", "--hidden-size", "4", "--lengths", "2", "--unbatched"], "leave out --unbatched"),
        (["grucell", "--input-size", "3", "--hidden-size", "4", "--num-layers", "2"], "takes no --num-layers"),
        (["lstm", "--input-size", "3", "--hidden-size", "4", "--plot", "/no/such/dir/p.png"], "cannot write"),
        (["lstm", "--input-size", "3", "--hidden-size", "4", "--gates", "gates.xyz"], "cannot write gates.xyz"),
        (["gru", "--input-size", "3", "--hidden-size", "4", "--peephole"], "peephole is an LSTM keyword"),
        (["lstm", "--input-size", "3", "--hidden-size", "4", "--layer-norm", "--torch"], "leave out --torch"),
        (["lstmcell", "--input-size", "3", "--hidden-size", "4", "--zoneout", "0.1"], "takes no --zoneout"),
        (["gru", "--input-size", "3", "--hidden-size", "4", "--zoneout", "0.1,0.2"], "zoneout should be one"),
        (["rnn", "--input-size", "3", "--hidden-size", "4", "--zoneout", "x"], "expected a probability Z, or ZC,ZH"),
    ],
    ids=["unknown-cell", "negative-size", "no-input-size", "no-cell", "gru-proj", "proj-too-big", "long-lengths",
         "bad-lengths", "unbatched-lengths", "cell-layers", "unwritable", "bad-format", "gru-peephole",
         "torch-variant", "cell-variant", "gru-zoneout-pair", "bad-zoneout"],
)  # fmt: skip
def test_more_bad_arguments_in_process(args, message, capsys) -> None:
    assert main(["explain", *args, "--backend", "naive"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and message in stderr, stderr


def test_checkpoint_errors_in_process(tmp_path, capsys) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save({"step": 3}, tmp_path / "foreign.pt")
    torch.save(nn.Sequential(nn.GRU(3, 4), nn.GRU(4, 4)).state_dict(), tmp_path / "two.pt")
    torch.save(nn.GRU(3, 4).state_dict(), tmp_path / "gru.pt")
    for args, message in [
        (["--checkpoint", str(tmp_path / "none.pt")], "checkpoint not found"),
        (["--checkpoint", str(tmp_path / "corrupt.pt")], "cannot read checkpoint"),
        (["--checkpoint", str(tmp_path / "foreign.pt")], "holds no state dict"),
        (["--checkpoint", str(tmp_path / "two.pt")], "found '0.', '1.'"),
        (["lstm", "--checkpoint", str(tmp_path / "gru.pt")], "holds a GRU, not a lstm"),
        (["--checkpoint", str(tmp_path / "gru.pt"), "--hidden-size", "4"], "leave out --hidden-size"),
    ]:
        assert main(["explain", *args]) == 2
        stderr = capsys.readouterr().err
        assert stderr.count("\n") == 1 and message in stderr, stderr


def test_text_gates_of_a_character_model(tmp_path, capsys) -> None:
    """--text: the gates of a trained char model as it reads the text, one column per character."""
    from rnnkit.data import timemachine
    from rnnkit.train import CharLMConfig, train

    (tmp_path / "text.txt").write_text(timemachine()[:2000])
    config = CharLMConfig(
        text=str(tmp_path / "text.txt"), out_dir=str(tmp_path), epochs=1, batch_size=8, num_steps=10, hidden_size=8
    )
    train(config)
    checkpoint, picture = str(tmp_path / "checkpoint.pt"), tmp_path / "gates.png"
    assert main(["explain", "--checkpoint", checkpoint, "--gates", str(picture), "--text", "time traveller"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["explain", "--checkpoint", checkpoint, "--text", "time"]) == 2
    assert "give --checkpoint PATH and --gates FILE.png too" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", checkpoint, "--gates", str(picture), "--text", ""]) == 2
    assert "holds no characters the model reads" in capsys.readouterr().err


def test_a_variant_and_its_checkpoint(tmp_path, capsys) -> None:
    """The variant flags build rnnkit's variant; a saved variant's layer norm and peepholes come back from its keys."""
    flags = ["--input-size", "3", "--hidden-size", "4", "--layer-norm", "--peephole", "--zoneout", "0.1,0.2"]
    assert main(["explain", "lstm", *flags, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["text"] == "LSTM(3, 4, layer_norm=True, peephole=True, zoneout=(0.1, 0.2))"
    assert report["model"]["arguments"]["zoneout"] == [0.1, 0.2] and report["model"]["arguments"]["peephole"]
    assert all(relation["passed"] for relation in report["relations"])
    assert {"ln_c_bias_l0", "weight_ch_l0"} <= {t["name"] for t in report["parameters"]["tensors"]}
    torch.save(rnnkit.GRU(3, 4, num_layers=2, layer_norm=True).state_dict(), tmp_path / "gru.pt")
    assert main(["explain", "--checkpoint", str(tmp_path / "gru.pt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rnnkit.GRU(3, 4, num_layers=2, layer_norm=True)") and "all relations hold" in out
