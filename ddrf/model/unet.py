"""The DDRF denoiser: an SR3 UNet with style modulation (encoder) and wavelet cross-attention (decoder).

The condition path is split out as API: `encode(lms, pan)` computes everything that depends on the condition only
(once per image), `denoise(x_t, t, *cond)` is one step. `forward` = denoise(x_t, t, *encode(lms, pan)).
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DDRFConfig
from .layers import (Downsample, LocalWaveletAttention, ResBlock, SceneGroupNorm, SelfAttention, StyleModulation,
                     TimeEmbedding, Upsample, WaveletAttention, crop, make_norm, pool_to_level)
from .scene import REPLAY, SceneTape
from .wavelet import haar_dwt_packed, haar_filters


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class EncoderBlock(nn.Module):
    def __init__(self, cfg: DDRFConfig, c_in: int, c_out: int, attn: bool) -> None:
        super().__init__()
        self.style = StyleModulation(cfg.net_ms_bands + cfg.net_guide_bands, c_in, cfg.groups)
        self.res = ResBlock(c_in, c_out, cfg.time_dim, cfg.dropout, cfg.groups)
        self.attn = SelfAttention(c_out, cfg.heads, cfg.groups) if attn else nn.Identity()

    def condition(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        return self.style.condition(cond)

    def forward(self, x: Tensor, temb: Tensor, gain: Tensor, shift: Tensor) -> Tensor:
        return self.attn(self.res(self.style(x, gain, shift), temb))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: DDRFConfig, c_in: int, c_skip: int, c_out: int, attn: bool) -> None:
        super().__init__()
        wave_channels = cfg.net_ms_bands + 3 * cfg.net_guide_bands  # LL(LMS), LH/HL/HH(PAN)
        self.wave = (WaveletAttention(c_in, wave_channels, cfg.wave_heads, cfg.ffn_mult, cfg.groups) if cfg.arch == "v1"
                     else LocalWaveletAttention(c_in, wave_channels, cfg.wave_heads, cfg.ffn_mult, cfg.wave_radius,
                                           cfg.wave_key_dim))
        self.res = ResBlock(c_in + c_skip, c_out, cfg.time_dim, cfg.dropout, cfg.groups)
        self.attn = SelfAttention(c_out, cfg.heads, cfg.groups) if attn else nn.Identity()

    def condition(self, wave: Tensor) -> Tensor:
        return self.wave.condition(wave)

    def forward(self, x: Tensor, skip: Tensor, temb: Tensor, context: Tensor) -> Tensor:
        return self.attn(self.res(torch.cat([self.wave(x, context), skip], dim=1), temb))


class MiddleBlock(nn.Module):
    def __init__(self, cfg: DDRFConfig, channels: int) -> None:
        super().__init__()
        self.res1 = ResBlock(channels, channels, cfg.time_dim, cfg.dropout, cfg.groups)
        # v2: no self-attention here (it would mix the whole window); the level's convolutions see far enough
        self.attn = SelfAttention(channels, cfg.heads, cfg.groups) if cfg.arch == "v1" else nn.Identity()
        self.res2 = ResBlock(channels, channels, cfg.time_dim, cfg.dropout, cfg.groups)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        return self.res2(self.attn(self.res1(x, temb)), temb)


class DDRF(nn.Module):
    ms_haar: Tensor
    guide_haar: Tensor

    def __init__(self, config: DDRFConfig) -> None:
        super().__init__()
        config.validate()
        self.config = cfg = config
        w, C, G = cfg.base_width, cfg.net_ms_bands, cfg.net_guide_bands
        self.time = TimeEmbedding(w, cfg.time_dim)
        # conv([x, lms, pan]) split by linearity: the condition half runs once in encode
        self.in_x = nn.Conv2d(C, w, 3, padding=1)
        self.in_cond = nn.Conv2d(C + G, w, 3, padding=1, bias=False)
        self.register_buffer("ms_haar", haar_filters(C), persistent=False)
        self.register_buffer("guide_haar", haar_filters(G), persistent=False)

        skips, c = [w], w
        self.encoder, self.enc_levels = nn.ModuleList(), []
        self.downs = nn.ModuleList()
        for level, width in enumerate(cfg.widths):
            for _ in range(cfg.enc_blocks):
                self.encoder.append(EncoderBlock(cfg, c, width, level in cfg.attn_levels))
                self.enc_levels.append(level)
                skips.append(c := width)
            if level < cfg.levels - 1:
                self.downs.append(Downsample(c))
                skips.append(c)
        self.middle = MiddleBlock(cfg, c)
        self.decoder, self.dec_levels = nn.ModuleList(), []
        self.ups = nn.ModuleList()
        for level in reversed(range(cfg.levels)):
            width = cfg.widths[level]
            for _ in range(cfg.dec_blocks):
                self.decoder.append(DecoderBlock(cfg, c, skips.pop(), width, level in cfg.attn_levels))
                self.dec_levels.append(level)
                c = width
            if level > 0:
                self.ups.append(Upsample(c))
        out_conv = nn.Conv2d(c, C, 3, padding=1)
        # zero output: an untrained residual model predicts x0 = 0, i.e. fused = LMS, and learns only the detail
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)  # type: ignore[arg-type]  # Conv2d(bias=True) always has one
        self.out = nn.Sequential(make_norm(c, cfg.groups), nn.SiLU(), out_conv)
        # v1's window statistics can be taken once per scene instead (ddrf.model.scene); v2 has none
        self.scene_tape = SceneTape()
        if cfg.arch == "v1":
            for module in self.modules():
                if isinstance(module, (SceneGroupNorm, SelfAttention, WaveletAttention)):
                    module.tape = self.scene_tape

    @property
    def num_cond(self) -> int:
        """Length of encode's tuple: first-conv term, (gain, shift) per encoder block, context per decoder block."""
        return 1 + 2 * len(self.encoder) + len(self.decoder)

    def check_size(self, *images: Tensor) -> None:
        """Eager-mode input check; skipped while tracing so that exported graphs keep dynamic H, W."""
        if _tracing():
            return
        m = self.config.multiple
        h, w = images[0].shape[-2:]
        for x in images:
            if x.dim() != 4 or tuple(x.shape[-2:]) != (h, w) or x.shape[0] != images[0].shape[0]:
                raise ValueError(f"inputs must be NCHW of one batch and size, got {[tuple(i.shape) for i in images]}")
        if h % m or w % m:
            raise ValueError(f"height and width must be multiples of {m} (config.multiple), got {h}x{w}; pad the tile")

    def fold(self, x: Tensor) -> Tensor:
        """Full resolution -> the network's grid: each s x s block of pixels becomes s^2 channels."""
        s = self.config.space_to_depth
        return F.pixel_unshuffle(x, s) if s > 1 else x

    def unfold(self, x: Tensor) -> Tensor:
        s = self.config.space_to_depth
        return F.pixel_shuffle(x, s) if s > 1 else x

    def wavelet_bands(self, lms: Tensor, pan: Tensor) -> Tensor:
        """[LL(LMS), LH, HL, HH(PAN)] upsampled back to the network's grid (nearest), (N, C + 3G, H, W) with C, G
        the network's (folded) channels."""
        ll = haar_dwt_packed(lms, self.ms_haar)[:, :, 0]
        high = haar_dwt_packed(pan, self.guide_haar)[:, :, 1:].flatten(1, 2)  # per guide band: LH, HL, HH
        return F.interpolate(torch.cat([ll, high], dim=1), scale_factor=2.0, mode="nearest")

    def encode(self, lms: Tensor, pan: Tensor) -> tuple[Tensor, ...]:
        self.check_size(lms, pan)
        if not _tracing() and (lms.shape[1] != self.config.ms_bands or pan.shape[1] != self.config.guide_bands):
            raise ValueError(f"expected {self.config.ms_bands} MS and {self.config.guide_bands} guide bands, "
                             f"got {lms.shape[1]} and {pan.shape[1]}")
        lms, pan = self.fold(lms), self.fold(pan)
        cond = torch.cat([lms, pan], dim=1)
        out: list[Tensor] = [self.in_cond(cond)]
        for block, level in zip(self.encoder, self.enc_levels):
            out.extend(cast(EncoderBlock, block).condition(pool_to_level(cond, level)))
        wave = self.wavelet_bands(lms, pan)
        for block, level in zip(self.decoder, self.dec_levels):
            out.append(cast(DecoderBlock, block).condition(pool_to_level(wave, level)))
        return tuple(out)

    def decoder_crops(self, margin: int) -> list[int]:
        """Pixels to drop from each side of the decoder's features as it enters each level (index = level, in that
        level's pixels) so that a prediction without its outer `margin` pixels is exactly the uncropped one's interior.

        Sound only where no statistic spans the window (v2, or v1 replaying scene statistics): then the decoder is
        local, and each of its blocks (two 3x3 convolutions) widens the ring that a crop disturbs by 2 pixels, each
        upsampling doubles it and adds its convolution's 1, and the output convolution adds 1. The encoder and the
        middle run over the whole window: the deep levels need the halo's context, and their cost is small.
        """
        crops = [0] * self.config.levels
        blocks = self.config.dec_blocks
        crops[0] = max(0, margin - 2 * blocks - 1)
        for level in range(1, self.config.levels - 1):  # the deepest level feeds the middle block: left whole
            crops[level] = max(0, (crops[level - 1] - 1) // 2 - 2 * blocks)
        return crops

    def denoise(self, x_t: Tensor, t: Tensor, *cond: Tensor, margin: int = 0) -> Tensor:
        """The prediction for x_t; with `margin` > 0, without its outer `margin` pixels on every side, the decoder
        computing only what that interior needs (`decoder_crops`)."""
        if len(cond) != self.num_cond:
            raise ValueError(f"denoise needs the {self.num_cond} tensors of encode(), got {len(cond)}")
        self.check_size(x_t)
        x = self.fold(x_t)
        if not _tracing() and (x.shape[0], *x.shape[-2:]) != (cond[0].shape[0], *cond[0].shape[-2:]):
            raise ValueError(f"x_t {tuple(x_t.shape)} does not match the batch and size of encode()'s inputs")
        if margin and self.config.arch == "v1" and self.scene_tape.mode != REPLAY:
            raise ValueError("a cropped prediction needs statistics that do not span the window: replay the scene's")
        net_margin = margin // self.config.space_to_depth  # in the network's pixels; the rest is cropped after unfold
        crops = self.decoder_crops(net_margin)
        temb = self.time(t)
        h = self.in_x(x) + cond[0]
        skips = [h]
        downs = iter(self.downs)
        for k, block in enumerate(self.encoder):
            h = block(h, temb, cond[1 + 2 * k], cond[2 + 2 * k])
            skips.append(h)
            if (k + 1) % self.config.enc_blocks == 0 and self.enc_levels[k] < self.config.levels - 1:
                skips.append(h := next(downs)(h))
        h = self.middle(h, temb)
        ups = iter(self.ups)
        contexts = cond[1 + 2 * len(self.encoder):]
        done = 0  # pixels already dropped, in the current level's pixels
        for k, block in enumerate(self.decoder):
            level = self.dec_levels[k]
            if k % self.config.dec_blocks == 0:
                h, done = crop(h, crops[level] - done), crops[level]
            context = crop(contexts[k], done) if self.config.arch == "v2" else contexts[k]  # v2's: a per-pixel field
            h = block(h, crop(skips.pop(), done), temb, context)
            if (k + 1) % self.config.dec_blocks == 0 and level > 0:
                h, done = next(ups)(h), 2 * done
        out = self.unfold(crop(self.out(h), net_margin - done))
        return crop(out, margin - net_margin * self.config.space_to_depth)

    @torch.no_grad()
    def scale_prediction(self, factor: float) -> None:
        """Multiply the network's output by `factor` exactly (the last layer is a convolution): a model warm-started
        into another residual scale then predicts the same residual as before."""
        out_conv = cast(nn.Conv2d, self.out[-1])
        out_conv.weight.mul_(factor)
        cast(Tensor, out_conv.bias).mul_(factor)

    def forward(self, x_t: Tensor, t: Tensor, lms: Tensor, pan: Tensor) -> Tensor:
        return self.denoise(x_t, t, *self.encode(lms, pan))
