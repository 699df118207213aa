"""The training loop: prior batches in, a trained PFN out.

Plain PyTorch in one place, nanoGPT style: AdamW or Muon (:mod:`priorfit.train.optim`), warm-up
and a decay schedule (:mod:`priorfit.train.schedule`), gradient accumulation and clipping, a
precision chosen for the machine (:mod:`priorfit.train.precision`), optional weight averaging,
optional ``torch.compile``, DDP when started by ``torchrun``, periodic validation, a JSONL
metrics log and atomic, exactly resumable checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from priorfit.io import atomic_write
from priorfit.model import PFN, ModelConfig, build_model
from priorfit.priors.base import prior_to_config
from priorfit.train.config import TrainConfig
from priorfit.train.data import (
    BORDER_STREAM,
    PRECISION_STREAM,
    MicroBatch,
    datasets_seen,
    micro_batches,
    sample_micro_batch,
    validation_batches,
)
from priorfit.train.optim import build_optimizers
from priorfit.train.precision import PRECISIONS, choose_precision
from priorfit.train.precision import autocast as precision_autocast
from priorfit.train.schedule import lr_factor
from priorfit.train.warm_start import warm_start, warm_start_record
from priorfit.transforms import fit_transform

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
FINAL_MODEL = "model.safetensors"


def train(
    prior,
    train_config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> PFN:
    """Train a PFN on ``prior``; with ``resume``, continue from ``out_dir``'s checkpoint.

    Started by ``torchrun`` (``WORLD_SIZE > 1``), every process trains on its own share of each
    step's micro-batches and gradients are averaged (DDP). Returns the trained model (eval
    mode) with its card; rank 0 also writes ``out_dir/model.safetensors``.
    """
    train_config = train_config or TrainConfig()
    model_config = model_config or ModelConfig(num_features=prior.num_features)
    if prior.num_features > model_config.num_features:
        raise ValueError(
            f"the prior has {prior.num_features} features but ModelConfig.num_features is "
            f"{model_config.num_features}"
        )
    if train_config.compile and model_config.arch == "cells":
        raise ValueError(
            "compile = true is not supported for the 'cells' architecture: torch.compile fails "
            "inside inductor on its dynamic table shapes (torch 2.13); train it eagerly"
        )
    rank, world_size, local_rank = _init_distributed()
    device = _pick_device(train_config.device, local_rank)
    out_dir = Path(train_config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT
    prior_config = prior_to_config(prior)

    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    model.head.check_prior(prior)
    fit_head(model, prior, train_config)
    resuming = resume and checkpoint_path.exists()
    if resume and not resuming:
        print(f"no checkpoint in {out_dir}; starting from scratch")
    if train_config.init_from and not resuming:
        warm_start(model, train_config.init_from, prior_config)
    model.to(device)
    optimizers = build_optimizers(model, train_config)
    averaged = None
    if train_config.ema_decay > 0:
        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(train_config.ema_decay))
    step, elapsed, precision, timings = 0, 0.0, None, {}
    if resuming:
        step, elapsed, precision, timings = _load_checkpoint(
            checkpoint_path, model, optimizers, averaged, prior_config, model_config
        )
    if precision is None:  # a fresh run (or a checkpoint from before precisions were recorded)
        precision, timings = _resolve_precision(model, prior, train_config, device, rank,
                                                world_size)

    ddp_model = model
    if world_size > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    forward = _compiled(ddp_model) if train_config.compile else ddp_model
    autocast = precision_autocast(precision, device)
    is_main = rank == 0
    val_data = validation_batches(prior, train_config) if is_main else []
    metrics_log = _MetricsLog(out_dir / METRICS, step) if is_main else None

    def save_checkpoint() -> None:
        if is_main:
            _save_checkpoint(checkpoint_path, model, optimizers, averaged, step, elapsed,
                             precision, timings, prior_config, model_config, train_config)

    bar = tqdm(total=train_config.steps, initial=step, disable=not (progress and is_main),
               unit="step", dynamic_ncols=True)
    stream = iter(micro_batches(prior, train_config, step, rank))
    window_start, window_loss, window_steps = time.perf_counter(), 0.0, 0
    validation: dict = {}
    run_start = time.perf_counter() - elapsed
    model.train()
    evaluated = model if averaged is None else averaged.module  # what is validated and saved
    while step < train_config.steps:
        lr = train_config.lr * lr_factor(train_config, step, elapsed)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = lr
        loss_sum = 0.0
        for i in range(train_config.accumulation):
            micro = next(stream).to(device)
            last = i == train_config.accumulation - 1
            sync = nullcontext() if last or world_size == 1 else ddp_model.no_sync()
            with sync:
                with autocast:
                    loss = micro_batch_nll(forward, model, micro).mean()
                (loss / train_config.accumulation).backward()
            loss_sum += loss.item()
        if train_config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        for optimizer in optimizers:
            optimizer.step()
        if averaged is not None:
            averaged.update_parameters(model)
        step += 1
        elapsed = time.perf_counter() - run_start
        window_loss += loss_sum / train_config.accumulation
        window_steps += 1
        bar.update(1)

        if is_main and (step % train_config.log_every == 0 or step == train_config.steps):
            seconds = time.perf_counter() - window_start
            record = {"step": step, "loss": window_loss / window_steps,
                      "lr": lr,
                      "datasets_per_s": (datasets_seen(train_config, step, world_size)
                                         - datasets_seen(train_config, step - window_steps,
                                                         world_size)) / seconds,
                      "elapsed_s": elapsed}
            metrics_log.write(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}",
                            datasets_s=f"{record['datasets_per_s']:.0f}")
            window_start, window_loss, window_steps = time.perf_counter(), 0.0, 0
        if is_main and (step % train_config.val_every == 0 or step == train_config.steps):
            validation = {"step": step, "elapsed_s": elapsed,
                          **validate(evaluated, prior, val_data, device)}
            metrics_log.write(validation)
            model.train()
        out_of_time = _agree(0 < train_config.time_limit_s <= elapsed, world_size, device)
        if step % train_config.checkpoint_every == 0 or step == train_config.steps or out_of_time:
            save_checkpoint()
        if out_of_time:
            break
    bar.close()

    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())  # the averaged weights are the model
    model.eval()
    if is_main and validation.get("step") != step:
        validation = {"step": step, **validate(model, prior, val_data, device)}
    model.card = {
        "prior": prior_config,
        "train": dataclasses.asdict(train_config),
        "steps": step,
        "datasets_seen": datasets_seen(train_config, step, world_size),
        "wall_time_s": round(elapsed, 1),
        "world_size": world_size,
        "precision": precision,
        **({"precision_s_per_pass": timings} if timings else {}),
        "validation": validation,
        **({"warm_start": warm_start_record(train_config.init_from)}
           if train_config.init_from else {}),
    }
    if is_main:
        model.save(out_dir / FINAL_MODEL)
    if world_size > 1:
        dist.barrier()
    return model


def micro_batch_nll(forward, model: PFN, micro: MicroBatch, user_units: bool = False) -> Tensor:
    """Per-point negative log-likelihood ``[B, m]`` of the test points of a micro-batch.

    The data go through the model's transforms exactly as at prediction time. With
    ``user_units`` the density is in the prior's units (comparable to exact posteriors);
    otherwise in the model's (the training loss; they differ by a constant per dataset).
    """
    x, y, n, mask = micro.batch.x, micro.batch.y, micro.num_train, micro.train_mask
    config, head = model.config, model.head
    transform = fit_transform(config.x_transform, config.y_transform, x[:, :n], y[:, :n], mask)
    y_train = transform.y(y[:, :n])
    logits = forward(transform.x(x[:, :n]), y_train, transform.x(x[:, n:]), mask).float()
    if user_units:
        return head.nll(logits, y[:, n:], transform, y[:, :n], mask)
    return head.loss(logits, transform.y(y[:, n:]), y_train, mask)


@torch.no_grad()
def validate(model: PFN, prior, batches: list[MicroBatch], device: torch.device) -> dict:
    """Mean NLL on held-out prior batches and, where the prior has an exact posterior
    (``prior.log_prob(x_train, y_train, x_test, y_test)``), the exact NLL and the gap."""
    if not batches:
        return {}
    model.eval()
    pfn, exact = [], []
    for micro in batches:
        pfn.append(micro_batch_nll(model, model, micro.to(device), user_units=True).mean().item())
        if hasattr(prior, "log_prob"):
            x, y, n = micro.batch.x, micro.batch.y, micro.num_train
            exact.append(-prior.log_prob(x[:, :n], y[:, :n], x[:, n:], y[:, n:]).mean().item())
    result = {"val_nll": sum(pfn) / len(pfn)}
    if exact:
        result["val_exact_nll"] = sum(exact) / len(exact)
        result["val_gap"] = result["val_nll"] - result["val_exact_nll"]
    return result


def fit_head(model: PFN, prior, train_config: TrainConfig) -> None:
    """Check the head against a prior batch, and fit it (e.g. equal-mass bucket borders) to the
    transformed targets of prior test points, ``border_datasets`` datasets of them."""
    config, head = model.config, model.head
    num_batches = math.ceil(train_config.border_datasets / train_config.batch_size)
    targets = []
    for i in range(num_batches if head.fits_to_prior else 1):
        micro = sample_micro_batch(prior, train_config, train_config.seed, BORDER_STREAM, i)
        x, y, n, mask = micro.batch.x, micro.batch.y, micro.num_train, micro.train_mask
        head.check_targets("the prior's targets", y)
        transform = fit_transform(config.x_transform, config.y_transform, x[:, :n], y[:, :n],
                                  mask)
        targets.append(transform.y(y[:, n:]).flatten())
    if head.fits_to_prior:
        head.fit(torch.cat(targets))


def _agree(decision: bool, world_size: int, device: torch.device) -> bool:
    """``decision`` if any rank took it: every process stops at the same step (each reads its
    own clock, and a rank that stopped alone would leave the others waiting forever)."""
    if world_size == 1:
        return decision
    flag = torch.tensor([float(decision)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _compiled(net: torch.nn.Module):
    """``net``'s forward through ``torch.compile`` with dynamic shapes, but for fewer than two
    training points: compiling specialises sizes 0 and 1 and would compile the whole graph
    twice more (about a minute each on one CPU thread) for batches that are rare, so those run
    eagerly."""
    compiled = torch.compile(net, dynamic=True)

    def forward(x_train: Tensor, y_train: Tensor, x_test: Tensor,
                train_mask: Tensor | None = None) -> Tensor:
        return (compiled if x_train.shape[1] >= 2 else net)(x_train, y_train, x_test, train_mask)

    return forward


def _init_distributed() -> tuple[int, int, int]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def _resolve_precision(model, prior, train_config, device, rank, world_size):
    """The training precision (``"auto"`` measured on a probe micro-batch training never sees)
    and its timings; under ``torchrun`` every rank takes rank 0's choice."""
    probe = sample_micro_batch(prior, train_config, train_config.seed, PRECISION_STREAM, 0)
    probe = probe.to(device)
    if rank == 0:
        precision, timings = choose_precision(
            train_config.precision, model, device,
            lambda trial: micro_batch_nll(trial, trial, probe).mean(),
        )
    else:
        precision, timings = "float32", {}
    if world_size > 1:
        choice = torch.tensor([PRECISIONS.index(precision)], device=device)
        dist.broadcast(choice, src=0)
        precision = PRECISIONS[int(choice.item())]
    return precision, timings


def _save_checkpoint(path, model, optimizers, averaged, step, elapsed, precision, timings,
                     prior_config, model_config, train_config) -> None:
    state = {
        "model": model.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in optimizers],
        "averaged": None if averaged is None else averaged.state_dict(),
        "step": step,
        "elapsed_s": elapsed,
        "precision": precision,
        "precision_s_per_pass": timings,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "prior": json.dumps(prior_config),
        "model_config": json.dumps(dataclasses.asdict(model_config)),
        "train_config": json.dumps(dataclasses.asdict(train_config)),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path, model, optimizers, averaged, prior_config, model_config):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise ValueError(
            f"checkpoint {path} is unreadable ({error}); delete it to restart"
        ) from None
    if json.loads(state["prior"]) != prior_config:
        raise ValueError(f"checkpoint {path} was trained on a different prior; use a new out_dir")
    if json.loads(state["model_config"]) != dataclasses.asdict(model_config):
        raise ValueError(f"checkpoint {path} has a different model config; use a new out_dir")
    model.load_state_dict(state["model"])
    if "optimizers" not in state or len(state["optimizers"]) != len(optimizers):
        raise ValueError(f"checkpoint {path} was written with another optimizer; use a new out_dir")
    for optimizer, optimizer_state in zip(optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(optimizer_state)
    if averaged is not None:
        if state.get("averaged") is None:
            raise ValueError(f"checkpoint {path} has no averaged weights; use a new out_dir")
        averaged.load_state_dict(state["averaged"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return (state["step"], state["elapsed_s"], state.get("precision"),
            state.get("precision_s_per_pass", {}))


class _MetricsLog:
    """Appends one JSON object per line to ``path``, which starts with the records of an earlier
    run up to ``step`` (the step a resumed run continues from; 0 for a fresh run): a resumed run
    does not repeat the records it rewrites, and a fresh one starts an empty log."""

    def __init__(self, path: Path, step: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        if path.exists():
            lines = path.read_text().splitlines() if step > 0 else []
            path.write_text("".join(f"{line}\n" for line in lines if _step_of(line) <= step))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _step_of(line: str) -> float:
    """The step of a metrics record; infinite for a line a killed run left half-written."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf
