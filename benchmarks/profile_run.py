"""Where an audit or a scan spends its time: stage and detector seconds, and the top functions.

Runs ``auditor audit`` or ``auditor scan`` in this process under ``cProfile``, with one detector worker so
that every detector runs on the profiled thread (the figures do not depend on the worker count; only the
wall time of the detect stage does, docs/detection.md). Writes one JSON document:

    python benchmarks/profile_run.py audit --out docs/results/profile_audit.json
    python benchmarks/profile_run.py scan --out docs/results/profile_scan.json
    python benchmarks/profile_run.py --table docs/results/profile_audit.json docs/results/profile_scan.json \
        [--write docs/bench.md]

The stage seconds are the report's own timings of the profiled run; the functions are the project's own
(auditor/, converters/) by cumulative seconds, and the heaviest callees of any package by own seconds.
cProfile adds a per-call overhead, so the profiled run is slower than a plain one; the shares, not the
absolute seconds, are what the profile is for.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markers import emit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_models" / "cifar10_badnets.onnx"
BEGIN, END = "<!-- profile-table -->", "<!-- /profile-table -->"


def command_line(command: str, model: Path, folder: Path, extra: list[str]) -> list[str]:
    """The CLI arguments of the profiled run (its own report folder, one detector worker)."""
    argv = [command, str(model), "--report-dir", str(folder / "report"), "--detector-workers", "1",
            "--fail-on", "never"]
    if command == "audit":
        argv += ["-o", str(folder / "purified.onnx"), "--overwrite"]
    return argv + extra


# the command's own layers, which contain the whole run: listing them would only push the real work down
WRAPPERS = ("/auditor/cli.py", "/auditor/api.py", "/auditor/commands/")


def _project_function(key: tuple[str, int, str]) -> bool:
    filename = key[0].replace(os.sep, "/")
    return (("/auditor/" in filename or "/converters/" in filename) and "/site-packages/" not in filename
            and not any(wrapper in filename for wrapper in WRAPPERS))


def _name(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename == "~":  # a builtin: cProfile names it in the function field
        return function
    parts = Path(filename).parts
    for anchor in ("auditor", "converters", "torch", "onnx2torch", "onnxruntime", "numpy"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor):]) + f":{line} {function}"
    return f"{Path(filename).name}:{line} {function}"


def top_functions(stats: pstats.Stats, top: int) -> dict[str, list[dict[str, Any]]]:
    """The project's functions by cumulative seconds, and every function by own seconds."""
    rows = stats.stats  # type: ignore[attr-defined]  # {key: (calls, primitive calls, own s, cumulative s, callers)}
    own = sorted(rows.items(), key=lambda item: -item[1][2])[:top]
    cumulative = sorted(((k, v) for k, v in rows.items() if _project_function(k)), key=lambda item: -item[1][3])[:top]
    return {
        "project_cumulative": [{"function": _name(k), "calls": v[0], "cumulative_s": round(v[3], 1)}
                               for k, v in cumulative],
        "own": [{"function": _name(k), "calls": v[0], "own_s": round(v[2], 1)} for k, v in own],
    }


def profile(command: str, model: Path, top: int, extra: list[str]) -> dict[str, Any]:
    """One profiled run: its report's stage timings, the profile's wall time and the top functions."""
    from auditor.cli import main

    with tempfile.TemporaryDirectory(prefix="auditor-profile-") as tmp:
        folder = Path(tmp)
        argv = command_line(command, model, folder, extra)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        try:
            main(argv, standalone_mode=False)
        finally:
            profiler.disable()
        wall = time.perf_counter() - started
        report_path = folder / "report" / "report.json"
        if not report_path.exists():  # a scan of one model writes its report in the folder's per-model file
            report_path = next((folder / "report").rglob("report.json"))
        report = json.loads(report_path.read_text())
    import torch

    return {
        "command": ["auditor", *[_shown(a, folder) for a in argv]],
        "model": model.name, "profiled_wall_s": round(wall, 1), "timings": report.get("timings", {}),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%d"),
        **top_functions(pstats.Stats(profiler), top),
    }


def _shown(argument: str, folder: Path) -> str:
    """An argument as the recorded command shows it: the run's temporary folder as <tmp>, the repository's
    files relative to its root (the same command on any checkout)."""
    if argument.startswith(str(folder)):
        return "<tmp>" + argument[len(str(folder)):]
    if argument.startswith(str(ROOT) + os.sep):
        return argument[len(str(ROOT)) + 1:]
    return argument


def render(documents: list[dict[str, Any]], rows: int = 12) -> str:
    """Markdown: per run, the stage split and the project's heaviest functions."""
    lines: list[str] = []
    for doc in documents:
        timings = doc["timings"]
        total = timings.get("total") or sum(v for k, v in timings.items() if "." not in k)
        stages = [(k, v) for k, v in timings.items() if k != "total"]
        lines += [f"**{doc['command'][1]} of {doc['model']}** ({doc['machine']['cpus']} CPUs, "
                  f"{doc['machine']['torch_threads']} torch threads, {doc['created']}; profiled run "
                  f"{doc['profiled_wall_s']:.0f} s): `{' '.join(doc['command'])}`", "",
                  "| stage or detector | seconds | share of the run |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.1f} | {100 * v / total:.0f}% |" for k, v in stages]
        lines += ["", "| project function | calls | cumulative s |", "|---|---:|---:|"]
        lines += [f"| `{r['function']}` | {r['calls']} | {r['cumulative_s']:.1f} |"
                  for r in doc["project_cumulative"][:rows]]
        lines += ["", "| function (own time) | calls | own s |", "|---|---:|---:|"]
        lines += [f"| `{r['function']}` | {r['calls']} | {r['own_s']:.1f} |" for r in doc["own"][:rows]]
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("audit", "scan"), help="What to profile.")
    parser.add_argument("--model", type=Path, default=SAMPLE, help="ONNX model (default: the bundled sample).")
    parser.add_argument("--out", type=Path, help="Where to write the profile's JSON.")
    parser.add_argument("--top", type=int, default=25, help="Functions kept per list.")
    parser.add_argument("--extra", default="", help="More CLI arguments for the run, space-separated.")
    parser.add_argument("--table", type=Path, nargs="+", help="Render these profiles instead of profiling.")
    parser.add_argument("--write", type=Path, help="With --table: write it between the page's profile markers.")
    args = parser.parse_args(argv)
    if args.table:
        emit(render([json.loads(p.read_text()) for p in args.table]), args.write, BEGIN, END)
        return 0
    if not args.command or not args.out:
        parser.error("give a command and --out, or --table")
    document = profile(args.command, args.model, args.top, args.extra.split())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(render([document]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
