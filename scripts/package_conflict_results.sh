#!/bin/sh
# Copy a conflictqa eval folder's per-item logs (gzipped), run.json and report into results/.
#   scripts/package_conflict_results.sh evals/conflictqa-qwen2.5-coder-0.5b results/conflictqa/qwen2.5-coder-0.5b [REFERENCE]
# REFERENCE: the method the report pairs against the others (default rag-anchored-top1).
set -eu
src=$1
dst=$2
ref=${3:-rag-anchored-top1}
mkdir -p "$dst"
for f in "$src"/conflictqa/*.jsonl; do
    gzip -9 -n -c "$f" > "$dst/$(basename "$f").gz"
done
cp "$src/run.json" "$dst/run.json"
selfanchor report "$src" --reference "$ref" --no-plots > /dev/null
cp "$src/report.md" "$src/report.json" "$dst/"
echo "packaged $src -> $dst"
