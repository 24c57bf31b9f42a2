"""rnnkit.data: the shipped corpus, tokenisers, partitioning, batches sharded over processes, the loaders."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from rnnkit.data import (
    DataError,
    Vocab,
    idx,
    load,
    random_windows,
    read_text,
    sequential_windows,
    shuffled,
    split_tail,
    timemachine,
)

from .utils import idx_bytes, write_idx_images


def test_timemachine_is_shipped_without_its_source_line():
    text = timemachine()
    assert text.startswith("The Time Machine, by H. G. Wells [1898]\n")
    assert text.rstrip().endswith("in the heart\nof man.")


def test_letters_is_d2l_tokenisation():
    """d2l: non-letters become one space, lowercase; 28 tokens; The Time Machine is 173,428 tokens."""
    vocab = Vocab.build(timemachine(), "letters")
    assert len(vocab) == 28 and vocab.tokens[:3] == ("<unk>", " ", "a")
    ids = vocab.encode(timemachine())
    assert len(ids) == 173_428
    assert vocab.decode(ids[:24]) == "the time machine by h g "
    assert vocab.encode("Hi, 42!").tolist() == vocab.encode("hi ").tolist()


def test_chars_keeps_every_character_and_maps_unknown_to_unk():
    vocab = Vocab.build("abca\n", "chars")
    assert vocab.tokens == ("<unk>", "\n", "a", "b", "c")
    assert vocab.encode("abz").tolist() == [2, 3, 0]
    assert vocab.decode(vocab.encode("cab\n")) == "cab\n"


def test_read_text_bad_files(tmp_path):
    (tmp_path / "empty.txt").write_text(" \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="does not exist"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="is empty"):
        read_text(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="not UTF-8: byte 0xe9 at offset 3"):
        read_text(tmp_path / "latin1.txt")
    with pytest.raises(DataError, match="is a directory"):
        read_text(tmp_path)


def test_split_tail_holds_out_the_end():
    head, tail = split_tail(torch.arange(100), 0.1)
    assert head.tolist() == list(range(90)) and tail.tolist() == list(range(90, 100))


def test_random_windows_are_d2l_subsequences():
    ids = torch.arange(1000)
    batches = random_windows(ids, 8, 10, seed=0, epoch=0)
    starts = []
    for x, y in batches:
        assert x.shape == y.shape == (8, 10)
        assert torch.equal(y, x + 1)  # targets: the next token
        assert torch.equal(x, x[:, :1] + torch.arange(10))  # contiguous windows
        starts += x[:, 0].tolist()
    offsets = {s % 10 for s in starts}
    assert len(offsets) == 1 and len(set(starts)) == len(starts)  # one offset, no window twice
    assert len(batches) == (1000 - offsets.pop() - 1) // 10 // 8


def test_sequential_windows_continue_each_row():
    ids = torch.arange(1000)
    batches = list(sequential_windows(ids, 4, 10, seed=0, epoch=0))
    for (x0, y0), (x1, _) in itertools.pairwise(batches):
        assert x0.shape == (4, 10) and torch.equal(y0, x0 + 1)
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # row b goes on where it stopped


def test_epochs_cut_the_text_differently_and_seeds_repeat():
    first = [x for x, _ in random_windows(torch.arange(1000), 8, 10, seed=0, epoch=0)]
    again = [x for x, _ in random_windows(torch.arange(1000), 8, 10, seed=0, epoch=0)]
    other = [x for x, _ in random_windows(torch.arange(1000), 8, 10, seed=0, epoch=1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("batcher", ["random", "sequential", "shuffled"])
def test_two_processes_share_the_single_process_batches(batcher):
    """The rows of rank 0 and rank 1 together are the batch of a single process (same seed and epoch)."""
    ids = torch.arange(1003)

    def batches(rank: int, world: int) -> list[torch.Tensor]:
        if batcher == "shuffled":
            return [x for x, _ in shuffled(ids, ids, 8, seed=3, epoch=2, rank=rank, world=world)][:-1]
        make = random_windows if batcher == "random" else sequential_windows
        return [x for x, _ in make(ids, 8, 10, seed=3, epoch=2, rank=rank, world=world)]

    single, rank0, rank1 = batches(0, 1), batches(0, 2), batches(1, 2)
    assert len(single) == len(rank0) == len(rank1) > 0
    for whole, a, b in zip(single, rank0, rank1):
        assert len(a) == len(b) == len(whole) // 2
        assert sorted(torch.cat([a, b]).tolist()) == sorted(whole.tolist())


def test_digits_and_mnist1d_shapes():
    digits = load("digits")
    assert digits.x_train.shape == (1437, 8, 8) and digits.x_test.shape == (360, 8, 8) and digits.classes == 10
    assert digits.x_train.min() >= 0 and digits.x_train.max() <= 1
    mnist1d = load("mnist1d")
    assert mnist1d.x_train.shape == (4000, 40, 1) and mnist1d.x_test.shape == (1000, 40, 1)
    assert mnist1d.y_train.dtype == torch.int64 and mnist1d.classes == 10


def test_mnist1d_leaves_the_global_generators_alone():
    import random

    import numpy as np

    np.random.seed(123)
    random.seed(123)
    load("mnist1d")
    assert np.random.randint(1 << 30) == np.random.RandomState(123).randint(1 << 30)
    assert random.random() == random.Random(123).random()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_from_local_idx_files(tmp_path, gz):
    write_idx_images(tmp_path, images=3, gz=gz)
    mnist = load("mnist", tmp_path)
    assert mnist.x_train.shape == (3, 28, 28) and mnist.x_test.shape == (2, 28, 28)
    assert mnist.x_train.min() == -1 and mnist.x_train.max() == 1  # 0..255 to [-1, 1]
    assert mnist.y_train.tolist() == [0, 1, 2]


def test_mnist_in_torchvision_layout(tmp_path):
    write_idx_images(tmp_path / "MNIST" / "raw", images=3, gz=True)
    assert load("mnist", tmp_path).x_train.shape == (3, 28, 28)


def test_mnist_missing_names_the_files_and_never_downloads(tmp_path):
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[.gz\].*does not download"):
        load("mnist", tmp_path)
    with pytest.raises(DataError, match="needs --data-dir"):
        load("mnist")


def test_fashion_mnist_from_a_given_folder_in_either_layout(tmp_path):
    write_idx_images(tmp_path / "flat", images=3, gz=True)
    write_idx_images(tmp_path / "tv" / "FashionMNIST" / "raw", images=4, gz=False)
    fashion = load("fashion-mnist", tmp_path / "flat")
    assert fashion.name == "fashion-mnist" and fashion.x_train.shape == (3, 28, 28) and fashion.classes == 10
    assert load("fashion-mnist", tmp_path / "tv").x_train.shape == (4, 28, 28)


def test_fashion_mnist_missing_names_the_debian_package(tmp_path, monkeypatch):
    source = idx.SOURCES["fashion-mnist"]
    monkeypatch.setitem(idx.SOURCES, "fashion-mnist", dataclasses.replace(source, default_dir=tmp_path / "none"))
    expected = r"Fashion-MNIST not found in .*none: missing .*apt-get install dataset-fashion-mnist"
    with pytest.raises(DataError, match=expected):
        load("fashion-mnist")


@pytest.mark.skipif(
    not idx.SOURCES["fashion-mnist"].default_dir.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_real_files():
    fashion = load("fashion-mnist")
    assert fashion.x_train.shape == (60000, 28, 28) and fashion.x_test.shape == (10000, 28, 28)
    assert fashion.x_train.min() == -1 and fashion.x_train.max() == 1
    # both splits are balanced: 6000 and 1000 images of each of the 10 classes
    assert torch.bincount(fashion.y_train).tolist() == [6000] * 10
    assert torch.bincount(fashion.y_test).tolist() == [1000] * 10


def test_idx_bad_files(tmp_path):
    (tmp_path / "short").write_bytes(idx_bytes((3, 2), b"\0" * 5))
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(DataError, match=r"holds 5 bytes of data, its header \(3, 2\) says 6"):
        idx.read(tmp_path / "short")
    with pytest.raises(DataError, match="not an IDX file"):
        idx.read(tmp_path / "text")


def test_unknown_data_set():
    expected = "unknown data set 'imagenet', expected one of digits, mnist1d, mnist, fashion-mnist"
    with pytest.raises(DataError, match=expected):
        load("imagenet")
