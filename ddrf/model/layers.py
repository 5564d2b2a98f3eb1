"""Building blocks of the DDRF denoiser: time embedding, residual block, full and wavelet (efficient) attention,
style modulation. Modules that use the condition split into `condition(...)` (condition only, cached once per
image by DDRF.encode) and `forward(...)` (per denoising step)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, groups), channels)


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

    def __init__(self, c_in: int, c_out: int, time_dim: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(c_in, groups), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.time_bias = nn.Linear(time_dim, c_out)
        self.out_layers = nn.Sequential(group_norm(c_out, groups), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.in_layers(x) + self.time_bias(temb)[:, :, None, None]
        return self.out_layers(h) + self.skip(x)


class SelfAttention(nn.Module):
    """Full softmax self-attention over pixels, written as MatMul-Softmax-MatMul (TensorRT fuses this pattern)."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3 * self.heads, c // self.heads, -1).chunk(3, dim=1)
        scale = (c // self.heads) ** -0.5
        attn = torch.softmax(torch.matmul(q.transpose(-1, -2), k) * scale, dim=-1)  # (N, h, L, L)
        out = torch.matmul(v, attn.transpose(-1, -2))  # (N, h, d, L)
        return x + self.proj(out.reshape_as(x))


class StyleModulation(nn.Module):
    """Coarse condition injection: [LMS, PAN] at the block's resolution -> spatial (1 + scale, shift)."""

    def __init__(self, cond_channels: int, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cond_channels, channels, 3, padding=1, bias=False),
                                  group_norm(channels, groups), nn.SiLU())
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
    per-head (d x d) context K V^T, independent of resolution: `condition` computes it once per image.
    """

    def __init__(self, channels: int, wave_channels: int, heads: int, ffn_mult: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.kv = nn.Sequential(nn.Conv2d(wave_channels, channels, 3, padding=1), nn.SiLU(),
                                nn.Conv2d(channels, 2 * channels, 1))
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.ffn = nn.Sequential(group_norm(channels, groups), nn.Conv2d(channels, ffn_mult * channels, 1), nn.SiLU(),
                                 nn.Conv2d(ffn_mult * channels, channels, 1))

    def condition(self, wave: Tensor) -> Tensor:
        n = wave.shape[0]
        k, v = self.kv(wave).reshape(n, 2 * self.heads, -1, wave.shape[-2] * wave.shape[-1]).chunk(2, dim=1)
        k = torch.softmax(k, dim=-1)  # over tokens
        return torch.matmul(k, v.transpose(-1, -2))  # (N, h, d_k, d_v)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        n = x.shape[0]
        q = self.q(self.norm(x)).reshape(n, self.heads, context.shape[-2], -1)
        q = torch.softmax(q, dim=2)  # over each head's feature axis
        out = torch.matmul(context.transpose(-1, -2), q)  # (N, h, d_v, L)
        x = x + self.proj(out.reshape_as(x))
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
