#!/usr/bin/env bash
# Sweep a zoo recipe on a GPU machine: several (arch, epochs) settings at once, each built twice,
# once with 5,000 training images held out (the figures that decide) and once on the full training
# set (the candidate to ship). Test-set figures are in every manifest but only report.
#
#   scripts/zoo_sweep_gpu.sh OUT_DIR MODEL "resnet9-w16:60 resnet9-w24:60 ..." [DATA_ARCHIVE]
#
# DATA_ARCHIVE is CIFAR-10's train/ and test/ JPEG folders as a tar.xz (the machine has no
# ../shared/data; `tar cf - train test | xz -9` of the unzipped cifar10.zip is 18 MB); it is
# repacked into the cifar10.zip layout that auditor's loader reads. Without it, $AUDITOR_DATA_DIR
# or ../shared/data is used. Every build is one `auditor zoo build` command, recorded in the
# manifest it writes, so any one of them can be rerun alone.
set -euo pipefail

out=${1:?usage: $0 OUT_DIR MODEL "ARCH:EPOCHS ..." [DATA_ARCHIVE]}
model=${2:?usage: $0 OUT_DIR MODEL "ARCH:EPOCHS ..." [DATA_ARCHIVE]}
settings=${3:?usage: $0 OUT_DIR MODEL "ARCH:EPOCHS ..." [DATA_ARCHIVE]}
archive=${4:-}
validation=${VALIDATION:-5000}
device=${DEVICE:-cuda}
mkdir -p "$out"

if [ -n "$archive" ]; then
  data=$(mktemp -d)
  tar -xJf "$archive" -C "$data"
  python3 - "$data" <<'EOF'
import sys, zipfile
from pathlib import Path
root = Path(sys.argv[1])
with zipfile.ZipFile(root / "cifar10.zip", "w", zipfile.ZIP_STORED) as z:
    for p in sorted(root.glob("t*/*/*.jpg")):
        z.write(p, p.relative_to(root).as_posix())
EOF
  export AUDITOR_DATA_DIR=$data
fi
# decode once, before the builds start in parallel
python3 -c "from auditor.data.cifar10 import load_cifar10 as l; l('train'); l('test')"

pids=()
for setting in $settings; do
  arch=${setting%%:*}
  epochs=${setting##*:}
  for split in val full; do
    dir=$out/$arch-e$epochs-$split
    extra=()
    [ "$split" = val ] && extra=(--validation "$validation")
    python3 -m auditor.cli zoo build --model "$model" -o "$dir" --device "$device" --threads 2 \
      --set "arch=$arch" --set "epochs=$epochs" "${extra[@]}" >"$dir.log" 2>&1 &
    pids+=($!)
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

python3 - "$out" <<'EOF'
import json, sys
from pathlib import Path
rows = []
for manifest in sorted(Path(sys.argv[1]).glob("*/manifest.json")):
    for m in json.loads(manifest.read_text())["models"]:
        fig = m["metrics"]
        rows.append({"run": manifest.parent.name, "command": m["command"], "seconds": m["training_seconds"],
                     "machine": m["training_machine"], "validation": fig.get("validation"), "test": fig["test"],
                     "eval_subset": fig["eval_subset"], "sha256": m["sha256"]})
        v, t = fig.get("validation") or {}, fig["test"]
        pct = lambda d, k: "-" if d.get(k) is None else f"{100 * d[k]:.2f}"
        print(f"{manifest.parent.name:28s} val ACC {pct(v, 'acc'):>6s} ASR {pct(v, 'asr'):>6s} | "
              f"test ACC {pct(t, 'acc'):>6s} ASR {pct(t, 'asr'):>6s} | {m['training_seconds']:.0f} s")
(Path(sys.argv[1]) / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
EOF
exit $status
