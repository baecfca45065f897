"""fastlenet eval: accuracy, per-class accuracy and the confusion matrix on labelled images."""
from __future__ import annotations

import json
import os
import sys
from typing import List

import numpy as np

from fastlenet.cli.common import (UsageError, UserError, _err, _pipeline_options, _progress_for,
                                  csv_rows, load_net)
from fastlenet.io import containers
from fastlenet.names import safe_name

def _read_idx_or_fail(path, what):
    try:
        return containers.read_idx(path)
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None


def _class_index(label: str, classes: List[str], where: str) -> int:
    """A label as written (a class name, or a class index) -> the class index."""
    text = label.strip()
    if text in classes:
        return classes.index(text)
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    raise UserError(f"{where}: label {safe_name(text)!r} is not a class of the model "
                    f"(expected one of {', '.join(classes)} or an index 0..{len(classes) - 1})")


def _labelled_folder(root: str, classes: List[str]):
    """A folder whose subfolder names give the labels -> (sources, label of a source path)."""
    subs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not subs:
        raise UserError(f"{root}: expected one subfolder per class (e.g. {root}/7/*.png); "
                        f"found none")
    index = {name: _class_index(name, classes, os.path.join(root, name)) for name in subs}
    paths = [os.path.join(root, name) for name in subs]

    def label_of(path: str) -> int:
        rel = os.path.relpath(path, root)
        return index[rel.split(os.sep, 1)[0]]

    return paths, label_of


def _labelled_csv(path: str, classes: List[str]):
    """A `path,label` CSV (paths relative to the CSV's folder; a header row is skipped)."""
    base = os.path.dirname(path)
    files, labels = [], {}
    for n, row in csv_rows(path, "path,label"):
        if n == 1 and row[1].strip() not in classes and not row[1].strip().isdigit():
            continue  # a header
        p = os.path.join(base, row[0].strip())
        files.append(p)
        labels[p] = _class_index(row[1], classes, f"{path}, line {n}")
    if not files:
        raise UserError(f"{path}: no path,label rows")
    return files, labels.__getitem__


def cmd_eval(args) -> int:
    if args.fields:
        if args.source or args.images or args.labels or args.plot:
            raise UsageError("--fields LABELS.csv takes no other source and no --plot")
        from fastlenet.cli.eval_fields import cmd_eval_fields

        return cmd_eval_fields(args)
    _check_plot_possible(args)
    net = load_net(args.weights, args.layout, args.threads,
                   precision=getattr(args, "precision", None))
    classes = net.classes
    sources, label_of, y_idx = _eval_sources(args, classes)
    tally = _collect(args, net, sources, label_of, y_idx)
    y = np.asarray(tally.ys, np.int64)
    pred = np.asarray(tally.preds, np.int64)
    n = len(y)
    conf = _confusion(y, pred, len(classes))
    correct = int((pred == y).sum())
    if args.plot:  # before anything goes to stdout: a closed pipe must not lose the plot
        _plot(args.plot, conf, classes, tally.wrong_x, tally.wrong_yp, correct, n,
              int((pred != y).sum()))
    per_class = [(c, int((y == c).sum()), int(conf[c, c])) for c in range(len(classes))]
    if args.format == "json":
        _print_json(conf, classes, per_class, correct, n, tally.failed)
    else:
        _print_text(conf, classes, per_class, correct, n, tally.failed)
    if args.plot:
        print(f"\nwrote {args.plot}", file=sys.stderr if args.format == "json" else sys.stdout)
    return _exit_status(tally.failed, n)


def _check_plot_possible(args) -> None:
    """--plot without matplotlib fails before the work, not after it."""
    if args.plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UserError("--plot needs matplotlib: pip install 'fastlenet[plot]'")


def _eval_sources(args, classes: List[str]):
    """The labelled inputs, whichever way they are given -> (sources, label of a source path,
    IDX labels or None)."""
    if args.source and (args.images or args.labels):
        raise UsageError("give either a folder / CSV, or --images and --labels")
    if args.source:
        if os.path.isdir(args.source):
            sources, label_of = _labelled_folder(args.source, classes)
        else:
            sources, label_of = _labelled_csv(args.source, classes)
        return sources, label_of, None
    if not (args.images and args.labels):
        raise UsageError("expected a folder of class subfolders, a path,label CSV, or "
                         "--images IDX --labels IDX")
    return _idx_sources(args, len(classes))


def _idx_sources(args, k: int):
    """--images/--labels IDX files, checked against each other before any work: IDX rows
    carry their index, so labels come from the label file, not from a path."""
    y_idx = _read_idx_or_fail(args.labels, "labels")
    if y_idx.ndim != 1:
        raise UserError(f"{args.labels}: expected IDX labels (N, magic 0x00000801); found "
                        f"shape {y_idx.shape}")
    _check_idx_images(args.images)
    shape = containers.idx_shape(args.images)
    if shape[0] != len(y_idx):
        raise UserError(f"{shape[0]} images in {args.images} but {len(y_idx)} labels in "
                        f"{args.labels}")
    if y_idx.dtype.kind not in "iu" or (len(y_idx) and (y_idx.min() < 0
                                                        or y_idx.max() >= k)):
        raise UserError(f"{args.labels}: labels must be integers 0..{k - 1}")

    def label_of(path):  # pragma: no cover - IDX rows carry their index
        raise AssertionError

    return [args.images], label_of, y_idx.astype(np.int64)


def _check_idx_images(path: str) -> None:
    """Read the images file's IDX header: a wrong file fails here with a clear message."""
    try:
        it = containers.iter_idx(path, 1)  # header check before any work
        next(it, None)
        it.close()
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    except ValueError as e:
        msg = str(e)
        if "not images" in msg:
            msg = f"expected IDX images (N x rows x cols, magic 0x00000803); {msg}"
        raise UserError(f"{path}: {msg}") from None


class _Tally:
    """What the run collects: true labels and predictions of the good rows, the failed count,
    and (for --plot) up to 36 misclassified model inputs."""

    def __init__(self):
        self.ys, self.preds, self.wrong_x, self.wrong_yp = [], [], [], []
        self.failed = 0


def _collect(args, net, sources, label_of, y_idx) -> _Tally:
    """Run the pipeline over the sources, reporting progress, and tally every row."""
    from fastlenet.pipeline.run import predict_batches

    progress = _progress_for(args, "eval", sources)
    tally = _Tally()
    # model inputs only for --plot's misclassified digits: without them the decode workers
    # classify their own chunks
    batches = predict_batches(sources, net, inputs=bool(args.plot), **_pipeline_options(args))
    try:
        for item in batches:
            rows, x = item if args.plot else (item, None)
            _tally_rows(tally, rows, x, y_idx, label_of, args.plot, progress)
            progress.update(len(rows))
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        batches.close()
        progress.close()
    return tally


def _tally_rows(tally: _Tally, rows, x, y_idx, label_of, plot, progress) -> None:
    """One batch's rows: a failed row is reported and counted, a good one is scored; x (the
    batch's model inputs, good rows only) is indexed by good rows."""
    j = 0
    for p in rows:
        if p.error is not None:
            tally.failed += 1
            progress.error(f"{safe_name(p.name)}: {p.error}")
            continue
        t = int(y_idx[p.index]) if y_idx is not None else label_of(p.source)
        tally.ys.append(t)
        tally.preds.append(p.label)
        if p.label != t and len(tally.wrong_x) < 36 and plot:
            tally.wrong_x.append(x[j])
            tally.wrong_yp.append((t, p.label))
        j += 1


def _confusion(y, pred, k: int):
    """The (k, k) confusion matrix, rows the true class, columns the predicted one."""
    conf = np.zeros((k, k), np.int64)
    ok = pred >= 0  # -1 (NaN logits) never happens for real weights; counted as wrong
    np.add.at(conf, (y[ok], pred[ok]), 1)
    return conf


def _print_json(conf, classes, per_class, correct, n, failed) -> None:
    """--format json: the same numbers as the text report, for programs."""
    print(json.dumps({
        "images": n, "failed": failed, "correct": correct,
        "accuracy": correct / n if n else None,
        "per_class": {classes[c]: {"count": t, "correct": kk,
                                   "accuracy": kk / t if t else None}
                      for c, t, kk in per_class},
        "confusion": conf.tolist()}, indent=2))


def _print_text(conf, classes, per_class, correct, n, failed) -> None:
    """The report for people: overall accuracy, a per-class table, the confusion matrix."""
    acc = f"{correct / n:.2%}" if n else "n/a"
    print(f"accuracy: {acc} ({correct}/{n})" + (f"; {failed} input(s) failed"
                                                if failed else ""))
    print()
    print("class  count  correct  accuracy")
    for c, t, kk in per_class:
        print(f"{classes[c]:>5}  {t:5d}  {kk:7d}  " + (f"{kk / t:8.2%}" if t else "     n/a"))
    print()
    _print_confusion(conf, classes)


def _print_confusion(conf, classes) -> None:
    """The confusion matrix as a table, columns wide enough for the largest count and name."""
    k = len(classes)
    width = max(5, len(str(conf.max() if conf.size else 0)) + 1,
                max(len(c) for c in classes) + 1)
    print("confusion matrix (rows: true class, columns: predicted)")
    print("      " + "".join(f"{classes[c]:>{width}}" for c in range(k)))
    for r in range(k):
        print(f"{classes[r]:>5} " + "".join(f"{v:>{width}d}" for v in conf[r]))


def _exit_status(failed: int, n: int) -> int:
    """Exit 1 when any input failed or nothing was evaluated, so scripts notice."""
    if failed:
        _err(f"{failed} input(s) failed; {n} image(s) evaluated")
        return 1
    if n == 0:
        _err("no images found")
        return 1
    return 0


def _plot(path, conf, classes, wrong_x, wrong_yp, correct, n, n_wrong) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    fig = plt.figure(figsize=(14, 6.5), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1])
    ax = left.subplots()
    ax.imshow(conf, cmap="Blues")
    if k <= 20:
        for r in range(k):
            for c in range(k):
                if conf[r, c]:
                    ax.text(c, r, str(conf[r, c]), ha="center", va="center", fontsize=8,
                            color="white" if conf[r, c] > conf.max() / 2 else "black")
    ax.set_xticks(range(k), classes)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: accuracy {correct / max(n, 1):.2%} ({correct}/{n})")
    right.suptitle(f"misclassified digits ({n_wrong}; up to 36 shown as the model saw them, "
                   f"true -> predicted)")
    axes = right.subplots(6, 6).ravel()
    for a in axes:
        a.axis("off")
    for a, img, (t, p) in zip(axes, wrong_x, wrong_yp):
        a.imshow(img, cmap="gray", vmin=0, vmax=1)
        a.set_title(f"{classes[t]} -> {classes[p] if p >= 0 else '?'}", fontsize=9)
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot write {path}: {e}") from None
    finally:
        plt.close(fig)
