"""float32 decoding with PyTorch's own Linear against the row-friendly product (selfanchor_chains.models.cpu_linear),
side by side in one process: plain `generate` and steered decoding, interleaved round by round (issue #11).

    python scripts/f32_linear_speed.py [--model qwen2.5-coder-0.5b] [--batch 1] [--new-tokens 256] [--repeats 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from selfanchor_chains.bench.speed import format_variants_table, run_speed_variants
from selfanchor_chains.models import load_model_and_tokenizer
from selfanchor_chains.models.cpu_linear import use_row_friendly_linears


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    row_friendly, tokenizer = load_model_and_tokenizer(args.model, dtype="float32")
    stock = copy.deepcopy(row_friendly)
    switched = use_row_friendly_linears(stock, enabled=False)
    variants = {"float32 (torch Linear)": stock, "float32 (row-friendly)": row_friendly}
    result = run_speed_variants(variants, tokenizer, new_tokens=args.new_tokens, batch=args.batch, repeats=args.repeats)
    result.update({"model": args.model, "linear_layers": switched, "command": " ".join(__import__("sys").argv)})
    print(format_variants_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
