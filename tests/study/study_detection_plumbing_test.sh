#!/usr/bin/env bash
# scripts/study --detection's plumbing, in seconds, with a stand-in for mgd that records how it
# is called and writes a finished run: the teacher runs first and alone, on every core of
# --jobs; each student gets its recipe, its seed, the smoke sizes, and (MGD) the teacher's
# best.pth and the tracking size; the report holds every method, the COCO table and one
# verdict per MGD method; a rerun skips all 7 runs. (tests/study/study_smoke_test.sh runs the
# real classification study; `scripts/study --detection --smoke` the real detection one.)
#   study_detection_plumbing_test.sh WORK_DIR
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$1
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

fake="$work/fake-mgd"
cat >"$fake" <<'SH'
#!/usr/bin/env bash
out="" args="$*"
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
echo "start $out $args" >>"$MGD_FAKE_CALLS"
sleep 0.2
ap=$(( ${#out} % 7 + 1 ))
printf '{"kind": "eval", "epoch": 1, "AP": %d.0, "AP50": 2.0, "AP75": 1.0, "APs": 0.5, "APm": 1.5, "APl": -1.0, "AR100": 3.0}\n' "$ap" >>"$out/metrics.jsonl"
printf '{"kind": "summary", "epoch": -1, "step": -1, "final_AP": %d.0, "best_AP": %d.0}\n' "$ap" "$ap" >>"$out/metrics.jsonl"
printf 'task: detection\narch: fake\n' >"$out/config.yaml"
touch "$out/best.pth" "$out/checkpoint.pth"
echo "end $out" >>"$MGD_FAKE_CALLS"
SH
chmod +x "$fake"

out="$work/study"
export MGD_FAKE_CALLS="$work/calls.txt"
log=$("$root/scripts/study" --detection --smoke --jobs 2 --mgd "$fake" --out "$out" 2>&1) || { echo "$log"; fail "the study failed"; }
calls=$MGD_FAKE_CALLS
[ -f "$calls" ] || { echo "$log"; fail "no call recorded"; }
[ "$(sed -n 1p "$calls" | cut -d' ' -f1-2)" = "start $out/teacher" ] || { cat "$calls"; fail "the teacher did not run first"; }
[ "$(sed -n 2p "$calls")" = "end $out/teacher" ] || { cat "$calls"; fail "a student started before the teacher finished"; }
grep -q "^start $out/teacher train --config recipes/study/detection/teacher.yaml --threads 2 " "$calls" ||
  { cat "$calls"; fail "the teacher's command"; }
grep "^start $out/teacher " "$calls" | grep -q -- '--seed' && fail "the teacher got a seed from the study"
for m in alone mgd_amp mgd_amp_ref; do
  for s in 0 1; do
    line=$(grep "^start $out/$m/seed$s " "$calls") || { cat "$calls"; fail "$m seed $s did not run"; }
    grep -q -- "--config recipes/study/detection/$m.yaml --seed $s " <<<"$line" || fail "$m seed $s: $line"
    grep -q -- "--epochs 1 --train-subset 320 " <<<"$line" || fail "$m seed $s: no smoke sizes: $line"
    if [ $m = alone ]; then
      grep -q "^start $out/$m/seed$s train " <<<"$line" || fail "alone is not mgd train: $line"
      grep -q -- '--teacher-checkpoint\|--tracking-images' <<<"$line" && fail "alone got MGD flags: $line"
    else
      grep -q "^start $out/$m/seed$s distill " <<<"$line" || fail "$m is not mgd distill: $line"
      grep -q -- "--tracking-images 32 --teacher-checkpoint $out/teacher/best.pth" <<<"$line" ||
        fail "$m seed $s: no tracking size or teacher: $line"
    fi
  done
done
/usr/bin/python3 - "$out/results.json" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert [m["method"] for m in r["methods"]] == ["alone", "mgd_amp", "mgd_amp_ref"], r["methods"]
for m in r["methods"]:
    finals = list(m["final_AP"].values())
    assert len(finals) == 2 and min(finals) <= m["median"] <= max(finals), m
    assert set(m["coco"]) == {"AP", "AP50", "AP75", "APs", "APm", "AR100"}, m["coco"]
assert r["teacher_AP"] is not None and r["teacher"]["AP50"] == 2.0, r
assert [v["method"] for v in r["verdicts"]] == ["mgd_amp", "mgd_amp_ref"], r["verdicts"]
for v in r["verdicts"]:
    assert v["exceeds"] == (v["gain"] > v["spread"]), v
PY
[ "$(head -c 8 "$out/ap.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "ap.png is not a PNG"
[ ! -e "$out/accuracy.png" ] || fail "the detection report wrote accuracy.png"
grep -q '| teacher (fake) |' "$out/results.md" || fail "results.md lacks the teacher row"
grep -q '| MGD-AMP, reference tracking, seed 1 |' "$out/results.md" || fail "results.md lacks the COCO table"
[ "$(grep -c 'the seed spread' "$out/results.md")" -eq 2 ] || fail "results.md lacks the two verdicts"

log=$("$root/scripts/study" --detection --smoke --jobs 2 --mgd "$fake" --out "$out" 2>&1) || { echo "$log"; fail "the rerun failed"; }
[ "$(grep -c 'finished earlier, skipped' <<<"$log")" -eq 7 ] || { echo "$log"; fail "the rerun did not skip all 7 runs"; }
echo "study --detection plumbing: teacher first, 6 student runs, report, skip OK"
