"""Where the bundled models and the sample scene live inside the installed package (one home for these paths)."""
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
BUNDLED_MODELS = ASSETS / "models"  # one model directory per bundled model; ddrf.bundled discovers them
SAMPLE_SCENE = ASSETS / "sample_scene" / "LC80200392015216LGN00"
