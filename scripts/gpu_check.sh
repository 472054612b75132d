#!/usr/bin/env bash
# Device check (issue #36, item 7), one command on a GPU machine, well inside 10 minutes:
#   1. the engine's exactness on CUDA (tests/integration/test_device_exactness.py, float32, TF32 off);
#   2. a speed table, plain / steered / CFG at batch 1 and 8 (SmolLM2-135M's architecture, bfloat16);
#   3. a short GSM8K eval on CUDA (Self-Anchor and CoT, 8 problems, continuous batching).
# Prepare on the development machine first (wheels the GPU image lacks, the model's config and tokenizer, 8
# problems; all under .gpucheck/, about 10 MB):  bash scripts/gpu_check_prepare.sh
# Then, with the device tool:  run(command="bash scripts/gpu_check.sh", carry=[".gpucheck"], timeout_s=600)
# Results: $OUT/gpu_check.log, $OUT/exactness.txt, $OUT/gpu_check.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
started=$(date +%s)
step() { echo "=== $(date -u +%T) (+$(( $(date +%s) - started )) s) $*"; }

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -d .gpucheck/wheels ] && ls .gpucheck/wheels/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpucheck/wheels/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=$PWD:/tmp/site
else
    export PYTHONPATH=$PWD
fi
$PY -c "import torch, transformers, langchain_core, pydantic; assert torch.cuda.is_available(), 'no CUDA';
print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))" || exit 1
status=0

step "1/3 exactness on CUDA"
SELFANCHOR_TEST_DEVICE=cuda timeout 180 $PY -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib" \
    tests/integration/test_device_exactness.py 2>&1 | tee "$OUT/exactness.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "2/3 speed table and 3/3 short eval on CUDA"
timeout 360 $PY scripts/gpu_check.py --json "$OUT/gpu_check.json" || status=1

step "done, status $status"
exit $status
