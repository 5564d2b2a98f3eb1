#!/usr/bin/env bash
# The checks to run when a session is lent a CUDA GPU (the device tool): the tests marked gpu that need no
# TensorRT (cuda-python buffers, mixed-precision training) and benchmarks/gpu_torch.py. Results go to $OUT.
#   bash benchmarks/gpu_check.sh            (OUT defaults to runs/gpu_check)
# Where rasterio is missing (the device image), wheels in .whl/ are installed to /tmp/site first.
set -u
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/nvidia_smi.csv"
python3 -c "import torch, numpy; from importlib.metadata import version as v
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'cuda-bindings', v('cuda-bindings'))"
python3 -m pytest -q -rs -m gpu -p no:cacheprovider tests/test_cuda_buffers.py tests/test_train.py 2>&1 \
    | tee "$OUT/pytest_gpu.txt"
python3 benchmarks/gpu_torch.py --out "$OUT/gpu_torch.json" 2>&1 | tee "$OUT/gpu_torch.log"
