"""Console entry points. Each stage owns its Typer app in `<stage>/command.py`; this module only imports it lazily,
so `ddrf-run` and `ddrf-profile` never pull in torch."""
from __future__ import annotations

import importlib


def _run(module: str) -> None:
    importlib.import_module(module).app()


def train_app() -> None:
    _run("ddrf.train.command")


def eval_app() -> None:
    _run("ddrf.evaluate.command")


def export_app() -> None:
    _run("ddrf.export.command")


def run_app() -> None:
    _run("ddrf.scenes.command")


def profile_app() -> None:
    _run("ddrf.profile.command")
