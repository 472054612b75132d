#!/usr/bin/env bash
# Prepares .gpucheck/ for scripts/gpu_check.sh (run here, on the development machine, with the project's venv):
# the wheels the GPU image lacks (the versions this venv has, for its Python 3.12), SmolLM2-135M's config and
# tokenizer (no weights: 0.5 GB would not travel; the check builds random weights of the same architecture), and
# the first 8 GSM8K dev problems. About 10 MB; ignored by git (.git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.gpucheck
rm -rf "$DIR" && mkdir -p "$DIR/wheels" "$DIR/smollm2" "$DIR/data/gsm8k"
grep -qx '/.gpucheck/' .git/info/exclude 2>/dev/null || echo '/.gpucheck/' >> .git/info/exclude

# What importing the package needs beyond the GPU image's packages (see /work/.library/device/KINDS.md).
NEEDED="langchain-core langchain-protocol langsmith pydantic pydantic_core annotated-types typing-inspection
jsonpatch jsonpointer tenacity orjson requests-toolbelt uuid_utils zstandard httpx2 distro filetype sniffio"
for dist in $NEEDED; do
    version=$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$dist")
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$DIR/wheels" "$dist==$version"
done

src="${SELFANCHOR_CACHE_DIR:-$HOME/.cache/selfanchor-chains}/models/smollm2-135m-float32"
if [ ! -f "$src/config.json" ]; then  # converted on first load
    .venv/bin/python -c "from selfanchor_chains.models import load_model_and_tokenizer as l; l('smollm2-135m', dtype='float32')"
fi
cp "$src"/*.json "$src"/*.jinja "$DIR/smollm2/"
data=$(.venv/bin/python -c "from selfanchor_chains.eval.datasets import default_data_dir as d; print(d())")
head -n 8 "$data/gsm8k/dev.jsonl" > "$DIR/data/gsm8k/dev.jsonl"
du -sh "$DIR"
echo 'then: run(command="bash scripts/gpu_check.sh", carry=[".gpucheck"], timeout_s=600)'
