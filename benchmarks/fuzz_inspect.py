"""Fuzz ``auditor inspect --no-parity`` with seeded mutations of the bundled sample models.

The files the tool audits come from parties we do not trust, so every malformed file must end in a
verdict the CLI defines: exit 0, 1 or 2, one ``error:`` line on exit 2, never a traceback or an
``internal error`` (a bug), never a hang, never a memory blow-up. Each case is derived from
``(seed, case number)`` alone, so any failure reruns with ``--seed S --first N --cases 1``.

Mutations: truncation, byte flips and splices, protobuf field edits (op types, attributes, opsets,
names, deleted nodes and initializers), input/output shape and dtype changes, dangling inputs,
cycles, huge declared dims (inputs, intermediates, initializers), external-data tricks (escaping
paths, symlinks, missing files, bad offsets and lengths, one file named many times) and hostile
metadata. The cases run in this process through click's CliRunner on the real ``auditor`` group,
so the exit-code logic of ``auditor.cli`` is what is exercised; a per-case alarm stops a case that
runs past ``--time-limit`` (a hang), and the process's peak RSS is reported.

    python benchmarks/fuzz_inspect.py --cases 1000 --seed 0            # what CI runs
    python benchmarks/fuzz_inspect.py --cases 20000 --seed 1 --json out.json --save-failures fails/
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
RNG = np.random.Generator


class CaseTimeout(BaseException):
    """Raised by the per-case alarm; a BaseException so that the CLI's error handling does not catch it."""


@dataclass
class Case:
    """One mutated model on disk and the arguments ``inspect`` gets."""

    mutation: str
    path: Path
    args: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    case: int
    mutation: str
    exit_code: int | None
    seconds: float
    problem: str | None  # None: a defined ending
    output: str


# -- mutations -------------------------------------------------------------------------------------


def _bytes_of(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def _write(folder: Path, data: bytes, name: str = "model.onnx") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def truncate(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    cut = int(rng.integers(0, len(base)))
    return Case("truncate", _write(folder, base[:cut]))


def flip_bytes(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    data = bytearray(base)
    # mostly the protobuf structure (the first KBs and the tail hold the graph); sometimes anywhere
    for _ in range(int(rng.integers(1, 24))):
        where = int(rng.integers(0, min(len(data), 4096))) if rng.random() < 0.6 else int(rng.integers(0, len(data)))
        data[where] ^= 1 << int(rng.integers(0, 8))
    return Case("flip_bytes", _write(folder, bytes(data)))


def splice_bytes(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    data = bytearray(base)
    start = int(rng.integers(0, len(data)))
    length = int(rng.integers(1, 512))
    kind = rng.integers(0, 3)
    if kind == 0:
        del data[start:start + length]
    elif kind == 1:
        data[start:start] = data[start:start + length]
    else:
        data[start:start] = bytes(rng.integers(0, 256, length, dtype=np.uint8))
    return Case("splice_bytes", _write(folder, bytes(data)))


OPS = ["Conv", "Relu", "Add", "MatMul", "Gemm", "Reshape", "Softmax", "Expand", "Tile", "Resize", "Loop", "If",
       "ConstantOfShape", "Range", "NonZero", "Identity", "Gather", "Concat", "Split", "Hardmax", "Unknown", ""]


def edit_fields(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    graph = model.graph
    for _ in range(int(rng.integers(1, 4))):
        choice = int(rng.integers(0, 9))
        node = graph.node[int(rng.integers(0, len(graph.node)))] if graph.node else None
        if choice == 0 and node is not None:
            node.op_type = OPS[int(rng.integers(0, len(OPS)))]
        elif choice == 1 and node is not None:
            graph.node.remove(node)
        elif choice == 2 and node is not None and node.attribute:
            attr = node.attribute[int(rng.integers(0, len(node.attribute)))]
            big = [0, -1, 1 << 31, -(1 << 40), 7]
            if attr.ints:
                attr.ints[int(rng.integers(0, len(attr.ints)))] = big[int(rng.integers(0, len(big)))]
            else:
                attr.i = big[int(rng.integers(0, len(big)))]
                attr.type = onnx.AttributeProto.INT
        elif choice == 3:
            opset = [0, 1, 6, 13, 99, 1 << 30][int(rng.integers(0, 6))]
            model.opset_import[0].version = opset
        elif choice == 4:
            model.ir_version = int([0, 1, 3, 99, -1][int(rng.integers(0, 5))])
        elif choice == 5 and graph.initializer:
            graph.initializer.remove(graph.initializer[int(rng.integers(0, len(graph.initializer)))])
        elif choice == 6 and node is not None and node.output:
            node.output[0] = node.input[0] if node.input else "renamed"
        elif choice == 7:
            model.opset_import.add(domain="com.evil", version=1)
            if node is not None:
                node.domain = "com.evil"
        elif choice == 8 and node is not None:
            node.attribute.add().CopyFrom(helper.make_attribute("bogus", [1.5, float("nan")]))
    return Case("edit_fields", _write(folder, _bytes_of(model)))


def _dims_of(value: onnx.ValueInfoProto):
    return value.type.tensor_type.shape.dim


def change_shape(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    value = model.graph.input[0] if rng.random() < 0.6 else model.graph.output[0]
    dims = _dims_of(value)
    choice = int(rng.integers(0, 4))
    if choice == 0 and len(dims):
        dim = dims[int(rng.integers(0, len(dims)))]
        dim.dim_value = int([0, 1, 2, 5, 7, 64, 1000][int(rng.integers(0, 7))])
    elif choice == 1 and len(dims):
        dims.remove(dims[int(rng.integers(0, len(dims)))])
    elif choice == 2:
        dims.add().dim_value = int(rng.integers(1, 5))
    else:
        value.type.tensor_type.ClearField("shape")
    return Case("change_shape", _write(folder, _bytes_of(model)))


DTYPES = [t for t in TensorProto.DataType.values() if t != TensorProto.FLOAT]


def change_dtype(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    choice = int(rng.integers(0, 3))
    new = int(DTYPES[int(rng.integers(0, len(DTYPES)))])
    if choice == 0:
        model.graph.input[0].type.tensor_type.elem_type = new
    elif choice == 1:
        model.graph.output[0].type.tensor_type.elem_type = new
    elif model.graph.initializer:
        model.graph.initializer[int(rng.integers(0, len(model.graph.initializer)))].data_type = new
    return Case("change_dtype", _write(folder, _bytes_of(model)))


def dangling_input(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    graph = model.graph
    if rng.random() < 0.5:
        node = graph.node[int(rng.integers(0, len(graph.node)))]
        if node.input:
            node.input[int(rng.integers(0, len(node.input)))] = "nowhere"
        else:
            node.input.append("nowhere")
    else:
        name = graph.input[0].name
        graph.input.remove(graph.input[0])
        graph.input.add().CopyFrom(helper.make_tensor_value_info(name + "_other", TensorProto.FLOAT, [1, 3, 32, 32]))
    return Case("dangling_input", _write(folder, _bytes_of(model)))


def cycle(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    nodes = model.graph.node
    if len(nodes) >= 2:
        early = int(rng.integers(0, len(nodes) - 1))
        late = int(rng.integers(early + 1, len(nodes)))
        if nodes[early].input and nodes[late].output:
            nodes[early].input[0] = nodes[late].output[0]
        if rng.random() < 0.5:  # and out of order, so that the checker's sort is not what catches it
            first = onnx.NodeProto()
            first.CopyFrom(nodes[late])
            nodes.remove(nodes[late])
            nodes.insert(0, first)
    return Case("cycle", _write(folder, _bytes_of(model)))


def huge_dims(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    huge = int([100_000, 1 << 20, 1 << 31, 1 << 40, (1 << 62)][int(rng.integers(0, 5))])
    choice = int(rng.integers(0, 4))
    if choice == 0:
        dims = _dims_of(model.graph.input[0])
        for k in range(1, len(dims)):
            if rng.random() < 0.7:
                dims[k].dim_value = huge
    elif choice == 1:
        info = model.graph.value_info.add()
        info.CopyFrom(helper.make_tensor_value_info(model.graph.node[0].output[0], TensorProto.FLOAT,
                                                    [1, 64, huge, huge]))
    elif choice == 2 and model.graph.initializer:
        tensor = model.graph.initializer[int(rng.integers(0, len(model.graph.initializer)))]
        if len(tensor.dims):
            tensor.dims[0] = huge
        else:
            tensor.dims.append(huge)
    else:
        shape = helper.make_tensor("huge_shape", TensorProto.INT64, [4], [1, 3, huge, huge])
        model.graph.node.insert(0, helper.make_node("ConstantOfShape", ["huge_shape_in"], ["huge_fill"]))
        model.graph.node.insert(0, helper.make_node("Constant", [], ["huge_shape_in"], value=shape))
        first_conv = next((n for n in model.graph.node if n.op_type == "Conv"), None)
        if first_conv is not None:
            first_conv.input[0] = "huge_fill"
    return Case("huge_dims", _write(folder, _bytes_of(model)))


def external_data(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    """Move the largest initializer to a side file, then bend its external-data entry."""
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    payload = tensor.raw_data
    (folder / "weights.bin").write_bytes(payload)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": "weights.bin", "offset": "0", "length": str(len(payload))}
    trick = int(rng.integers(0, 11))
    if trick == 0:
        entries["location"] = "../" * int(rng.integers(1, 6)) + "etc/passwd"
    elif trick == 1:
        entries["location"] = "/dev/zero"
    elif trick == 2:
        os.symlink("/dev/zero", folder / "link.bin")
        entries["location"] = "link.bin"
    elif trick == 3:
        entries["location"] = "missing.bin"
    elif trick == 4:
        entries["offset"] = str(int(rng.integers(len(payload), 1 << 40)))
    elif trick == 5:
        entries["length"] = str(int([1 << 33, -5, len(payload) + 1][int(rng.integers(0, 3))]))
    elif trick == 6:
        entries["offset"] = "not a number"
    elif trick == 7:
        (folder / "sub").mkdir()
        entries["location"] = "sub"
    elif trick == 8:  # the same file named by many tensors
        for k in range(int(rng.integers(50, 2000))):
            copy = model.graph.initializer.add()
            copy.CopyFrom(tensor)
            copy.name = f"{tensor.name}_copy{k}"
    elif trick == 9:
        del entries["length"]
        with open(folder / "weights.bin", "ab") as handle:
            handle.truncate(len(payload) + int(rng.integers(1, 1 << 34)))  # sparse: large, nothing on disk
    else:
        entries["location"] = "model.onnx"
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return Case("external_data", _write(folder, _bytes_of(model)))


METADATA = [
    ("class_names", "[1, 2"), ("class_names", json.dumps(["a\n# b"] * 10)), ("class_names", json.dumps(["x"] * 3)),
    ("class_names", "\x1b[31m" * 1000), ("mean", "nan,nan,nan"), ("std", "0,0,0"), ("std", "1e400,1,1"),
    ("input_range", "1,0"), ("input_range", "a,b"), ("layout", "NWHC"), ("mean", "1,2"), ("labels", "x" * 100000),
]


def hostile_metadata(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    for _ in range(int(rng.integers(1, 3))):
        key, value = METADATA[int(rng.integers(0, len(METADATA)))]
        for prop in list(model.metadata_props):
            if prop.key == key:
                model.metadata_props.remove(prop)
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "\x1b]0;pwned\x07\n### fake"
    return Case("hostile_metadata", _write(folder, _bytes_of(model)))


def structure_then_bytes(rng: RNG, base: bytes, model: onnx.ModelProto, folder: Path) -> Case:
    case = edit_fields(rng, base, model, folder)
    flip_bytes(rng, case.path.read_bytes(), model, folder)
    return Case("structure_then_bytes", case.path)


MUTATIONS: list[Callable[[RNG, bytes, onnx.ModelProto, Path], Case]] = [
    truncate, flip_bytes, splice_bytes, edit_fields, change_shape, change_dtype, dangling_input, cycle, huge_dims,
    external_data, hostile_metadata, structure_then_bytes,
]


def make_case(seed: int, number: int, bases: list[tuple[bytes, onnx.ModelProto]], folder: Path) -> Case:
    """Case ``number`` of ``seed``: a base model and a mutation, both drawn from that pair alone."""
    rng = np.random.default_rng([seed, number])
    data, parsed = bases[int(rng.integers(0, len(bases)))]
    mutation = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
    model = onnx.ModelProto()
    model.CopyFrom(parsed)
    return mutation(rng, data, model, folder)


# -- running ---------------------------------------------------------------------------------------


def _alarm(_signum, _frame) -> None:
    raise CaseTimeout()


def judge(exit_code: int | None, output: str, exception: BaseException | None) -> str | None:
    """None when the run ended as the CLI promises; else what was wrong."""
    if exception is not None and not isinstance(exception, SystemExit):
        return f"exception {type(exception).__name__}: {exception}"
    if exit_code not in (0, 1, 2):
        return f"exit code {exit_code}"
    if "Traceback" in output or "internal error" in output:
        return "internal error"
    if exit_code == 2:
        lines = [line for line in output.splitlines() if line.strip()]
        if len(lines) != 1 or not lines[0].startswith("error: "):
            return f"{len(lines)} lines on exit 2"
    return None


def run_case(runner, main, case: Case, time_limit: float, number: int) -> Outcome:
    started = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        result = runner.invoke(main, ["inspect", "--no-parity", str(case.path), *case.args])
        exit_code, output, exception = result.exit_code, result.output, result.exception
    except CaseTimeout:
        return Outcome(number, case.mutation, None, time.perf_counter() - started, "hang", "")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - started
    problem = judge(exit_code, output, exception)
    if problem is None and seconds > time_limit:
        problem = "hang"
    return Outcome(number, case.mutation, exit_code, seconds, problem, output[-2000:])


def _keep(folder: Path, target: Path, limit: int = 16 << 20) -> None:
    """Copy a failing case's files, but not a large (often sparse) external-data file: note its size."""
    target.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.is_symlink():
            os.symlink(os.readlink(item), target / item.name)
        elif item.is_file() and item.stat().st_size > limit:
            (target / f"{item.name}.size").write_text(f"{item.stat().st_size}\n")
        elif item.is_file():
            shutil.copy2(item, target / item.name)


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``exec``, so a
    child of a large process (the test session) would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fuzz(seed: int, cases: int, first: int = 0, time_limit: float = 10.0, save_failures: Path | None = None,
         progress: bool = False) -> dict:
    """Run ``cases`` cases from ``first``; the figures as a dict."""
    import logging

    from click.testing import CliRunner

    from auditor.cli import main

    logging.disable(logging.WARNING)  # converter warnings would interleave with the one error line
    bases = []
    for path in sorted(SAMPLES.glob("*.onnx")):
        data = path.read_bytes()
        bases.append((data, onnx.load_from_string(data)))
    runner = CliRunner()
    previous = signal.signal(signal.SIGALRM, _alarm)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    rss_before = peak_rss_mb()
    try:
        for number in range(first, first + cases):
            folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
            try:
                case = make_case(seed, number, bases, folder)
                outcome = run_case(runner, main, case, time_limit, number)
                outcomes.append(outcome)
                if outcome.problem and save_failures is not None:
                    target = save_failures / f"case-{seed}-{number}"
                    _keep(folder, target)
                    (target / "outcome.json").write_text(json.dumps(outcome.__dict__, indent=2))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if progress and (number - first + 1) % 500 == 0:
                print(f"{number - first + 1} cases, {time.perf_counter() - started:.0f} s, "
                      f"peak RSS {peak_rss_mb():.0f} MB", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGALRM, previous)
        logging.disable(logging.NOTSET)
    problems = [o for o in outcomes if o.problem]
    return {
        "seed": seed, "first": first, "cases": len(outcomes), "seconds": round(time.perf_counter() - started, 1),
        "time_limit_s": time_limit,
        "exit_codes": dict(sorted(Counter(str(o.exit_code) for o in outcomes).items())),
        "mutations": dict(sorted(Counter(o.mutation for o in outcomes).items())),
        "crashes": sum(1 for o in problems if o.problem != "hang"),
        "hangs": sum(1 for o in problems if o.problem == "hang"),
        "slowest_case_s": round(max((o.seconds for o in outcomes), default=0.0), 2),
        "peak_rss_mb_before": round(rss_before),
        "peak_rss_mb": round(peak_rss_mb()),
        "problems": [o.__dict__ for o in problems[:50]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the case series (default 0).")
    parser.add_argument("--cases", type=int, default=1000, help="How many cases (default 1000).")
    parser.add_argument("--first", type=int, default=0, help="Number of the first case (to rerun one: --cases 1).")
    parser.add_argument("--time-limit", type=float, default=10.0, help="Seconds one case may take (default 10).")
    parser.add_argument("--json", type=Path, default=None, help="Write the figures here as JSON.")
    parser.add_argument("--save-failures", type=Path, default=None, help="Copy each failing case's files here.")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.save_failures is not None:
        args.save_failures.mkdir(parents=True, exist_ok=True)
    figures = fuzz(args.seed, args.cases, args.first, args.time_limit, args.save_failures, progress=True)
    text = json.dumps(figures, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    summary = {k: v for k, v in figures.items() if k != "problems"}
    print(json.dumps(summary, indent=2))
    for problem in figures["problems"][:10]:
        print(f"case {problem['case']} ({problem['mutation']}): {problem['problem']}: {problem['output'][-300:]}")
    return 1 if figures["crashes"] or figures["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
