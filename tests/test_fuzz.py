"""1,000 seeded mutations of the bundled sample models through ``auditor inspect --no-parity``: each ends
with exit 0, 1 or 2 and, on 2, one ``error:`` line; no traceback or internal error, no case past its
time limit, and a bounded peak memory. The mutations and the runner are ``benchmarks/fuzz_inspect.py``
(its longer runs are in docs/security.md); the cases run in a child process, so that a crash in native
code fails this test instead of ending the test session, and its peak RSS is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = 1000
PEAK_RSS_MB = 1500  # the process holds torch, onnxruntime and the sample models (~400 MB); a blow-up is GBs


def test_a_thousand_mutated_models_end_as_the_cli_promises(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz_inspect.py"), "--cases", str(CASES),
                          "--seed", "0", "--time-limit", "10", "--json", str(out)],
                         capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert out.exists(), run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["cases"] == CASES
    assert figures["problems"] == [], json.dumps(figures["problems"][:5], indent=2)
    assert figures["crashes"] == 0 and figures["hangs"] == 0
    assert set(figures["exit_codes"]) <= {"0", "1", "2"}
    assert figures["exit_codes"].get("0", 0) >= 50, "too few cases get past loading to exercise the converter"
    assert len(figures["mutations"]) == 12
    assert figures["peak_rss_mb"] < PEAK_RSS_MB, figures
    assert run.returncode == 0, run.stdout[-3000:]


def test_a_case_is_the_same_whatever_runs_before_it(tmp_path: Path) -> None:
    """Case N of a seed depends on (seed, N) alone, so a failure reruns with --first N --cases 1."""
    import onnx
    from script_loader import load_script

    fuzz = load_script("fuzz_inspect")

    data = (ROOT / "sample_models" / "cifar10_badnets.onnx").read_bytes()
    bases = [(data, onnx.load_from_string(data))]
    made = []
    for attempt in range(2):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        case = fuzz.make_case(3, 17, bases, folder)
        made.append((case.mutation, case.path.read_bytes()))
    assert made[0] == made[1]
