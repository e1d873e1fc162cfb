"""The report of scripts/study, from the runs' metrics.jsonl: results.md (a Markdown table of the
final test top-1 per seed, with the median and the spread per method), results.json (the same
figures) and accuracy.png (test top-1 per epoch: the median over seeds, the band their range).

usage: study_report.py OUT --methods M... --seeds S...   (OUT/<method>/seed<S>/metrics.jsonl)
"""
import argparse
import json
import os
import statistics
import sys

LABELS = {
    "alone": "student alone",
    "kd": "KD",
    "mgd_amp": "MGD-AMP",
    "mgd_sm": "MGD-SM",
    "mgd_rd": "MGD-RD",
    "mgd_amp_kd": "MGD-AMP + KD",
}


def read_run(path):
    """Per-epoch test top-1 (the last record of each epoch wins, as after a resume), the final
    top-1 of the summary, the teacher's top-1, and the config's lines."""
    evals, final, teacher = {}, None, None
    with open(os.path.join(path, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            kind = rec.get("kind")
            if kind == "eval":
                evals[int(rec["epoch"])] = float(rec["acc1"])
            elif kind == "summary":
                final = float(rec["final_acc1"])
            elif kind == "teacher":
                teacher = float(rec["acc1"])
    wall = None
    wall_path = os.path.join(path, "wall_seconds")
    if os.path.exists(wall_path):
        with open(wall_path) as f:
            wall = int(f.read().strip() or 0)
    return {"epochs": evals, "final": final, "teacher": teacher, "wall": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", required=True)
    args = ap.parse_args()

    runs, missing = {}, []
    for m in args.methods:
        for s in args.seeds:
            d = os.path.join(args.out, m, "seed" + s)
            try:
                r = read_run(d)
            except (OSError, ValueError, KeyError) as e:
                missing.append(f"{d}: {e}")
                continue
            if r["final"] is None:
                missing.append(f"{d}: unfinished (no summary in metrics.jsonl)")
                continue
            runs[(m, s)] = r
    if missing:
        print("study_report: incomplete study:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1

    teachers = [r["teacher"] for r in runs.values() if r["teacher"] is not None]
    teacher = statistics.median(teachers) if teachers else None
    base = statistics.median(runs[("alone", s)]["final"] for s in args.seeds) \
        if "alone" in args.methods else None
    rows = []
    for m in args.methods:
        finals = [runs[(m, s)]["final"] for s in args.seeds]
        walls = [runs[(m, s)]["wall"] for s in args.seeds if runs[(m, s)]["wall"] is not None]
        med = statistics.median(finals)
        rows.append({
            "method": m,
            "label": LABELS.get(m, m),
            "final_top1": dict(zip(args.seeds, finals)),
            "median": med,
            "min": min(finals),
            "max": max(finals),
            "spread": max(finals) - min(finals),
            "gain_over_alone": None if base is None else med - base,
            "wall_seconds_mean": statistics.mean(walls) if walls else None,
        })

    seeds_hdr = " | ".join(f"seed {s}" for s in args.seeds)
    lines = [
        f"| method | {seeds_hdr} | median | spread (max-min) | median - alone | wall / run |",
        "|---" * (len(args.seeds) + 5) + "|",
    ]
    if teacher is not None:
        blank = " | ".join("" for _ in args.seeds)
        lines.append(f"| teacher (wrn_16_2) | {blank} | {teacher:.2f} | | | |")
    for r in rows:
        per_seed = " | ".join(f"{r['final_top1'][s]:.2f}" for s in args.seeds)
        gain = "" if r["gain_over_alone"] is None else f"{r['gain_over_alone']:+.2f}"
        wall = "" if r["wall_seconds_mean"] is None else f"{r['wall_seconds_mean']:.0f} s"
        lines.append(f"| {r['label']} | {per_seed} | **{r['median']:.2f}** | {r['spread']:.2f} | "
                     f"{gain} | {wall} |")
    total_wall = sum(r["wall"] or 0 for r in runs.values())
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("Final test top-1 (%) on Fashion-MNIST, ResNet-20 student; "
                f"{len(runs)} runs, {total_wall} s of run wall time in all.\n\n" + table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"teacher_top1": teacher, "seeds": args.seeds, "methods": rows,
                   "total_wall_seconds": total_wall}, f, indent=1)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    medians = []  # (epoch, median over seeds) of every method, for the zoom's range
    for r in rows:
        m = r["method"]
        epochs = sorted(set().union(*(runs[(m, s)]["epochs"].keys() for s in args.seeds)))
        med, lo, hi, xs = [], [], [], []
        for e in epochs:
            vals = [runs[(m, s)]["epochs"][e] for s in args.seeds if e in runs[(m, s)]["epochs"]]
            xs.append(e)
            med.append(statistics.median(vals))
            medians.append((e, med[-1]))
            lo.append(min(vals))
            hi.append(max(vals))
        for ax in axes:
            line, = ax.plot(xs, med, marker="o", ms=3, label=r["label"])
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    for ax in axes:
        if teacher is not None:
            ax.axhline(teacher, color="gray", ls="--", lw=1, label="teacher")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    last = max(max(runs[k]["epochs"].keys(), default=1) for k in runs)
    first_zoom = max(1, last // 2)
    # The zoom spans the medians (a seed's outlier may leave its band clipped).
    zoom_vals = [v for e, v in medians if e >= first_zoom]
    if zoom_vals:
        axes[1].set_xlim(first_zoom - 0.2, last + 0.2)
        axes[1].set_ylim(min(zoom_vals) - 0.5, max(zoom_vals) + 0.5)
    axes[0].set_title("test top-1 per epoch (median over seeds; band: range)")
    axes[1].set_title(f"epochs {first_zoom}-{last}, zoomed")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "accuracy.png"), dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
