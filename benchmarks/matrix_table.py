"""The defense matrix of docs/bench.md, from a committed ``auditor bench`` document.

    auditor bench --config CONFIG --report-dir runs/mx_CONFIG --model MODEL ...       # one run per column
    python benchmarks/matrix_table.py --merge docs/results/matrix.json --merge runs/mx_CONFIG/bench.json \\
        --write-json docs/results/matrix.json        # a later run's row replaces the same model and defense
    python benchmarks/matrix_table.py --render docs/results/matrix.json --write docs/bench.md

Rows: models; columns: defenses; cells: ASR / ACC in % on the CIFAR-10 test set, then the means
over the backdoored models (``auditor.bench.render_matrix``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from auditor.bench import merge_documents, render_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markers import add_render_options, render_if_asked  # noqa: E402  (sibling script module)

BEGIN, END = "<!-- matrix-table -->", "<!-- /matrix-table -->"


def render(document: dict) -> str:
    return render_matrix(document).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--merge", type=Path, action="append", default=[], help="bench.json to merge, in order (repeatable).")
    parser.add_argument("--write-json", type=Path, help="With --merge: write the merged document here.")
    add_render_options(parser, "this document's matrix")
    args = parser.parse_args(argv)
    if args.merge:
        documents = [json.loads(p.read_text()) for p in args.merge]
        merged = merge_documents(documents)
        merged["source"] = "; ".join(dict.fromkeys(d["source"] for d in documents if d.get("source")))
        if args.write_json is None:
            print(render(merged))
        else:
            args.write_json.write_text(json.dumps(merged, indent=1) + "\n")
        return 0
    if render_if_asked(args, render, BEGIN, END):
        return 0
    parser.error("give --merge or --render")
    return 2


if __name__ == "__main__":
    sys.exit(main())
