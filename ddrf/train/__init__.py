"""Training: the torch wrapper of the schedule, patch datasets, the loop (EMA, AMP, DDP) and checkpoints + cards."""
from ddrf.train.checkpoint import load_checkpoint, read_weights
from ddrf.train.config import TrainConfig, load_config
from ddrf.train.diffusion import Diffusion
from ddrf.train.loop import TrainResult, train

__all__ = ["Diffusion", "TrainConfig", "TrainResult", "load_checkpoint", "load_config", "read_weights", "train"]
