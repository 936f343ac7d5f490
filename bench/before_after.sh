#!/usr/bin/env bash
# Before/after in one run: the same benchmarks against an earlier commit (checked out as a
# git worktree, run with this checkout's venv) and against this checkout, back to back, so
# both columns see the same machine.  Results: bench/results/before_after/<bench>_{before,after}.json
#
#   bash bench/before_after.sh [BASE_REF] [BENCH ...]
#   BASE_REF  default 169936b (main before the house restructuring and the fast path)
#   BENCH     any of: frigate submit detect classify (default: all)
#
# VISIONQ_BENCH_OUT=<dir>: where the JSON and PNG go.  VISIONQ_AFTER_REF=<ref>: the "after" side from a worktree of that commit too (instead of
# this checkout, which may hold uncommitted work).  VISIONQ_BENCH_HARNESS=current: both
# sides run this checkout's bench/ (same harness, only the product code differs).
# VISIONQ_BENCH_CLASSIFY_ARGS: the classify bench's command line instead of the default.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASE=${1:-169936b}
shift || true
BENCHES=("$@")
[ ${#BENCHES[@]} -eq 0 ] && BENCHES=(frigate submit detect classify)
PY=$ROOT/.venv/bin/python
OUT=${VISIONQ_BENCH_OUT:-$ROOT/bench/results/before_after}
# Beside the repo, like the repo itself: the benches read ../shared/fixtures.
WT=${VISIONQ_BASE_WORKTREE:-$ROOT/../visionq-base-$BASE}
mkdir -p "$OUT"
if [ ! -d "$WT" ]; then
  git worktree add --detach "$WT" "$BASE" >/dev/null
fi
ln -sfn "$ROOT/.venv" "$WT/.venv"
AFTER_DIR=$ROOT
if [ -n "${VISIONQ_AFTER_REF:-}" ]; then
  AFTER_DIR=$ROOT/../visionq-after-$(git rev-parse --short "$VISIONQ_AFTER_REF")
  [ -d "$AFTER_DIR" ] || git worktree add --detach "$AFTER_DIR" "$VISIONQ_AFTER_REF" >/dev/null
  ln -sfn "$ROOT/.venv" "$AFTER_DIR/.venv"
fi
if [ "${VISIONQ_BENCH_HARNESS:-}" = current ]; then
  for dir in "$WT" "$AFTER_DIR"; do
    [ "$dir" = "$ROOT" ] || { cp "$ROOT"/bench/*.py "$dir/bench/"; cp -r "$ROOT/bench/harness" "$dir/bench/"; }
  done
else
  # The base commit's own harness runs its code (its bench/ imports its modules); only
  # the command it lacks, frigate, is copied in (its harness was bench/*.py, not
  # bench/harness/) and started without the base's __main__, which does not know it.
  [ -d "$WT/bench/harness" ] || sed -e 's/bench\.harness\./bench./; s/from bench\.harness import/from bench import/' \
    -e 's/plots\.save(fig, \(.*\), dpi=\([0-9]*\))/fig.savefig(\1, dpi=\2)/' \
    "$ROOT/bench/frigate.py" > "$WT/bench/frigate.py"
fi
FRIGATE_MAIN='import argparse, sys
from bench import frigate
parser = argparse.ArgumentParser(prog="frigate")
frigate.add_arguments(parser)
frigate.run(parser.parse_args(sys.argv[1:]), ["frigate", *sys.argv[1:]])'

args_for() {
  case $1 in
    frigate) echo "frigate" ;;
    submit) echo "submit --rates 100,200,400,800 --duration 8" ;;
    detect) echo "detect-latency --duration 15 --capacity-rate 12" ;;
    classify) echo "${VISIONQ_BENCH_CLASSIFY_ARGS:-loadgen --task classify --rates 20,40,60,100 --duration 12 --slo-ms 250}" ;;
  esac
}
name_of() {
  case $1 in detect) echo detect_latency ;; classify) echo loadgen_classify ;; *) echo "$1" ;; esac
}

export C_FORCE_ROOT=1
for bench in "${BENCHES[@]}"; do
  for side in before after; do
    if [ "$side" = before ]; then dir=$WT; else dir=$AFTER_DIR; fi
    name="$(name_of "$bench")_$side"
    echo "== $bench ($side: $(git -C "$dir" rev-parse --short HEAD)) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$bench" = frigate ] && [ ! -d "$dir/bench/harness" ]; then
      (cd "$dir" && PYTHONPATH=$dir "$PY" -c "$FRIGATE_MAIN" --name "$name")
    else
      # shellcheck disable=SC2046
      (cd "$dir" && PYTHONPATH=$dir "$PY" -m bench $(args_for "$bench") --name "$name")
    fi
    mv "$dir/bench/results/$name".* "$OUT/" 2>/dev/null || true
    mv "$dir/bench/results/$name"_*.png "$OUT/" 2>/dev/null || true
  done
done
echo "results in $OUT"
