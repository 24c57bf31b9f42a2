"""The training loop, one for both tasks.

Per epoch: a progress bar, one log line, one line of metrics.jsonl and a checkpoint
(atomic); at the end the PNG curves (and the task's own figures). Under torchrun every
process runs this loop on its share of each batch; process 0 alone prints and writes.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint, distributed, plots
from .charlm import CharLMTask
from .classify import ClassifyTask
from .config import TrainConfig, check, variant_args
from .errors import ConfigError, TrainingDiverged
from .models import MODELS


def make_task(config: TrainConfig) -> CharLMTask | ClassifyTask:
    """The task of ``config``, its data loaded."""
    return CharLMTask(config) if config.task == "charlm" else ClassifyTask(config)


def train(config: TrainConfig) -> list[dict[str, float]]:
    """Train ``config``'s task, from scratch or from ``config.resume``; returns the metrics of every epoch
    (on process 0 with held-out metrics; the other processes of a torchrun leave those out).

    Raises ConfigError, DataError or CheckpointError before anything is written, and
    TrainingDiverged when the loss or gradient stops being finite.
    """
    check(config)
    out_dir = writable(Path(config.out_dir))
    resumed = checkpoint.load(config.resume) if config.resume else None
    task = make_task(config)
    vocab = getattr(task, "vocab", None)
    if resumed:
        checkpoint.check_resumable(resumed, config.resume, config, task.model_args, vocab)

    with distributed.session(config.device) as process:
        if config.batch_size % process.world:
            raise ConfigError(
                f"--batch-size must be a multiple of the {process.world} processes, got {config.batch_size}"
            )
        torch.manual_seed(config.seed)
        model = MODELS[task.name](**task.model_args, backend=config.backend).to(process.device)
        optimizer = _optimizer(config, model)
        schedule = _schedule(config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        torch.manual_seed(config.seed + process.rank)  # dropout: one stream of masks per process
        history: list[dict[str, Any]] = []
        if resumed:
            checkpoint.restore(resumed, config.resume, model=model, optimizer=optimizer, scheduler=scheduler)
            history = list(resumed["history"])
            _set_rng(resumed["rng"], process)
            # the optimizer comes back with the rate of the run it left, whose --epochs may differ
            for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base_lr * schedule(len(history))
        net = process.wrap(model)
        path, metrics_path = out_dir / "checkpoint.pt", out_dir / "metrics.jsonl"
        last_good = config.resume
        if process.main:
            metrics_path.write_text("".join(json.dumps(m) + "\n" for m in history))
            parameters = sum(p.numel() for p in model.parameters())
            variant = "".join(f" {k}={v}" for k, v in variant_args(config).items())
            print(
                f"{config.task}: {task.describe()}; {config.cell} {config.num_layers}x{config.hidden_size}{variant}, "
                f"{parameters:,} parameters; {config.optimizer} lr {config.lr:g}, batch {config.batch_size}; "
                f"{process.world} process{'es' if process.world > 1 else ''} on {process.device}, "
                f"backend {config.backend}"
            )

        for epoch in range(len(history), config.epochs):
            net.train()
            bar = tqdm(
                task.batches(epoch, process.rank, process.world),
                desc=f"epoch {epoch + 1}/{config.epochs}",
                leave=False,
                unit="batch",
                disable=None if config.progress and process.main else True,  # None: only on a terminal
            )
            totals = torch.zeros(3, dtype=torch.float64)  # loss sum, tokens or samples, correct
            lr = optimizer.param_groups[0]["lr"]
            state = None
            start = time.perf_counter()
            for step, (x, y) in enumerate(bar, 1):
                loss, stats, state = task.forward(net, x.to(process.device), y.to(process.device), state)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # the norm is of the gradients averaged over processes, so all of them stop together
                norm = float(nn.utils.clip_grad_norm_(model.parameters(), config.clip or math.inf))
                if not (math.isfinite(norm) and math.isfinite(stats[0])):
                    kept = (
                        f"the last good checkpoint is {last_good} (epoch {len(history)})"
                        if last_good
                        else "no checkpoint was written yet"
                    )
                    raise TrainingDiverged(
                        f"the loss became {loss.item()} (gradient norm {norm}) at epoch {epoch + 1}, step {step}; "
                        f"stopped before that step, {kept}; try a lower --lr or --clip 1"
                    )
                optimizer.step()
                totals += stats
                bar.set_postfix_str(_postfix(task, totals, time.perf_counter() - start), refresh=False)
            seconds = time.perf_counter() - start
            scheduler.step()
            totals = process.sum(totals)
            metrics = {"epoch": epoch + 1, **task.summary("train", totals)}
            if process.main and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                model.eval()
                metrics.update(task.evaluate(model, process.device))
            metrics.update(
                {"lr": lr, "seconds": round(seconds, 3), f"{task.unit}_per_s": round(float(totals[1]) / seconds)}
            )
            history.append(metrics)
            rng = _rng_states(process)
            if process.main:
                if (epoch + 1) % config.log_every == 0 or epoch + 1 == config.epochs:
                    print(_line(task, metrics, config.epochs))
                with metrics_path.open("a") as file:
                    file.write(json.dumps(metrics) + "\n")
                state_dicts = checkpoint.state(
                    config, task.model_args, vocab, model, optimizer, scheduler, rng, history
                )
                checkpoint.save(path, state_dicts)
                last_good = str(path)

        if process.main:
            model.eval()
            plots.curves(history, task.metric, task.held_out, out_dir / "curves.png")
            written = [path, metrics_path, out_dir / "curves.png", *task.figures(model, process.device, out_dir)]
            print("wrote " + ", ".join(map(str, written)))
    return history


def writable(folder: Path) -> Path:
    """``folder``, created if need be, once a file could be written in it; ConfigError if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"cannot write to --out-dir {folder}: {error.strerror or error}") from None
    return folder


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _schedule(config: TrainConfig) -> Callable[[int], float]:
    """Epoch -> factor of the learning rate."""
    if config.schedule == "cosine":
        return lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
    return lambda epoch: 1.0


def _rng_states(process: distributed.Process) -> list[dict[str, Any]]:
    """Every process's random generator states, by rank: {"torch": CPU state, "cuda": CUDA state or None}."""
    torch_states = process.gather(torch.get_rng_state())
    if process.device.type != "cuda":
        return [{"torch": state, "cuda": None} for state in torch_states]
    cuda_states = process.gather(torch.cuda.get_rng_state(process.device))
    return [{"torch": t, "cuda": c} for t, c in zip(torch_states, cuda_states, strict=True)]


def _set_rng(states: list[dict[str, Any]], process: distributed.Process) -> None:
    # a run resumed with another number of processes keeps the fresh streams seeded above
    if len(states) == process.world:
        torch.set_rng_state(states[process.rank]["torch"])
        if process.device.type == "cuda" and states[process.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(states[process.rank]["cuda"], process.device)


def _rate(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def _shown(task: CharLMTask | ClassifyTask, value: float) -> str:
    return f"{value:.2f}" if task.metric == "ppl" else f"{100 * value:.2f}%"


def _postfix(task: CharLMTask | ClassifyTask, totals: torch.Tensor, seconds: float) -> str:
    summary = task.summary("train", totals)
    value = _shown(task, summary[f"train_{task.metric}"])
    return f"loss {summary['train_loss']:.4f} {task.metric} {value} {_rate(float(totals[1]) / seconds)} {task.unit}/s"


def _line(task: CharLMTask | ClassifyTask, metrics: dict[str, float], epochs: int) -> str:
    """The fixed-format log line of an epoch."""
    parts = [f"epoch {metrics['epoch']:>{len(str(epochs))}}/{epochs}"]
    for split in ("train", task.held_out):
        if f"{split}_loss" in metrics:
            value = _shown(task, metrics[f"{split}_{task.metric}"])
            parts.append(f"{split} loss {metrics[f'{split}_loss']:.4f} {task.metric} {value}")
    parts.append(f"{_rate(metrics[f'{task.unit}_per_s'])} {task.unit}/s, {metrics['seconds']:.1f} s")
    return " | ".join(parts)
