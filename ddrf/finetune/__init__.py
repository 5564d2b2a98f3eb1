"""ddrf-finetune: a model fine-tuned on your own scene directories (train + export, one command)."""
