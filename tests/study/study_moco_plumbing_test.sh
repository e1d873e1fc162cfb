#!/usr/bin/env bash
# scripts/study --moco's plumbing, in seconds, with a stand-in for mgd that records how it is
# called and writes a finished run: each MoCo run gets its recipe, its seed and the smoke
# sizes (MGD: the tracking size; the recipes name the shipped teacher), and is followed by
# its linear evaluation of its own final checkpoint; the shipped teacher gets one linear
# evaluation with its own architecture; the report holds the kNN and the linear tables and a
# verdict per MGD method on each; a rerun skips all 13 runs. (`scripts/study --moco --smoke`
# runs the real study.)
#   study_moco_plumbing_test.sh WORK_DIR
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$1
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

fake="$work/fake-mgd"
cat >"$fake" <<'SH'
#!/usr/bin/env bash
out="" args="$*" cmd=$1 config="" arch=resnet20
while [ $# -gt 0 ]; do
  case "$1" in -o) out=$2 ;; --config) config=$2 ;; --arch) arch=$2 ;; esac
  shift
done
echo "start $out $args" >>"$MGD_FAKE_CALLS"
sleep 0.2
v=$(( ${#out} % 7 + 60 ))
if [ "${config##*/}" = linear.yaml ]; then
  printf '{"kind": "eval", "epoch": 1, "acc1": %d.0, "acc5": 99.0}\n' "$v" >>"$out/metrics.jsonl"
  printf '{"kind": "summary", "epoch": -1, "step": -1, "final_acc1": %d.0, "best_acc1": %d.0}\n' "$v" "$v" >>"$out/metrics.jsonl"
  printf 'task: linear\narch: %s\n' "$arch" >"$out/config.yaml"
else
  [ "$cmd" = distill ] && printf '{"kind": "teacher", "epoch": 0, "knn_acc1": 80.0}\n' >>"$out/metrics.jsonl"
  printf '{"kind": "eval", "epoch": 1, "knn_acc1": %d.0, "knn_acc5": 99.0}\n' "$v" >>"$out/metrics.jsonl"
  printf '{"kind": "summary", "epoch": -1, "step": -1, "final_knn_acc1": %d.0, "best_knn_acc1": %d.0}\n' "$v" "$v" >>"$out/metrics.jsonl"
  printf 'task: moco\narch: resnet20\nteacher_arch: resnet8x4\n' >"$out/config.yaml"
fi
touch "$out/best.pth" "$out/checkpoint.pth"
echo "end $out" >>"$MGD_FAKE_CALLS"
SH
chmod +x "$fake"

out="$work/study"
export MGD_FAKE_CALLS="$work/calls.txt"
log=$("$root/scripts/study" --moco --smoke --jobs 2 --mgd "$fake" --out "$out" 2>&1) || { echo "$log"; fail "the study failed"; }
calls=$MGD_FAKE_CALLS
line=$(grep "^start $out/teacher/linear " "$calls") || { cat "$calls"; fail "the teacher's linear evaluation did not run"; }
grep -q -- "train --config recipes/study/moco/linear.yaml --arch resnet8x4 --init-backbone recipes/fashion_mnist_moco_teacher.pth " <<<"$line" ||
  fail "the teacher's linear evaluation: $line"
for m in alone mgd_amp mgd_amp_ref; do
  for s in 0 1; do
    line=$(grep "^start $out/$m/seed$s " "$calls") || { cat "$calls"; fail "$m seed $s did not run"; }
    grep -q -- "--config recipes/study/moco/$m.yaml --seed $s " <<<"$line" || fail "$m seed $s: $line"
    grep -q -- "--epochs 2 --train-subset 512 " <<<"$line" || fail "$m seed $s: no smoke sizes: $line"
    if [ $m = alone ]; then
      grep -q "^start $out/$m/seed$s train " <<<"$line" || fail "alone is not mgd train: $line"
      grep -q -- '--tracking-images' <<<"$line" && fail "alone got MGD flags: $line"
    else
      grep -q "^start $out/$m/seed$s distill " <<<"$line" || fail "$m is not mgd distill: $line"
      grep -q -- "--tracking-images 128" <<<"$line" || fail "$m seed $s: no tracking size: $line"
    fi
    lin=$(grep -n "^start $out/$m/seed$s/linear " "$calls") || { cat "$calls"; fail "$m seed $s: no linear evaluation"; }
    grep -q -- "train --config recipes/study/moco/linear.yaml --seed $s --init-backbone $out/$m/seed$s/checkpoint.pth " <<<"$lin" ||
      fail "$m seed $s's linear evaluation: $lin"
    end=$(grep -n "^end $out/$m/seed$s\$" "$calls" | cut -d: -f1)
    [ "${lin%%:*}" -gt "$end" ] || fail "$m seed $s: its linear evaluation started before it ended"
  done
done
/usr/bin/python3 - "$out/results.json" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert [m["method"] for m in r["methods"]] == ["alone", "mgd_amp", "mgd_amp_ref"], r["methods"]
for m in r["methods"]:
    finals = list(m["final_knn_top1"].values())
    assert len(finals) == 2 and min(finals) <= m["median"] <= max(finals), m
assert r["teacher_knn_top1"] == 80.0, r
lin = r["linear"]
assert lin["teacher_top1"] is not None, lin
assert [m["method"] for m in lin["methods"]] == ["alone", "mgd_amp", "mgd_amp_ref"], lin
for verdicts in (r["verdicts"], lin["verdicts"]):
    assert [v["method"] for v in verdicts] == ["mgd_amp", "mgd_amp_ref"], verdicts
    for v in verdicts:
        assert v["exceeds"] == (v["gain"] > v["spread"]), v
PY
[ "$(head -c 8 "$out/knn.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "knn.png is not a PNG"
grep -q '| teacher (resnet8x4) |' "$out/results.md" || fail "results.md lacks the teacher rows"
grep -q '| MoCo v2 + MGD-AMP, reference margins |' "$out/results.md" || fail "results.md lacks the linear table"
[ "$(grep -c 'the seed spread' "$out/results.md")" -eq 4 ] || fail "results.md lacks the four verdicts"

log=$("$root/scripts/study" --moco --smoke --jobs 2 --mgd "$fake" --out "$out" 2>&1) || { echo "$log"; fail "the rerun failed"; }
[ "$(grep -c 'finished earlier, skipped' <<<"$log")" -eq 13 ] || { echo "$log"; fail "the rerun did not skip all 13 runs"; }
echo "study --moco plumbing: 6 MoCo runs each followed by its linear evaluation, the teacher's, report, skip OK"
