"""Parity of an exported model: ONNX Runtime FP32/FP16, stepwise and unrolled, vs PyTorch for K = 1, 4, 25.

    python benchmarks/export_parity.py [CHECKPOINT]   # default: the bundled model's EMA weights
"""
import sys, time

import numpy as np
import torch
from ddrf.train.checkpoint import load_checkpoint
from ddrf.train.diffusion import Diffusion
from ddrf.export.onnx_export import export_model
from ddrf.runtime.fuser import Fuser
torch.set_num_threads(2)
model, card = load_checkpoint(sys.argv[1] if len(sys.argv) > 1 else "ddrf/assets/models/landsat_ratio2/model.safetensors")
out = "/tmp/parity_model"
import shutil; shutil.rmtree(out, ignore_errors=True)
t0 = time.time(); export_model(model, card, out, unrolled_steps=(1, 4, 25), fp16=True); print("export s", round(time.time()-t0, 1))
import os; print({f: round(os.path.getsize(f"{out}/{f}")/1e6, 2) for f in sorted(os.listdir(out)) if f.endswith(".onnx")})
rng = np.random.default_rng(0)
d = Diffusion(target=card.target, residual=card.residual)
for batch, size in ((1, 256), (3, 128)):
    lms = rng.uniform(0.0, 1.0, (batch, 4, size, size)).astype(np.float32)
    pan = rng.uniform(0.0, 1.0, (batch, 1, size, size)).astype(np.float32)
    noise = rng.standard_normal((batch, 4, size, size)).astype(np.float32)
    for k in (1, 4, 25):
        with torch.no_grad():
            want = d.sample(model, torch.from_numpy(lms), torch.from_numpy(pan), k, noise=torch.from_numpy(noise)).numpy()
        for prec in ("fp32", "fp16"):
            for unrolled in (False, True):
                got = Fuser(out, steps=k, precision=prec, unrolled=unrolled).fuse_normalised(lms, pan, noise)
                err = float(np.abs(got - want).max() / np.abs(want).max())
                print(f"batch {batch} tile {size} K={k} {prec} {'unrolled' if unrolled else 'stepwise'}: max rel err {err:.2e}", flush=True)
