#!/usr/bin/env bash
# scripts/study --smoke: all 6 methods x 2 seeds run, the report (table, JSON, PNG plot) is
# written, a second call skips every finished run, and an unfinished run is resumed.
#   study_smoke_test.sh MGD_BINARY WORK_DIR
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mgd=$1 out=$2
rm -rf "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }

log=$("$root/scripts/study" --smoke --jobs 1 --mgd "$mgd" --out "$out" 2>&1) || { echo "$log"; fail "the study failed"; }
for m in alone kd mgd_amp mgd_sm mgd_rd mgd_amp_kd; do
  for s in 0 1; do
    grep -q '"kind": "summary"' "$out/$m/seed$s/metrics.jsonl" || fail "$m seed $s did not finish"
    grep -q "^seed: $s\$" "$out/$m/seed$s/config.yaml" || fail "$m seed $s ran with another seed"
  done
done
grep -q '^method: mgd+kd$' "$out/mgd_amp_kd/seed0/config.yaml" || fail "mgd_amp_kd is not an MGD+KD run"
grep -q '^reducer: sm$' "$out/mgd_sm/seed0/config.yaml" || fail "mgd_sm does not use the SM reducer"
/usr/bin/python3 - "$out/results.json" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1]))
methods = [m["method"] for m in r["methods"]]
assert methods == ["alone", "kd", "mgd_amp", "mgd_sm", "mgd_rd", "mgd_amp_kd"], methods
for m in r["methods"]:
    finals = list(m["final_top1"].values())
    assert len(finals) == 2 and all(0 <= f <= 100 for f in finals), m
    assert min(finals) <= m["median"] <= max(finals), m
assert r["teacher_top1"] is not None
PY
[ "$(head -c 8 "$out/accuracy.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "accuracy.png is not a PNG"
grep -q '| MGD-AMP + KD |' "$out/results.md" || fail "results.md lacks the MGD-AMP + KD row"

# Rerun: everything finished is skipped.
log=$("$root/scripts/study" --smoke --jobs 1 --mgd "$mgd" --out "$out" 2>&1) || { echo "$log"; fail "the rerun failed"; }
[ "$(grep -c 'finished earlier, skipped' <<<"$log")" -eq 12 ] || { echo "$log"; fail "the rerun did not skip all 12 runs"; }

# An interrupted run (no summary yet, a checkpoint on disk) is resumed, not restarted.
sed -i '/"kind": "summary"/d' "$out/mgd_rd/seed1/metrics.jsonl"
log=$("$root/scripts/study" --smoke --jobs 1 --mgd "$mgd" --out "$out" 2>&1) || { echo "$log"; fail "the resume failed"; }
grep -q 'mgd_rd seed 1: resuming from' <<<"$log" || { echo "$log"; fail "mgd_rd seed 1 was not resumed"; }
grep -q '"kind": "summary"' "$out/mgd_rd/seed1/metrics.jsonl" || fail "the resumed run did not finish"
echo "study smoke: 12 runs, report, skip and resume OK"
