"""One sampler step of a v1 network in three stages, each tiled with the halo of its own receptive field.

With the scene's statistics replayed (ddrf.model.scene) a v1 network is a local operator, but its deep levels see
far: a window must carry a 96-pixel halo for the ratio-2 default to reproduce one window over the whole scene. Split
at level `split` (resolution 1 / 2^split), the network becomes
  1. the shallow encoder (levels < split) in full-resolution windows: the input of level `split`, kept per window;
  2. the deep levels (>= split, the middle block, and the decoder back to level `split`) over that map at
     1 / 2^split resolution, in windows of their own;
  3. the shallow encoder again (its skips are too large to keep) and the shallow decoder in full-resolution windows,
     reading stage 2's map.
Each stage reproduces the whole-scene network wherever its halo covers what its own levels see: for the ratio-2
default 16 full-resolution pixels for stages 1 and 3 and 32 pixels at level 2 for stage 2
(`benchmarks/staged_execution.py`). The stages tiled over a scene: `ddrf.train.tiled.staged_prediction` (torch) and
`ddrf.scenes.staged` (the exported graphs, in ddrf-run).

Stages call the network's modules in another order than the recording, so the tape replays by module
(`SceneTape.seek_by_owner`); one step only (each module recorded once).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import pool_to_level
from .scene import REPLAY
from .unet import DDRF, DecoderBlock, EncoderBlock


def check_stageable(model: DDRF, split: int) -> None:
    cfg = model.config
    if cfg.arch != "v1" or cfg.space_to_depth != 1:
        raise ValueError(f"staged execution is for v1 networks without a fold, not arch {cfg.arch} with "
                         f"space_to_depth {cfg.space_to_depth}")
    if not 1 <= split < cfg.levels:
        raise ValueError(f"split must be a level between 1 and {cfg.levels - 1}, got {split}")


def owner_starts(model: DDRF, stats: Tensor, tokens: Tensor) -> dict[int, int]:
    """Where each module's recorded values start on the tape: one replay in call order over the smallest window."""
    tape, side = model.scene_tape, model.config.multiple
    tape.replay(stats, tokens)
    tape.log_starts()
    try:
        x = stats.new_zeros(1, model.config.ms_bands, side, side)
        guide = stats.new_zeros(1, model.config.guide_bands, side, side)
        with torch.no_grad():
            model.denoise(x, stats.new_zeros(1), *model.encode(x, guide))
        return tape.logged_starts()
    finally:
        tape.window()


@contextmanager
def staged_replay(model: DDRF, stats: Tensor, tokens: Tensor, starts: dict[int, int] | None = None) -> Iterator[None]:
    """The scene's statistics replayed by module for the duration; `starts` from `owner_starts`, given where they
    must be found outside the replay (an exported graph's forward must not trace the network's call-order pass)."""
    starts = owner_starts(model, stats, tokens) if starts is None else starts
    model.scene_tape.replay(stats, tokens)
    model.scene_tape.seek_by_owner(starts)
    try:
        yield
    finally:
        model.scene_tape.window()


def decoder_contexts(model: DDRF, like: Tensor) -> tuple[Tensor, ...]:
    """The decoder blocks' wavelet contexts, for a batch as large as `like`'s: replayed, they are the scene's
    whatever the window, so no pixels are needed (stage 2 has none at full resolution)."""
    if model.scene_tape.mode != REPLAY:  # else each block would take `like` for its wavelet bands
        raise ValueError("the decoder contexts of staged execution are the scene's: replay them (staged_replay)")
    return tuple(cast(DecoderBlock, block).condition(like) for block in model.decoder)


def shallow_encoder(model: DDRF, x_t: Tensor, temb: Tensor, cond: tuple[Tensor, ...], split: int) -> list[Tensor]:
    """Stage 1 (and the first half of stage 3): the skips of levels < split, the last being level `split`'s input."""
    cfg = model.config
    h = model.in_x(x_t) + cond[0]
    skips = [h]
    for k, block in enumerate(model.encoder):
        level = model.enc_levels[k]
        if level >= split:
            break
        h = block(h, temb, cond[1 + 2 * k], cond[2 + 2 * k])
        skips.append(h)
        if (k + 1) % cfg.enc_blocks == 0:
            skips.append(h := model.downs[level](h))
    return skips


def deep_levels(model: DDRF, entry: Tensor, temb: Tensor, pooled: Tensor, contexts: tuple[Tensor, ...],
                split: int) -> Tensor:
    """Stage 2: levels >= split from level `split`'s input; `pooled` is [LMS, PAN] area-averaged to level `split`
    (what encode() pools for these levels' style modulation)."""
    cfg = model.config
    h, skips = entry, [entry]
    for k, block in enumerate(model.encoder):
        level = model.enc_levels[k]
        if level < split:
            continue
        gain, shift = cast(EncoderBlock, block).condition(pool_to_level(pooled, level - split))
        h = block(h, temb, gain, shift)
        skips.append(h)
        if (k + 1) % cfg.enc_blocks == 0 and level < cfg.levels - 1:
            skips.append(h := model.downs[level](h))
    h = model.middle(h, temb)
    for k, block in enumerate(model.decoder):
        level = model.dec_levels[k]
        if level < split:
            break
        h = block(h, skips.pop(), temb, contexts[k])
        if (k + 1) % cfg.dec_blocks == 0 and level > split:
            h = model.ups[cfg.levels - 1 - level](h)
    return h


def shallow_decoder(model: DDRF, deep: Tensor, skips: list[Tensor], temb: Tensor, contexts: tuple[Tensor, ...],
                    split: int) -> Tensor:
    """The second half of stage 3: stage 2's map at level `split` and the shallow skips -> the prediction."""
    cfg = model.config
    h = model.ups[cfg.levels - 1 - split](deep)
    pending = skips[:-1]  # the last skip, level `split`'s input, was stage 2's
    for k, block in enumerate(model.decoder):
        level = model.dec_levels[k]
        if level >= split:
            continue
        h = block(h, pending.pop(), temb, contexts[k])
        if (k + 1) % cfg.dec_blocks == 0 and level > 0:
            h = model.ups[cfg.levels - 1 - level](h)
    return model.out(h)


def pooled_condition(model: DDRF, lms: Tensor, pan: Tensor, split: int) -> Tensor:
    """[LMS, PAN] area-averaged to level `split`: stage 2's condition."""
    return F.avg_pool2d(torch.cat([lms, pan], dim=1), 2**split)
