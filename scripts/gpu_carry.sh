#!/usr/bin/env bash
# Prepare what a bare GPU machine needs to run benchmarks/gpu.py from this working tree:
# wheels its image lacks (.whl/) and fp16 copies of the real checkpoints (.gpuw/; the fp32
# Real-ESRGAN x4plus, 67 MB, exceeds a 64 MiB transfer limit). Both folders are git-ignored.
# There:  pip install --no-deps --no-index --target /tmp/site .whl/*.whl
#         PYTHONPATH=/tmp/site:$PWD python benchmarks/gpu.py --weights-dir .gpuw --out "$OUT/gpu"
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON_VERSION:-3.12}
mkdir -p .whl .gpuw
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$py" -d .whl \
  "spandrel==$(.venv/bin/python -c 'import spandrel; print(spandrel.__version__)')" einops tqdm
.venv/bin/python - <<'PY'
import ttasr
from safetensors.torch import save_file

for name in ("realesrgan-x4plus", "span-x4"):
    model = ttasr.load_model(name)
    state = {k: v.detach().half().contiguous() for k, v in model.module.state_dict().items()}
    save_file(state, f".gpuw/{name}.fp16.safetensors")
    print(f".gpuw/{name}.fp16.safetensors")
PY
du -sh .whl .gpuw
