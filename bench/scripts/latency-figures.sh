#!/usr/bin/env bash
# The figures of bench/RESULTS.md, "issue 4": `rtpm latency --baseline` for both models,
# idle and under stress-ng on the general core, the real cyclictest beside them, and the
# built-in load with and without share_idle. Needs root (SCHED_FIFO) and two CPUs.
#
#   bench/scripts/latency-figures.sh [OUT_DIR]      (DURATION=60s by default, per side)
#   SHIELD=1 bench/scripts/latency-figures.sh       (the same inside `rtpm shield`: the rest of
#                                                    the system moved off the RT core; undone
#                                                    on exit)
#   CYCLICTEST=0 bench/scripts/latency-figures.sh   (without the real cyclictest's column)
#   INTERLEAVE=slices bench/scripts/latency-figures.sh   (baseline in alternate 1 s slices
#                                                    instead of wake-ups alternating with the
#                                                    executor's, the default)
#
# Each run writes OUT_DIR/<name>/{executor,baseline,cyclictest}.hgrm, latency.svg,
# result.json (the --json object) and table.txt (the human table).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/latency-figures}
duration=${DURATION:-60s}
short=${SHORT_DURATION:-30s}
interleave=${INTERLEAVE:-releases}
compare=--compare-cyclictest
if [ "${CYCLICTEST:-1}" = 0 ]; then compare=; fi
bench/scripts/install-load-tools.sh
cargo build --release -p rtpm-tools
rtpm=target/release/rtpm
mkdir -p "$out"
if [ "${SHIELD:-0}" = 1 ]; then
  "$rtpm" shield >&2
  trap '"$rtpm" shield --undo >&2' EXIT
fi
run() {
  local name=$1; shift
  echo "== $name: rtpm latency $*" >&2
  mkdir -p "$out/$name"
  "$rtpm" latency "$@" --interleave "$interleave" --out "$out/$name" --json >"$out/$name/result.json"
  python3 - "$out/$name/result.json" >"$out/$name/table.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cols = [k for k in ("executor", "baseline", "cyclictest") if r.get(k)]
print("%-8s" % "(us)" + "".join("%14s" % c for c in cols) + ("%10s" % "ratio" if r.get("ratios") else ""))
for key, label in (("min_ns", "min"), ("p50_ns", "p50"), ("p90_ns", "p90"), ("p99_ns", "p99"), ("p999_ns", "p99.9"), ("max_ns", "max"), ("samples", "samples")):
    line = "%-8s" % label + "".join(("%14.1f" % (r[c][key] / 1000) if key != "samples" else "%14d" % r[c][key]) for c in cols)
    if r.get("ratios") and key not in ("samples",):
        e, b = r["executor"][key], r["baseline"][key]
        line += "%10.2f" % (e / b if b else 0)
    print(line)
PY
  cat "$out/$name/table.txt" >&2
}
run threads-idle       --model threads     --load none      --duration "$duration" --baseline $compare
run cooperative-idle   --model cooperative --load none      --duration "$duration" --baseline $compare
run threads-stress     --model threads     --load stress-ng --duration "$duration" --baseline
run cooperative-stress --model cooperative --load stress-ng --duration "$duration" --baseline
run threads-builtin        --model threads --load builtin --duration "$short" --baseline
run threads-builtin-shared --model threads --load builtin --duration "$short" --baseline --share-idle
