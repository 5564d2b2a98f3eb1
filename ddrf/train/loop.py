"""The training loop: AdamW + warm-up/cosine LR, gradient clipping, EMA, CUDA mixed precision, DDP, checkpoints.

Determinism: every step re-derives its RNGs (batch sampler, timesteps/noise, dropout) from (seed, step, rank), so a
run stopped at any checkpoint and resumed continues exactly as if it had never stopped, and DDP ranks draw
different batches without any shared sampler state.

Over 300 lines on purpose: the Trainer's stages (step, EMA, checkpoint, resume, logging) share one state object and
read best together; the pieces that stand alone (datasets, sources, diffusion, checkpoints) have their own files.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import yaml

from ddrf.card import CALIBRATION_FIELDS, ModelCard
from ddrf.model import DDRFConfig
from ddrf.files import write_text_atomic
from ddrf.model_dir import CARD_NAME
from ddrf.schedule import CosineSchedule
from ddrf.train import checkpoint as ckpt
from ddrf.train.config import TrainConfig
from ddrf.train.datasets import draw_batch
from ddrf.train.diffusion import Diffusion
from ddrf.train.sources import SourceInfo, build_source

LOG = "train_log.csv"
CONFIG = "config.yaml"
RUN_FILES = (ckpt.WEIGHTS, CARD_NAME, ckpt.RESUME, LOG, CONFIG)


@dataclass
class TrainResult:
    run_dir: Path
    start_step: int
    end_step: int
    losses: list[float] = field(default_factory=list)  # this rank's per-step losses, start_step+1 .. end_step
    seconds: float = 0.0


class EMA:
    """Exponential moving average of the weights (float32 shadow), a plain copy before `start`."""

    def __init__(self, model: torch.nn.Module, decay: float, start: int = 0):
        self.decay, self.start = decay, start
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = self.decay if step >= self.start else 0.0
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(decay).add_(v.detach().float(), alpha=1 - decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: nccl on CUDA, gloo on CPU."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("optim.device=cuda but no CUDA device is available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local, dev)


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] % (2**63))


def lr_lambda(warmup: int, total: int, min_ratio: float):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def model_config(cfg: TrainConfig, ms_bands: int, guide_bands: int) -> DDRFConfig:
    base = getattr(DDRFConfig, cfg.model.preset)(ms_bands, guide_bands).to_dict()
    return DDRFConfig.from_dict({**base, **cfg.model.overrides, "ms_bands": ms_bands, "guide_bands": guide_bands})


def residual_scale(source: Any, cfg: TrainConfig) -> float:
    """1 / std of HRMS - LMS over `scale_patches` patches drawn with their own seeded generator (same every run
    and resume): brings the diffused residual to unit variance beside unit noise."""
    rng = np.random.default_rng([cfg.optim.seed, 0x5CA1E])
    batch = draw_batch(source, rng, cfg.diffusion.scale_patches)
    std = float((batch["gt"] - batch["lms"]).double().std())
    if not std > 0:
        raise ValueError("diffusion.residual_scale=auto: the training residual HRMS - LMS is constant")
    return 1.0 / std


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse to clobber a run: an existing non-empty directory needs --resume or --overwrite, and --overwrite,
    which clears it, may not take an input from it (the config, the init weights, a teacher, the scenes). Changes
    nothing: the run directory is cleared only once the run has started well (`clear_run_dir`)."""
    existing = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not (run_dir / ckpt.RESUME).is_file():
            raise ValueError(f"{run_dir}: nothing to resume (no {ckpt.RESUME})")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a directory")
    if existing and not overwrite:
        raise ValueError(f"{run_dir}: run directory exists and is not empty; use --resume or --overwrite")
    if existing:
        inside = next((p for p in map(Path, inputs) if run_dir.resolve() in (p.resolve(), *p.resolve().parents)),
                      None)
        if inside is not None:
            raise ValueError(f"{inside}: an input of this run lies in {run_dir}, which --overwrite clears; move it "
                             f"out, or write the run elsewhere")


def clear_run_dir(run_dir: Path) -> None:
    """A fresh run's directory: made, and an earlier run's files removed (--overwrite was checked)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


# optimiser settings a resumed run takes from its saved optimiser state, not from the config: a change would be
# recorded in config.yaml and the card but not used
RESTORED_OPTIM = {"lr", "weight_decay", "betas"}


def _check_resume_config(run_dir: Path, cfg: TrainConfig) -> None:
    saved = yaml.safe_load((run_dir / CONFIG).read_text()) if (run_dir / CONFIG).is_file() else None
    if saved is None:
        return
    saved = TrainConfig.from_dict(saved, str(run_dir / CONFIG)).to_dict()  # keys added since: their defaults
    for section in ("data", "model", "diffusion", "optim"):
        old, new = saved[section], cfg.to_dict()[section]
        differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                           and not (k == "source" and _same_files(old.get(k), new.get(k)))
                           and (section != "optim" or k in RESTORED_OPTIM))
        if differing:
            raise ValueError(f"{run_dir / CONFIG}: {section}.{', '.join(differing)} differs from the run being resumed"
                             + (" (the optimiser's saved state keeps its own; to change it, start a new run with "
                                "model.init=RUN)" if section == "optim" else ""))


def _same_files(old: object, new: object) -> bool:
    """Two data.source strings naming the same files (a relative and an absolute path to one folder)."""
    from ddrf.train.sources import parse_source

    try:
        (kind_a, paths_a), (kind_b, paths_b) = parse_source(str(old)), parse_source(str(new))
    except ValueError:
        return False
    return kind_a == kind_b and [p.resolve() for p in paths_a] == [p.resolve() for p in paths_b]


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, dist: Dist, command: str | None):
        self.cfg, self.run_dir, self.dist, self.command = cfg, run_dir, dist, command
        probe = model_config(cfg, 1, 1)  # the size multiple depends only on the topology
        self.source, self.info = build_source(cfg.data, probe.multiple)
        for line in self.info.warnings:  # as ddrf-run says them, once
            self._say(line)
        self.model_cfg = model_config(cfg, self.source.ms_bands, self.source.guide_bands)
        from ddrf.model import DDRF

        torch.manual_seed(cfg.optim.seed)  # identical initial weights on every rank
        self.model = DDRF(self.model_cfg).to(dist.device)
        self.ema = EMA(self.model, cfg.optim.ema_decay, cfg.optim.ema_start)
        d = cfg.diffusion
        init_scale = self._warm_start(cfg.model.init) if cfg.model.init else None
        scale = float(d.residual_scale) if d.residual_scale != "auto" else (
            init_scale if init_scale is not None else residual_scale(self.source, cfg))
        if init_scale is not None and scale != init_scale:
            # warm start into another residual scale: the same prediction in the new units, so sampling from pure
            # noise (one step) starts where the init was, and training teaches the steps in between
            self.model.scale_prediction(scale / init_scale)
            self.ema.load_state_dict(self.model.state_dict())
        self.diffusion = Diffusion(CosineSchedule(d.num_timesteps, d.s), d.target, d.residual, scale)
        o = cfg.optim
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                     betas=(o.betas[0], o.betas[1]))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(o.warmup, o.steps, o.min_lr_ratio))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.net: torch.nn.Module = self.model
        if dist.world > 1:
            ids = [dist.local_rank] if dist.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.optim.batch % dist.world:
            raise ValueError(f"optim.batch {cfg.optim.batch} is not divisible by {dist.world} DDP ranks")
        self.batch = cfg.optim.batch // dist.world
        self.step = 0

    def _warm_start(self, init: str) -> float | None:
        """Load `init`'s EMA weights into the model and the EMA; return its residual scale (None if unscaled)."""
        model_state, ema_state, card = ckpt.read_weights(init)
        theirs, ours = DDRFConfig.from_dict(card.model).to_dict(), self.model_cfg.to_dict()  # defaults filled in
        differing = sorted(k for k in ours if theirs.get(k) != ours[k])
        if differing:
            raise ValueError(f"{init}: model.init has a different topology ({', '.join(differing)})")
        state = ema_state or model_state  # an inference checkpoint holds one set
        self.model.load_state_dict(state)
        self.ema.load_state_dict(state)
        return card.residual_scale if card.residual else None

    def _amp_dtype(self) -> torch.dtype | None:
        p = self.cfg.optim.precision
        if p == "fp32":
            return None
        if self.dist.device.type != "cuda":
            self._say(f"optim.precision={p} needs CUDA; training in fp32 on {self.dist.device}")
            return None
        return torch.bfloat16 if p == "bf16" else torch.float16

    def _say(self, msg: str) -> None:
        if self.dist.main:
            print(msg, file=sys.stderr)

    def train_step(self) -> float:
        seed = step_seed(self.cfg.optim.seed, self.step, self.dist.rank)
        torch.manual_seed(seed)  # dropout
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        drawn = draw_batch(self.source, rng, self.batch)
        batch = {k: v.to(self.dist.device, non_blocking=True) for k, v in drawn.items()}
        self.net.train()
        autocast = torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        loss = self.diffusion.loss(self.net, batch, gen, autocast)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.step += 1
        self.ema.update(self.model, self.step)
        return float(loss.detach())

    def card(self) -> ModelCard:
        info: SourceInfo = self.info
        d = self.cfg.diffusion
        training = {**info.provenance, "iterations": self.step, "seed": self.cfg.optim.seed,
                    "config": self.cfg.to_dict(), "command": self.command, "world_size": self.dist.world,
                    "ema_decay": self.cfg.optim.ema_decay, "torch": torch.__version__}
        serving = self.cfg.model.serving
        if any(name in serving for name in CALIBRATION_FIELDS):
            training["spread_calibration"] = "inherited from the base model (seeds and views), not refitted"
        return ModelCard(model=self.model_cfg.to_dict(), bands=info.band_names, guide_bands=info.guide_names,
                         ratio=info.ratio, sensor=info.sensor, normalisation=info.normalisation,
                         schedule=self.diffusion.schedule.to_dict(), target=d.target, residual=d.residual,
                         residual_scale=self.diffusion.residual_scale, sampling_steps=d.sampling_steps,
                         lms_border=self.cfg.data.lms_border, band_wise=self.cfg.data.band_wise, training=training,
                         **copy.deepcopy(serving))

    def save(self) -> None:
        if not self.dist.main:
            return
        ckpt.save_weights(self.run_dir, self.model.state_dict(), self.ema.state_dict(), self.card())
        ckpt.save_resume(self.run_dir, {
            "step": self.step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": ckpt.rng_states(),
            "sampler": {"kind": "per-step", "seed": self.cfg.optim.seed, "world_size": self.dist.world}})

    def restore(self) -> None:
        model_state, ema_state, _ = ckpt.read_weights(self.run_dir)
        state = ckpt.load_resume(self.run_dir)
        self.model.load_state_dict(model_state)
        self.ema.load_state_dict(ema_state)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_states(state["rng"])
        self.step = int(state["step"])


class CsvLog:
    """step, loss (mean since the previous row, over ranks), lr, time (seconds since the run started)."""

    def __init__(self, path: Path, keep_until: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        rows = []
        if path.is_file():  # on resume, drop rows written after the checkpoint we continue from
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        self.t0 = float(rows[-1]["time"]) if rows else 0.0
        text = "step,loss,lr,time\n" + "".join(f"{r['step']},{r['loss']},{r['lr']},{r['time']}\n" for r in rows)
        write_text_atomic(path, text)

    def write(self, step: int, loss: float, lr: float, seconds: float) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(f"{step},{loss:.6f},{lr:.6e},{self.t0 + seconds:.2f}\n")


def _mean_over_ranks(values: list[float], dist: Dist) -> float:
    mean = float(np.mean(values)) if values else float("nan")
    if dist.world > 1:
        t = torch.tensor([mean], dtype=torch.float64, device=dist.device)
        torch.distributed.all_reduce(t)
        mean = float(t.item()) / dist.world
    return mean


def _tensorboard(run_dir: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("log.tensorboard: tensorboard is not installed; logging to CSV only", file=sys.stderr)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False,
          command: str | None = None, stop_at: int | None = None, inputs: Sequence[str | Path] = ()) -> TrainResult:
    """Train (or resume) into `run_dir`; `stop_at` ends this invocation early at that step (as an interruption).
    `inputs`: the caller's input files and folders besides the config's init and teacher (the config file, the
    scenes), which --overwrite may not clear."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if cfg.optim.threads:
        torch.set_num_threads(cfg.optim.threads)
    dist = setup_distributed(cfg.optim.device)
    error = None
    if dist.main:
        try:
            check_run_dir(run_dir, resume, overwrite,
                          [*inputs, *(p for p in (cfg.model.init, cfg.data.teacher) if p)])
            if resume:
                _check_resume_config(run_dir, cfg)
        except ValueError as exc:
            error = str(exc)
    if dist.world > 1:  # every rank must stop on rank 0's refusal, not wait for it
        box = [error]
        torch.distributed.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise ValueError(error)
    trainer = Trainer(cfg, run_dir, dist, command)  # the data, the init and the options checked: now clear
    if resume:
        trainer.restore()
        if stop_at is not None and stop_at <= trainer.step:  # nothing would run, yet config.yaml would change
            raise ValueError(f"--stop-at {stop_at}: the run in {run_dir} is already at step {trainer.step}; give a "
                             f"later step")
    elif dist.main:
        clear_run_dir(run_dir)
    if dist.main:
        write_text_atomic(run_dir / CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return _run(trainer, min(cfg.optim.steps, stop_at or cfg.optim.steps))


def _run(tr: Trainer, end: int) -> TrainResult:
    cfg, dist = tr.cfg, tr.dist
    result = TrainResult(tr.run_dir, tr.step, tr.step)
    log = CsvLog(tr.run_dir / LOG, tr.step, dist.main)
    tb = _tensorboard(tr.run_dir, cfg.log.tensorboard and dist.main)
    bar = None
    if cfg.log.progress and dist.main:
        from tqdm import tqdm

        bar = tqdm(total=end, initial=tr.step, desc="train", dynamic_ncols=True)
    t0, window = time.perf_counter(), []
    budget = cfg.optim.max_minutes * 60 if cfg.optim.max_minutes else None
    while tr.step < end:
        lr = tr.opt.param_groups[0]["lr"]
        loss = tr.train_step()
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {tr.step}; lower the learning rate (optim.lr, "
                                     "ddrf-finetune --lr) or check the data")
        result.losses.append(loss)
        window.append(loss)
        if bar is not None:
            bar.update(1)
        out_of_time = budget is not None and time.perf_counter() - t0 >= budget
        if dist.world > 1 and budget is not None:  # every rank stops at rank 0's clock, or DDP would hang
            flag = torch.tensor([float(out_of_time)], device=dist.device)
            torch.distributed.broadcast(flag, src=0)
            out_of_time = bool(flag.item())
        last = tr.step == end or out_of_time
        if tr.step % cfg.log.every == 0 or last:
            mean = _mean_over_ranks(window, dist)
            window = []
            log.write(tr.step, mean, lr, time.perf_counter() - t0)
            if bar is not None:
                bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
            if tb is not None:
                tb.add_scalar("loss", mean, tr.step)
                tb.add_scalar("lr", lr, tr.step)
        if tr.step % cfg.log.checkpoint_every == 0 or last:
            tr.save()
            if dist.world > 1:
                torch.distributed.barrier()
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    if tb is not None:
        tb.close()
    result.end_step, result.seconds = tr.step, time.perf_counter() - t0
    return result


def cleanup_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


__all__ = ["EMA", "TrainResult", "Trainer", "train", "model_config", "check_run_dir", "clear_run_dir",
           "cleanup_distributed", "lr_lambda", "step_seed"]
