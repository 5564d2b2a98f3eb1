"""Building blocks of the DDRF denoiser: time embedding, residual block, full and wavelet (efficient) attention,
style modulation. Modules that use the condition split into `condition(...)` (condition only, cached once per
image by DDRF.encode) and `forward(...)` (per denoising step)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .scene import RECORD, REPLAY, SceneTape, joint_tokens


class SceneGroupNorm(nn.GroupNorm):
    """GroupNorm whose moments come from the window, or from the scene (`ddrf.model.scene`) when its tape says so."""

    tape: SceneTape | None = None

    def forward(self, x: Tensor) -> Tensor:
        mode = self.tape.mode if self.tape is not None else None
        if mode not in (RECORD, REPLAY):
            return super().forward(x)
        assert self.tape is not None
        groups = self.num_groups
        if mode == RECORD:  # moments over every context window at once
            grouped = x.transpose(0, 1).reshape(groups, -1)
            mean = grouped.mean(dim=1)
            var = (grouped - mean[:, None]).square().mean(dim=1)
            self.tape.put(torch.stack([mean, var]))
        else:
            mean, var = self.tape.take(2, groups, owner=self).unbind(0)
        # with the moments fixed the norm is one per-channel multiply-add: no window-sized temporaries
        per_channel = self.num_channels // groups
        gain = self.weight * torch.rsqrt(var + self.eps).repeat_interleave(per_channel)
        shift = self.bias - mean.repeat_interleave(per_channel) * gain
        return x * gain[:, None, None] + shift[:, None, None]


def group_norm(channels: int, groups: int) -> SceneGroupNorm:
    return SceneGroupNorm(math.gcd(channels, groups), channels)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel (v2): no statistic crosses pixels, so none depends on the tile.

    The channel means are 1x1 convolutions with a constant 1/C kernel: ONNX Runtime's ReduceMean over the channel
    axis of NCHW is strided and took a third of the v2 denoiser's CPU time, a 1x1 Conv is its fastest kernel.
    """

    averager: Tensor

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("averager", torch.full((1, channels, 1, 1), 1.0 / channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        centred = x - F.conv2d(x, self.averager)
        scaled = centred * torch.rsqrt(F.conv2d(centred * centred, self.averager) + self.eps)
        return scaled * self.weight[:, None, None] + self.bias[:, None, None]


def make_norm(channels: int, groups: int | None) -> nn.Module:
    """GroupNorm over the window (v1) when `groups` is given, else the per-pixel ChannelNorm (v2)."""
    return group_norm(channels, groups) if groups else ChannelNorm(channels)


def crop(x: Tensor, pixels: int) -> Tensor:
    """NCHW `x` without its outer `pixels` rows and columns on every side (negative ends: traced graphs stay
    dynamic in height and width)."""
    return x[..., pixels:-pixels, pixels:-pixels] if pixels > 0 else x


def pool_to_level(x: Tensor, level: int) -> Tensor:
    """Resize a full-resolution map to level `level` (H / 2^level) by area averaging (AveragePool in ONNX)."""
    return x if level == 0 else F.avg_pool2d(x, 2**level)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the true training timestep -> MLP; SiLU applied once, blocks project it linearly."""

    freqs: Tensor

    def __init__(self, sin_dim: int, time_dim: int) -> None:
        super().__init__()
        half = sin_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)  # a constant, not a weight
        self.mlp = nn.Sequential(nn.Linear(2 * half, 4 * sin_dim), nn.SiLU(), nn.Linear(4 * sin_dim, time_dim))

    def forward(self, t: Tensor) -> Tensor:
        angles = t.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return F.silu(self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1)))


class ResBlock(nn.Module):
    """SR3 residual block: GN-SiLU-conv, + per-channel time bias, GN-SiLU-dropout-conv, 1x1 skip if widths differ."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, dropout: float, groups: int | None) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(make_norm(c_in, groups), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.time_bias = nn.Linear(time_dim, c_out)
        self.out_layers = nn.Sequential(make_norm(c_out, groups), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.in_layers(x) + self.time_bias(temb)[:, :, None, None]
        return self.out_layers(h) + self.skip(x)


class SelfAttention(nn.Module):
    """Full softmax self-attention over pixels, written as MatMul-Softmax-MatMul (TensorRT fuses this pattern).

    With a scene tape the keys and values are those of the scene's context windows (recorded, then replayed)."""

    tape: SceneTape | None = None

    def __init__(self, channels: int, heads: int, groups: int | None) -> None:
        super().__init__()
        self.heads = heads
        self.norm = make_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3 * self.heads, c // self.heads, -1).chunk(3, dim=1)
        mode = self.tape.mode if self.tape is not None else None
        if mode == RECORD:
            k, v = joint_tokens(k), joint_tokens(v)
            self.tape.put_tokens(k, v)  # type: ignore[union-attr]  # mode is set only with a tape
        elif mode == REPLAY:
            k, v = self.tape.take_tokens(self.heads, owner=self)  # type: ignore[union-attr]
        scale = (c // self.heads) ** -0.5
        attn = torch.softmax(torch.matmul(q.transpose(-1, -2), k) * scale, dim=-1)  # (N, h, L, L)
        out = torch.matmul(v, attn.transpose(-1, -2))  # (N, h, d, L)
        return x + self.proj(out.reshape_as(x))


class StyleModulation(nn.Module):
    """Coarse condition injection: [LMS, PAN] at the block's resolution -> spatial (1 + scale, shift)."""

    def __init__(self, cond_channels: int, channels: int, groups: int | None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cond_channels, channels, 3, padding=1, bias=False),
                                  make_norm(channels, groups), nn.SiLU())
        self.to_scale_shift = nn.Conv2d(channels, 2 * channels, 1)
        nn.init.zeros_(self.to_scale_shift.weight)  # identity modulation at initialisation
        nn.init.zeros_(self.to_scale_shift.bias)  # type: ignore[arg-type]  # bias=True above

    def condition(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        scale, shift = self.to_scale_shift(self.body(cond)).chunk(2, dim=1)
        return 1 + scale, shift  # the gain is cached, so the step pays one multiply-add

    @staticmethod
    def forward(x: Tensor, gain: Tensor, shift: Tensor) -> Tensor:
        return x * gain + shift


class WaveletAttention(nn.Module):
    """Fine condition injection: efficient cross-attention (Shen et al.) from features to wavelet bands, then FFN.

    Keys/values come from the condition only, and with softmax(K) over tokens the whole condition side reduces to a
    per-head (d x d) context K V^T, independent of resolution: `condition` computes it once per image, or, with a
    scene tape, once per scene over its context windows.
    """

    tape: SceneTape | None = None

    def __init__(self, channels: int, wave_channels: int, heads: int, ffn_mult: int, groups: int | None) -> None:
        super().__init__()
        self.heads = heads
        self.kv = nn.Sequential(nn.Conv2d(wave_channels, channels, 3, padding=1), nn.SiLU(),
                                nn.Conv2d(channels, 2 * channels, 1))
        self.norm = make_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.ffn = nn.Sequential(make_norm(channels, groups), nn.Conv2d(channels, ffn_mult * channels, 1), nn.SiLU(),
                                 nn.Conv2d(ffn_mult * channels, channels, 1))

    def condition(self, wave: Tensor) -> Tensor:
        n = wave.shape[0]
        mode = self.tape.mode if self.tape is not None else None
        if mode == REPLAY:
            d = self.proj.in_channels // self.heads
            return self.tape.take(1, self.heads, d, d, owner=self).expand(n, -1, -1, -1)  # type: ignore[union-attr]
        k, v = self.kv(wave).reshape(n, 2 * self.heads, -1, wave.shape[-2] * wave.shape[-1]).chunk(2, dim=1)
        if mode == RECORD:
            k, v = joint_tokens(k), joint_tokens(v)
        context = torch.matmul(torch.softmax(k, dim=-1), v.transpose(-1, -2))  # keys over tokens: (N, h, d_k, d_v)
        if mode == RECORD:
            self.tape.put(context)  # type: ignore[union-attr]
            return context.expand(n, -1, -1, -1)
        return context

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        n = x.shape[0]
        q = self.q(self.norm(x)).reshape(n, self.heads, context.shape[-2], -1)
        q = torch.softmax(q, dim=2)  # over each head's feature axis
        out = torch.matmul(context.transpose(-1, -2), q)  # (N, h, d_v, L)
        x = x + self.proj(out.reshape_as(x))
        return x + self.ffn(x)


class LocalWaveletAttention(WaveletAttention):
    """WaveletAttention (v2) whose keys are softmaxed over a (2r+1)^2 box around each pixel instead of the window.

    The per-head context K^T V becomes a per-pixel field: box sums of exp(k) v^T over box sums of exp(k), computed
    once per image by `condition` (the box is zero-padded at the window edge; numerator and denominator lose the
    same tokens). Keys are `key_dim` wide per head (the context costs key_dim x channels per pixel) and their logits
    bounded (5 tanh(k / 5)) so exp needs no window-wide max subtraction. The box is separable.
    """

    box_context: Tensor
    box_weight: Tensor

    def __init__(self, channels: int, wave_channels: int, heads: int, ffn_mult: int, radius: int,
                 key_dim: int) -> None:
        super().__init__(channels, wave_channels, heads, ffn_mult, None)
        self.radius, self.key_dim = radius, key_dim
        self.kv = nn.Sequential(nn.Conv2d(wave_channels, channels, 3, padding=1), nn.SiLU(),
                                nn.Conv2d(channels, heads * key_dim + channels, 1))
        self.q = nn.Conv2d(channels, heads * key_dim, 1)
        side = 2 * radius + 1  # constant box kernels (not weights) for the context (key_dim x channels) and normaliser
        self.register_buffer("box_context", torch.ones(key_dim * channels, 1, side, 1), persistent=False)
        self.register_buffer("box_weight", torch.ones(heads * key_dim, 1, side, 1), persistent=False)

    def _box(self, x: Tensor, ones: Tensor) -> Tensor:
        """Zero-padded (2r+1)^2 box sum as two depthwise convolutions with ones (a column, then a row): ONNX Runtime
        runs them as Conv; the shifted Slice/Add form spent 80 % of the v2 encoder's CPU time copying slices."""
        rows = F.conv2d(x, ones, padding=(self.radius, 0), groups=x.shape[1])
        return F.conv2d(rows, ones.transpose(2, 3), padding=(0, self.radius), groups=x.shape[1])

    def condition(self, wave: Tensor) -> Tensor:
        n, h, w = wave.shape[0], wave.shape[-2], wave.shape[-1]
        k, v = self.kv(wave).split([self.heads * self.key_dim, self.proj.in_channels], dim=1)
        weight = torch.exp(5.0 * torch.tanh(k.reshape(n, self.heads, self.key_dim, 1, h, w) / 5.0))
        outer = (weight * v.reshape(n, self.heads, 1, -1, h, w)).flatten(1, 3)  # (N, heads * d_k * d_v, H, W)
        context = self._box(outer, self.box_context).reshape(n, self.heads, self.key_dim, -1, h, w)
        norm = self._box(weight.flatten(1, 3), self.box_weight).reshape(n, self.heads, self.key_dim, 1, h, w)
        return (context / norm).flatten(1, 3)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q = torch.softmax(self.q(self.norm(x)).reshape(n, self.heads, self.key_dim, 1, h, w), dim=2)
        out = (q * context.reshape(n, self.heads, self.key_dim, -1, h, w)).sum(dim=2)  # (N, heads, d_v, H, W)
        x = x + self.proj(out.reshape(n, c, h, w))
        return x + self.ffn(x)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
