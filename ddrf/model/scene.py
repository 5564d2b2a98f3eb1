"""Statistics taken once per scene instead of per window (v1 networks): the tape that records and replays them.

A v1 network has three operators whose output at a pixel depends on every pixel of the window: GroupNorm (moments
over the window), the wavelet cross-attention's context (keys softmaxed over the window's tokens) and self-attention
(keys and values of the window). Run as is, a tiled scene changes with the tile size. With a `SceneTape` the network
first runs over a scene's context windows in `record` mode, each of those operators taking its statistics jointly
over all of them (as one image) and writing them on the tape; every window then runs in `replay` mode, reading the
same statistics back in the same order. A window's output is then a function of its own pixels and the scene, and
tiles with a halo reproduce the whole image. The weights are the same: a model trained with window statistics is
served with scene statistics.

The tape holds two tensors, so that exported graphs take them as inputs: `stats` (every moment and context,
flattened, in call order) and `tokens` (A, 2, C, L: the keys and values of each self-attention call over the L
tokens of the context windows).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

WINDOW, RECORD, REPLAY = "window", "record", "replay"


class SceneTape:
    """Shared by the operators of one network; `mode` says whether they use window, recorded or replayed statistics."""

    def __init__(self) -> None:
        self._stats: list[Tensor] = []
        self._tokens: list[Tensor] = []
        self._flat: Tensor | None = None
        self._token_input: Tensor | None = None
        self.window()

    def record(self) -> None:
        self.mode, self._stats, self._tokens = RECORD, [], []

    def replay(self, stats: Tensor, tokens: Tensor) -> None:
        self.mode, self._flat, self._token_input = REPLAY, stats, tokens
        self._cursor = self._token_cursor = 0
        self._starts: dict[int, int] | None = None
        self._log: dict[int, int] | None = None

    def log_starts(self) -> None:
        """While replaying in call order, note where each module's values start (for `seek_by_owner`)."""
        self._log = {}

    def logged_starts(self) -> dict[int, int]:
        assert self._log is not None, "log_starts first"
        return dict(self._log)

    def _seek(self, owner: object, cursor: int) -> int:
        """Where `owner`'s values start: from `seek_by_owner`'s map, else the call order's `cursor` (noted while
        `log_starts` is on)."""
        if self._starts is not None:
            return self._starts[id(owner)]
        if self._log is not None:
            self._log[id(owner)] = cursor
        return cursor

    def seek_by_owner(self, starts: dict[int, int]) -> None:
        """Replay each module's values from where `starts` says they begin, whatever the order of the calls (one
        sampler step: each module records once)."""
        self._starts = starts

    def window(self) -> None:
        """Back to window statistics, nothing held."""
        self.mode, self._stats, self._tokens, self._flat, self._token_input = WINDOW, [], [], None, None
        self._cursor = self._token_cursor = 0
        self._starts, self._log = None, None

    def recorded(self) -> tuple[Tensor, Tensor]:
        """(stats, tokens) as the graphs take them."""
        if not self._stats or not self._tokens:
            raise RuntimeError("nothing recorded: run the network in record mode first")
        return torch.cat(self._stats), torch.stack(self._tokens)

    def put(self, value: Tensor) -> None:
        self._stats.append(value.reshape(-1))

    def take(self, *shape: int, owner: object = None) -> Tensor:
        """The next recorded value, or, once `seek_by_owner` has been given where each module's values start,
        `owner`'s own: staged execution (ddrf.model.staged) calls the modules in another order than the recording."""
        assert self._flat is not None, "replay mode needs the recorded stats"
        self._cursor = self._seek(owner, self._cursor)
        size = math.prod(shape)
        value = self._flat[self._cursor:self._cursor + size].reshape(*shape)
        self._cursor += size
        return value

    def put_tokens(self, keys: Tensor, values: Tensor) -> None:
        """Keys and values (1, heads, d, L) of one self-attention call."""
        self._tokens.append(torch.stack([keys.flatten(1, 2)[0], values.flatten(1, 2)[0]]))

    def take_tokens(self, heads: int, owner: object = None) -> tuple[Tensor, Tensor]:
        assert self._token_input is not None, "replay mode needs the recorded tokens"
        self._token_cursor = self._seek(owner, self._token_cursor)
        pair = self._token_input[self._token_cursor]
        self._token_cursor += 1
        channels = pair.shape[1]
        return (pair[0].reshape(1, heads, channels // heads, -1), pair[1].reshape(1, heads, channels // heads, -1))


def joint_tokens(x: Tensor) -> Tensor:
    """(N, heads, d, L) -> (1, heads, d, N * L): a batch of context windows as one image's tokens."""
    return x.permute(1, 2, 0, 3).reshape(1, x.shape[1], x.shape[2], -1)


def recorded(tape: SceneTape, run: Callable[[], object]) -> tuple[Tensor, Tensor]:
    """Run the network over the context windows in record mode; the scene statistics it wrote."""
    tape.record()
    try:
        run()
        return tape.recorded()
    finally:
        tape.window()


def replayed(tape: SceneTape, stats: Tensor, tokens: Tensor, run: Callable[[], Tensor]) -> Tensor:
    """Run the network over a window with the scene statistics; the tape is back in window mode afterwards."""
    tape.replay(stats, tokens)
    try:
        return run()
    finally:
        tape.window()
