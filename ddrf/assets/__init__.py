"""Where the bundled model and sample scene live inside the installed package (one home for both paths)."""
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
BUNDLED_MODEL = ASSETS / "model"
SAMPLE_SCENE = ASSETS / "sample_scene" / "LC80200392015216LGN00"
