#!/usr/bin/env bash
# How results/reference-cpu2-longrange/ is made, on the 2-core development VM (run from anywhere). Every step
# resumes: a training continues from its last finished epoch and skips the pairs that have a row, so the same
# command carries the reference over as many sessions as it takes (about 8 CPU-hours of training in all).
#
#   bash scripts/reference-longrange.sh train    # two lanes, one core each, in the background; logs in runs/
#   bash scripts/reference-longrange.sh eff      # latency and memory of every trained method: pauses the
#                                                # trainings (SIGSTOP) while cells are timed, then resumes them
#   bash scripts/reference-longrange.sh report   # joins everything into results/reference-cpu2-longrange/
#
# The protocol is the longrange recipe's (docs/training.md): vit-micro-d2, 12 epochs of fresh images, early stop
# once learned (--patience 3). Lane 1: the core five and the control at N = 256, three seeds, then the same pairs on
# shapes (--local-control). Lane 2: the ablations at N = 256 (two seeds), then softmax, SOFT and Nystromformer at
# N = 1024 (one seed) on a 30-epoch budget: under 12, softmax itself stayed at chance there (runs/n1024/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
R="${R:-results/reference-cpu2-longrange/runs}"
OUT="$(dirname "$R")"
COMMON=(--threads 1 --patience 3 --progress plain --log-interval 1000 --resume)
CORE=softmax,soft,performer,linformer,nystromformer,no-mixing
ABLATIONS=softmax-tied,gaussian-exact,gaussian-exact-rownorm,soft-matched
mkdir -p "$R"

lane1() {
    attnbench train --models "$CORE" --seq 256 --seeds 3 -p linformer.k=128 --local-control "${COMMON[@]}" \
        --out "$R/n256"
}

lane2() {
    attnbench train --models "$ABLATIONS" --seq 256 --seeds 2 "${COMMON[@]}" --out "$R/ablations"
    # 12 epochs were not enough at N = 1024: softmax stayed at chance (n1024/, seed 42); a longer budget for all
    attnbench train --models softmax,soft,nystromformer --seq 1024 --seeds 1 --epochs 30 "${COMMON[@]}" \
        --out "$R/n1024-e30"
}

trainings() { pgrep -f "attnbench train .*--out $R/" || true; }

case "${1:-}" in
    train)
        lane1 >>"$R/lane1.log" 2>&1 &
        lane2 >>"$R/lane2.log" 2>&1 &
        echo "started: tail -f $R/lane1.log $R/lane2.log"
        ;;
    eff)
        pids=$(trainings)
        [ -n "$pids" ] && kill -STOP $pids
        trap '[ -n "$pids" ] && kill -CONT $pids' EXIT
        resume=()
        [ -f "$R/eff/results.csv" ] && resume=(--resume)
        attnbench run --skeleton vit-micro-d2 --seq 256,1024 --models "$CORE,$ABLATIONS" -p linformer.k=128 \
            --mode infer --threads 1 --out "$R" --name eff "${resume[@]}"
        ;;
    report)
        runs=()
        for d in n256 n1024 n1024-e30 ablations eff; do [ -f "$R/$d/results.csv" ] && runs+=("$R/$d"); done
        attnbench report "${runs[@]}" --out "$OUT"
        ;;
    *)
        echo "usage: bash scripts/reference-longrange.sh train|eff|report" >&2
        exit 2
        ;;
esac
