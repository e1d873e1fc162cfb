"""The report of scripts/study, from the runs' metrics.jsonl: results.md (a Markdown table of the
final test top-1 per seed, with the median and the spread per method), results.json (the same
figures) and accuracy.png (test top-1 per epoch: the median over seeds, the band their range).
With --metric AP (scripts/study --detection) the same for COCO's AP, into ap.png, with the
other COCO figures (AP50, AP75, APs, APm, AR100) per run and per method beside it, the teacher
from its own run (--teacher-run), and whether MGD's median AP beats the student alone's by more
than the seeds' spread. With --metric knn_acc1 (scripts/study --moco) the MoCo runs' kNN top-1,
into knn.png, and with --linear-run NAME each run's linear evaluation (OUT/<method>/seed<S>/NAME,
the teacher's OUT/teacher/NAME) as a second table; a verdict for each MGD method on both.

usage: study_report.py OUT [--metric acc1|AP|knn_acc1] [--teacher-run DIR] [--linear-run NAME]
                       --methods M... --seeds S...
       (OUT/<method>/seed<S>/metrics.jsonl; DIR relative to OUT)
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
    "mgd_amp_ref": "MGD-AMP, reference tracking",
}
# The MoCo study's mgd_amp_ref is MGD with the reference's margins, not its tracking.
MOCO_LABELS = {
    "alone": "MoCo v2 alone",
    "mgd_amp": "MoCo v2 + MGD-AMP",
    "mgd_amp_ref": "MoCo v2 + MGD-AMP, reference margins",
}

# What the report says about each metric: the text of results.md, the keys of results.json,
# the plot's file and axis.
PROFILES = {
    "acc1": {
        "caption": "Final test top-1 (%) on Fashion-MNIST, ResNet-20 student",
        "teacher_key": "teacher_top1",
        "final_key": "final_top1",
        "teacher_label": "teacher (wrn_16_2)",
        "axis": "test top-1 (%)",
        "title": "test top-1 per epoch (median over seeds; band: range)",
        "plot": "accuracy.png",
    },
    "AP": {
        "caption": "Final AP (%, COCO's box protocol) on the synthetic Fashion-MNIST scenes' "
                   "validation set, RetinaNet-R10-FPN student",
        "teacher_key": "teacher_AP",
        "final_key": "final_AP",
        "teacher_label": "teacher ({arch})",
        "axis": "AP (%)",
        "title": "AP per epoch (median over seeds; band: range)",
        "plot": "ap.png",
    },
    "knn_acc1": {
        "caption": "Final kNN top-1 (%, k = 200 over the training images' features) on "
                   "Fashion-MNIST's test set, ResNet-20 student trained by MoCo v2",
        "teacher_key": "teacher_knn_top1",
        "final_key": "final_knn_top1",
        "teacher_label": "teacher ({arch})",
        "axis": "kNN top-1 (%)",
        "title": "kNN top-1 per epoch (median over seeds; band: range)",
        "plot": "knn.png",
    },
}
# Detection's figures reported beside AP, each from the run's last evaluation.
COCO_FIGURES = ["AP", "AP50", "AP75", "APs", "APm", "AR100"]


def read_run(path, metric="acc1"):
    """Per-epoch test metric (the last record of each epoch wins, as after a resume), the final
    one of the summary, the teacher's, every figure of the last evaluation, and the run's wall
    seconds."""
    evals, final, teacher, last = {}, None, None, {}
    with open(os.path.join(path, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            kind = rec.get("kind")
            if kind == "eval":
                evals[int(rec["epoch"])] = float(rec[metric])
                if int(rec["epoch"]) >= last.get("epoch", -1):
                    last = rec
            elif kind == "summary":
                final = float(rec["final_" + metric])
            elif kind == "teacher":
                teacher = float(rec[metric])
    wall = None
    wall_path = os.path.join(path, "wall_seconds")
    if os.path.exists(wall_path):
        with open(wall_path) as f:
            wall = int(f.read().strip() or 0)
    arch = teacher_arch = None
    config_path = os.path.join(path, "config.yaml")
    if os.path.exists(config_path):
        with open(config_path) as f:
            for line in f:
                if line.startswith("arch: "):
                    arch = line.split(":", 1)[1].strip()
                elif line.startswith("teacher_arch: "):
                    teacher_arch = line.split(":", 1)[1].strip()
    return {"epochs": evals, "final": final, "teacher": teacher, "wall": wall, "last": last,
            "arch": arch, "teacher_arch": teacher_arch}


def verdicts(rows, what, base_label):
    """For each MGD method of rows (dicts with method, label, median, spread), whether its
    median beats the "alone" row's by more than the larger of the two seed spreads: (the JSON
    records, the report's sentences); none without an "alone" row."""
    base = next((r for r in rows if r["method"] == "alone"), None)
    records, texts = [], []
    if base is None:
        return records, texts
    for r in rows:
        if not r["method"].startswith("mgd"):
            continue
        gain = r["median"] - base["median"]
        spread = max(r["spread"], base["spread"])
        beats = gain > spread
        records.append({"method": r["method"], "gain": gain, "spread": spread, "exceeds": beats})
        texts.append(
            f"{r['label']}: median {what} {r['median']:.2f} vs {base['median']:.2f} for "
            f"{base_label}, {gain:+.2f}; the larger of the two seed spreads is {spread:.2f}, so "
            f"the gain {'EXCEEDS' if beats else 'does NOT exceed'} the seed spread"
            f"{'' if beats else ' (no evidence over seed noise)'}.")
    return records, texts


def linear_table(args, rows, summary):
    """The MoCo study's linear evaluations: every run's final test top-1 (the teacher's first),
    each method's median and spread, and a verdict per MGD method. Adds them to summary.
    Returns (Markdown, missing runs)."""
    missing, finals = [], {}
    def final_of(d):
        try:
            r = read_run(d, "acc1")
        except (OSError, ValueError, KeyError) as e:
            missing.append(f"{d}: {e}")
            return None
        if r["final"] is None:
            missing.append(f"{d}: unfinished (no summary in metrics.jsonl)")
        return r
    teacher = final_of(os.path.join(args.out, "teacher", args.linear_run))
    for r in rows:
        for s in args.seeds:
            finals[(r["method"], s)] = final_of(
                os.path.join(args.out, r["method"], "seed" + s, args.linear_run))
    if missing:
        return None, missing
    seeds_hdr = " | ".join(f"seed {s}" for s in args.seeds)
    out = ["Linear evaluation (a linear classifier on the frozen encoder), final test top-1 (%):",
           "", f"| encoder | {seeds_hdr} | median | spread (max-min) | median - alone | wall / run |",
           "|---" * (len(args.seeds) + 5) + "|"]
    blank = " | ".join("" for _ in args.seeds)
    out.append(f"| teacher ({teacher['arch']}) | {blank} | {teacher['final']:.2f} | | | "
               f"{fmt_wall(teacher['wall'])} |")
    summary["linear"] = {"teacher_top1": teacher["final"], "methods": []}
    base = None
    for r in rows:
        vals = [finals[(r["method"], s)]["final"] for s in args.seeds]
        walls = [finals[(r["method"], s)]["wall"] for s in args.seeds
                 if finals[(r["method"], s)]["wall"] is not None]
        med, spread = statistics.median(vals), max(vals) - min(vals)
        rec = {"method": r["method"], "final_top1": dict(zip(args.seeds, vals)), "median": med,
               "spread": spread}
        if r["method"] == "alone":
            base = rec
        gain = "" if base is None else f"{med - base['median']:+.2f}"
        wall = f"{statistics.mean(walls):.0f} s" if walls else ""
        per_seed = " | ".join(f"{v:.2f}" for v in vals)
        out.append(f"| {r['label']} | {per_seed} | **{med:.2f}** | {spread:.2f} | {gain} | {wall} |")
        summary["linear"]["methods"].append(rec)
    out.append("")
    records, texts = verdicts([dict(rec, label=r["label"])
                               for rec, r in zip(summary["linear"]["methods"], rows)],
                              "linear top-1", "MoCo alone")
    for text in texts:
        out += [text, ""]
    summary["linear"]["verdicts"] = records
    return "\n".join(out), []


def fmt_wall(seconds):
    return "" if seconds is None else f"{seconds:.0f} s"


def coco_tables(args, runs, rows, teacher_run, summary):
    """Detection's further Markdown: every run's COCO figures (the teacher's first), each
    method's median and spread of them, and the verdict on MGD against the student alone.
    Adds the figures to summary (results.json)."""
    hdr = " | ".join(COCO_FIGURES)
    out = ["Every run's last evaluation (APl: the scenes hold no large objects):", "",
           f"| run | {hdr} | wall |", "|---" * (len(COCO_FIGURES) + 2) + "|"]
    if teacher_run is not None:
        vals = " | ".join(f"{teacher_run['last'].get(k, float('nan')):.2f}" for k in COCO_FIGURES)
        out.append(f"| teacher ({teacher_run['arch']}) | {vals} | {fmt_wall(teacher_run['wall'])} |")
        summary["teacher"] = {k: teacher_run["last"].get(k) for k in COCO_FIGURES}
        summary["teacher"]["wall_seconds"] = teacher_run["wall"]
    for r in rows:
        for s in args.seeds:
            run = runs[(r["method"], s)]
            vals = " | ".join(f"{run['last'].get(k, float('nan')):.2f}" for k in COCO_FIGURES)
            out.append(f"| {r['label']}, seed {s} | {vals} | {fmt_wall(run['wall'])} |")
    out += ["", "Median over seeds (spread: max - min):", "",
            f"| method | {hdr} |", "|---" * (len(COCO_FIGURES) + 1) + "|"]
    for r in rows:
        cells, figures = [], {}
        for k in COCO_FIGURES:
            vals = [runs[(r["method"], s)]["last"].get(k, float("nan")) for s in args.seeds]
            med, spread = statistics.median(vals), max(vals) - min(vals)
            figures[k] = {"median": med, "spread": spread}
            cells.append(f"{med:.2f} ({spread:.2f})")
        r["coco"] = figures
        out.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    out.append("")
    records, texts = verdicts(rows, "AP", "the student alone")
    for text in texts:
        out += [text, ""]
    summary["verdicts"] = records
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--metric", default="acc1", choices=sorted(PROFILES),
                    help="acc1 (classification), AP (detection) or knn_acc1 (MoCo)")
    ap.add_argument("--linear-run", default=None,
                    help="MoCo: each run's linear evaluation, in this subfolder of its run (and "
                         "of OUT/teacher)")
    ap.add_argument("--teacher-run", default=None,
                    help="the teacher's own run (relative to OUT): its final metric is the "
                         "teacher's row (default: the students' teacher evaluations)")
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", required=True)
    args = ap.parse_args()
    prof = PROFILES[args.metric]

    runs, missing = {}, []
    teacher_run = None
    if args.teacher_run is not None:
        d = os.path.join(args.out, args.teacher_run)
        try:
            teacher_run = read_run(d, args.metric)
            if teacher_run["final"] is None:
                missing.append(f"{d}: unfinished (no summary in metrics.jsonl)")
        except (OSError, ValueError, KeyError) as e:
            missing.append(f"{d}: {e}")
    for m in args.methods:
        for s in args.seeds:
            d = os.path.join(args.out, m, "seed" + s)
            try:
                r = read_run(d, args.metric)
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

    if teacher_run is not None:
        teacher = teacher_run["final"]
    else:
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
            "label": (MOCO_LABELS if args.metric == "knn_acc1" else LABELS).get(m, m),
            prof["final_key"]: dict(zip(args.seeds, finals)),
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
        arch = (teacher_run or {}).get("arch") or next(
            (r["teacher_arch"] for r in runs.values() if r["teacher_arch"]), None)
        label = prof["teacher_label"].format(arch=arch)
        lines.append(f"| {label} | {blank} | {teacher:.2f} | | | |")
    for r in rows:
        per_seed = " | ".join(f"{r[prof['final_key']][s]:.2f}" for s in args.seeds)
        gain = "" if r["gain_over_alone"] is None else f"{r['gain_over_alone']:+.2f}"
        wall = "" if r["wall_seconds_mean"] is None else f"{r['wall_seconds_mean']:.0f} s"
        lines.append(f"| {r['label']} | {per_seed} | **{r['median']:.2f}** | {r['spread']:.2f} | "
                     f"{gain} | {wall} |")
    total_wall = sum(r["wall"] or 0 for r in runs.values())
    n_runs = len(runs)
    if teacher_run is not None:
        total_wall += teacher_run["wall"] or 0
        n_runs += 1
    table = "\n".join(lines) + "\n"
    summary = {prof["teacher_key"]: teacher, "seeds": args.seeds, "methods": rows,
               "total_wall_seconds": total_wall}
    if args.metric == "AP":
        table += "\n" + coco_tables(args, runs, rows, teacher_run, summary)
    if args.metric == "knn_acc1":
        records, texts = verdicts(rows, "kNN top-1", "MoCo alone")
        for text in texts:
            table += "\n" + text + "\n"
        summary["verdicts"] = records
    if args.linear_run is not None:
        text, missing = linear_table(args, rows, summary)
        if missing:
            print("study_report: incomplete study:\n  " + "\n  ".join(missing), file=sys.stderr)
            return 1
        table += "\n" + text
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"{prof['caption']}; "
                f"{n_runs} runs, {total_wall} s of run wall time in all.\n\n" + table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)

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
        ax.set_ylabel(prof["axis"])
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    last = max(max(runs[k]["epochs"].keys(), default=1) for k in runs)
    first_zoom = max(1, last // 2)
    # The zoom spans the medians (a seed's outlier may leave its band clipped).
    zoom_vals = [v for e, v in medians if e >= first_zoom]
    if zoom_vals:
        axes[1].set_xlim(first_zoom - 0.2, last + 0.2)
        axes[1].set_ylim(min(zoom_vals) - 0.5, max(zoom_vals) + 0.5)
    axes[0].set_title(prof["title"])
    axes[1].set_title(f"epochs {first_zoom}-{last}, zoomed")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, prof["plot"]), dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
