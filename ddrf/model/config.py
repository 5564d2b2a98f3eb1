"""DDRFConfig: the denoiser's hyper-parameters, carried as plain JSON in the model card."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class DDRFConfig:
    ms_bands: int  # C: bands of the diffused residual and of LMS
    guide_bands: int = 1  # G: 1 for PAN, 3+ for an RGB/MS guide (hyperspectral fusion)
    base_width: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    enc_blocks: int = 3
    dec_blocks: int = 4  # SR3 layout: one more than enc_blocks, so every skip is consumed exactly once
    attn_levels: tuple[int, ...] = (3,)  # levels with full self-attention (the middle block always has it)
    heads: int = 8  # full self-attention heads
    dropout: float = 0.2
    wave_heads: int = 4  # heads of the wavelet (efficient) cross-attention
    ffn_mult: int = 2  # FFN expansion after the wavelet cross-attention
    time_dim: int = 128  # output of the timestep MLP (per-block biases are projected from it)
    norm_groups: int = 32  # GroupNorm groups, reduced to gcd(channels, norm_groups) per layer (v1)
    # "v1": the paper's layout (GroupNorm, window-wide attention contexts, middle self-attention): the output depends
    # on the tile. "v2": no statistic spans more than a local neighbourhood (per-pixel channel norm, box-local
    # wavelet attention, no self-attention), so tiles with a halo reproduce the whole image.
    arch: str = "v1"
    wave_radius: int = 2  # v2: radius, in pixels of the block's level, of the wavelet attention's key neighbourhood
    wave_key_dim: int = 4  # v2: key width per wavelet-attention head (the cached context is key_dim x width per pixel)
    # s > 1: the network runs at H/s on s x s blocks of pixels folded into channels (pixel unshuffle in, shuffle out),
    # so its widths cost 1/s^2 per output pixel: a wider net at the same cost, or the same width cheaper
    space_to_depth: int = 1

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        self.attn_levels = tuple(int(a) for a in self.attn_levels)
        self.validate()

    def validate(self) -> None:
        if self.ms_bands < 1 or self.guide_bands < 1:
            raise ValueError(f"ms_bands and guide_bands must be >= 1, got {self.ms_bands}, {self.guide_bands}")
        if not self.channel_mults or self.enc_blocks < 1:
            raise ValueError("need at least one level and one encoder block")
        if self.dec_blocks != self.enc_blocks + 1:
            raise ValueError(f"dec_blocks must be enc_blocks + 1 (skip layout), got {self.dec_blocks}/{self.enc_blocks}")
        if self.arch not in ("v1", "v2"):
            raise ValueError(f"arch must be v1 or v2, got {self.arch!r}")
        if self.arch == "v2" and self.attn_levels:
            raise ValueError("arch v2 has no full self-attention (it spans the window): attn_levels must be empty")
        if self.space_to_depth < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {self.space_to_depth}")
        if self.wave_radius < 1 or self.wave_key_dim < 1:
            raise ValueError(f"wave_radius and wave_key_dim must be >= 1, got {self.wave_radius}, {self.wave_key_dim}")
        if any(not 0 <= a < self.levels for a in self.attn_levels):
            raise ValueError(f"attn_levels {self.attn_levels} outside 0..{self.levels - 1}")
        for c in self.widths:
            if c % self.heads or c % self.wave_heads:
                raise ValueError(f"width {c} not divisible by heads {self.heads} / wave_heads {self.wave_heads}")

    @property
    def levels(self) -> int:
        return len(self.channel_mults)

    @property
    def multiple(self) -> int:
        """Every input height/width must be a multiple of this (the fold, then one stride-2 conv per level
        transition)."""
        return self.space_to_depth * 2 ** (self.levels - 1)

    @property
    def net_ms_bands(self) -> int:
        """Channels of the residual and of LMS inside the network (each band folded into s^2 channels)."""
        return self.ms_bands * self.space_to_depth**2

    @property
    def net_guide_bands(self) -> int:
        return self.guide_bands * self.space_to_depth**2

    @property
    def groups(self) -> int | None:
        """GroupNorm groups (v1); None selects the per-pixel channel norm (v2)."""
        return self.norm_groups if self.arch == "v1" else None

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_width * m for m in self.channel_mults)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attn_levels"] = list(self.attn_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DDRFConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DDRFConfig keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def reference(cls, ms_bands: int, guide_bands: int = 1) -> "DDRFConfig":
        """The paper / public-code configuration (method.md section 1)."""
        return cls(ms_bands, guide_bands)

    @classmethod
    def small(cls, ms_bands: int, guide_bands: int = 1) -> "DDRFConfig":
        """CPU default: same topology, narrower and shallower; self-attention only in the middle (H/8)."""
        return cls(ms_bands, guide_bands, base_width=16, channel_mults=(1, 2, 2, 4), enc_blocks=1, dec_blocks=2,
                   attn_levels=(), heads=4, dropout=0.1, wave_heads=2, ffn_mult=2, time_dim=64, norm_groups=8)

    @classmethod
    def small_v2(cls, ms_bands: int, guide_bands: int = 1) -> "DDRFConfig":
        """`small` without window statistics (arch v2) and two levels instead of four: what a pixel sees must fit the
        runtime's 32-pixel halo (docs/EVALUATION.md, "Model v2 design runs": four and three levels did not)."""
        return cls(**{**cls.small(ms_bands, guide_bands).to_dict(), "arch": "v2", "channel_mults": (1, 2)})
