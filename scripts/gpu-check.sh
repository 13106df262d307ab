#!/usr/bin/env bash
# GPU readiness in one go, for a machine with CUDA (run from anywhere: `bash scripts/gpu-check.sh`):
#   1. the CUDA peak-memory probe (attnbench.measure.memory) reads a known 256 MiB allocation within 1 %;
#   2. NCCL works: an all_reduce in a one-process torchrun group;
#   3. one `attnbench train` step under torchrun (DDP with nccl when more than one GPU is visible; with one GPU
#      the trainer runs a single process and step 2 is the NCCL check);
#   4. `pytest -m cuda`;
#   5. a bf16 sweep of every registered method (xformers included) at N = 1024, 4096, 16384, 32768, infer and
#      train, with whatever of the budget is left (finished rows are kept if the budget cuts it).
# Everything fits in GPU_CHECK_BUDGET seconds (default 470, under 8 minutes); one summary table is printed at the
# end and the exit status is 1 if any step failed. Without CUDA it says so and exits 0.
# Environment: PYTHON (default python), GPU_CHECK_BUDGET (seconds), GPU_CHECK_OUT (work folder, default a temp dir).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PYTHON="${PYTHON:-python}"
BUDGET="${GPU_CHECK_BUDGET:-470}"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu-check: no CUDA device visible to torch here (a CPU machine): nothing to check, exiting 0."
    exit 0
fi

WORK="${GPU_CHECK_OUT:-$(mktemp -d -t gpu-check.XXXXXX)}"
mkdir -p "$WORK"
START=$SECONDS
declare -a ROWS=()
FAILED=0

left() { echo $((BUDGET - (SECONDS - START))); }

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to $WORK/NAME.log, record status and duration.
step() {
    local name="$1" limit="$2"; shift 2
    local t0=$SECONDS rc status
    echo "== $name (limit ${limit}s) =="
    timeout -s INT -k 10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then status=ok; elif [ "$rc" -eq 124 ]; then status=timeout; else status="failed (exit $rc)"; fi
    [ "$rc" -eq 0 ] || FAILED=1
    ROWS+=("$name|$status|$((SECONDS - t0))|$(tail -n 1 "$WORK/$name.log" | cut -c1-100)")
    [ "$rc" -eq 0 ] || tail -n 15 "$WORK/$name.log"
}

cat >"$WORK/memory_probe.py" <<'EOF'
import torch
from attnbench.measure.memory import measure_peak
known = 256 * 2**20
holder = []
peak = measure_peak(lambda: holder.append(torch.empty(known, dtype=torch.uint8, device="cuda").fill_(1)), "cuda")
err = abs(peak.peak_bytes - known) / known
print(f"probe read {peak.peak_bytes} B for a {known} B allocation: {100 * err:.3f} % off ({peak.method})")
raise SystemExit(0 if err <= 0.01 else 1)
EOF

cat >"$WORK/nccl_check.py" <<'EOF'
import os
import torch
import torch.distributed as dist
torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
dist.init_process_group("nccl")
rank = dist.get_rank()
t = torch.ones(1024, device="cuda") * (rank + 1)
dist.all_reduce(t)
world = dist.get_world_size()
assert t[0].item() == world * (world + 1) / 2, t[0].item()
v = torch.cuda.nccl.version()
print(f"nccl all_reduce over {world} process(es) ok, NCCL {'.'.join(map(str, v)) if isinstance(v, tuple) else v}")
dist.destroy_process_group()
EOF

GPUS=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
NPROC=$(( GPUS >= 2 ? 2 : 1 ))
"$PYTHON" -c 'import torch; print("gpu-check on", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)'

step memory-probe 60 "$PYTHON" "$WORK/memory_probe.py"
step nccl 90 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 "$WORK/nccl_check.py"
step torchrun-train 150 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m attnbench train \
    --model softmax --skeleton vit-tiny --depth 1 --data shapes:32:n=16:val=16 --recipe small --epochs 1 \
    --batch-size 16 --workers 0 --device cuda --progress plain --out "$WORK/train"
step pytest-cuda 150 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider tests
SWEEP_LIMIT=$(( $(left) - 15 ))
if [ "$SWEEP_LIMIT" -lt 30 ]; then
    ROWS+=("bf16-sweep|skipped|0|no budget left")
    FAILED=1
else
    step bf16-sweep "$SWEEP_LIMIT" "$PYTHON" -m attnbench run --models all --device cuda --dtype bf16 \
        --seq 1024..16384:*4,32768 --mode infer,train --skeleton layer --repeats 1 --max-retries 0 \
        --min-time 0.05 --timeout 60 --no-plots --out "$WORK" --name sweep
fi

# The sweep's rows by status (a cut sweep keeps its finished rows), and any row that is not ok.
SWEEP_SUMMARY=$("$PYTHON" - "$WORK/sweep/results.csv" <<'EOF'
import sys
from pathlib import Path
path = Path(sys.argv[1])
if not path.exists():
    print("no results.csv")
    raise SystemExit
import pandas as pd
df = pd.read_csv(path)
counts = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
print(f"{len(df)} cells, {df['model'].nunique()} methods: {counts}")
for _, r in df[df["status"] != "ok"].iterrows():
    print(f"  {r['model']} N={r['seq_len']} {r['mode']}: {r['status']}: {str(r['reason'])[:100]}")
EOF
)

echo
echo "gpu-check summary (${WORK}, $((SECONDS - START)) s of ${BUDGET} s)"
printf '%-15s | %-16s | %6s | %s\n' step status time detail
printf '%-15s-+-%-16s-+-%6s-+-%s\n' --------------- ---------------- ------ ------
for row in "${ROWS[@]}"; do
    IFS='|' read -r name status secs detail <<<"$row"
    [ "$name" = bf16-sweep ] && detail="$(head -n 1 <<<"$SWEEP_SUMMARY")"
    printf '%-15s | %-16s | %5ss | %s\n' "$name" "$status" "$secs" "$detail"
done
tail -n +2 <<<"$SWEEP_SUMMARY"
exit "$FAILED"
