"""`python -m ddrf.evaluate` = `ddrf-eval` (useful where the package is not installed with its scripts)."""
from ddrf.evaluate.command import app

app()
