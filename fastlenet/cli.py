"""The `fastlenet` command line (also `python -m fastlenet`).

    fastlenet predict PATH...     classify images, folders, globs, shards, .npy and IDX files
    fastlenet demo                the pretrained model on the bundled MNIST sample
    fastlenet eval FOLDER|CSV     accuracy on labelled images (or --images IDX --labels IDX)
    fastlenet bench               images/s and batch-1 latency here, beside NumPy and peers
    fastlenet inspect WEIGHTS     how a weights file maps to LeNet-5's canonical layout
    fastlenet config              ISA, OpenMP and threads of this build and machine

Exit codes: 0 success (also when the reader of stdout closes it early, as `| head` does), 1 when
an input or the weights could not be read (each reported on one stderr line, the other inputs
still processed), 2 for usage errors (argparse). User errors never print a traceback. The work
itself lives in fastlenet.pipeline; this module parses arguments and formats output.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import List, Optional

import numpy as np

from fastlenet.sources import safe_name

PROG = "fastlenet"


class UserError(Exception):
    """An error to report on one line (exit 1), without a traceback."""


class UsageError(UserError):
    """A combination of arguments argparse cannot check: usage message, exit 2."""


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# ---- argument types -------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {text!r}") \
            from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}")
    return v


# ---- the model ------------------------------------------------------------------------------
def _load_net(weights: Optional[str], layout: str = "auto", threads: Optional[int] = None):
    import fastlenet

    try:
        if weights is None:
            net = fastlenet.pretrained()
        elif weights in fastlenet.PRETRAINED and not os.path.exists(weights):
            net = fastlenet.pretrained(weights)  # a bundled model by name
        else:
            net = fastlenet.load(weights, layout=layout)
    except (OSError, ValueError, ImportError, KeyError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        where = weights or "the pretrained weights"
        raise UserError(msg if where in msg else f"cannot load weights {where}: {msg}") from None
    if threads is not None:
        net.num_threads = threads
    return net


def _add_model_options(p: argparse.ArgumentParser, batch: bool = True) -> None:
    p.add_argument("--weights", metavar="FILE",
                   help="weights file (any file fastlenet.load accepts: .npz, .onnx, "
                        ".safetensors, .keras, .h5), or a bundled model by name: digits (the "
                        "default: handwritten and printed digits) or mnist (trained on MNIST "
                        "alone)")
    p.add_argument("--layout", default="auto",
                   help="weights layout: auto (default), canonical, pytorch, keras, flax, onnx, "
                        "positional")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for inference (default: the CPUs this process may use)")
    if batch:
        p.add_argument("--batch-size", type=_positive_int, default=1024, metavar="N",
                       help="images per inference call (default 1024); memory stays bounded")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert pixel values: auto (default) decides per image from its frame, "
                        "so dark-on-light drawings suit a light-on-dark model")


def _add_file_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=_non_negative_int, metavar="N",
                   help="processes that read, decode and preprocess image files (default: the "
                        "CPUs this process may use; 0: none, all in this process)")
    p.add_argument("--preprocess", choices=("auto", "mnist", "none"), default="auto",
                   help="auto (default): image files get MNIST's preprocessing (ink box scaled "
                        "into 20x20, centred by centre of mass), IDX/.npy images of 28x28 or "
                        "32x32 are taken as model inputs; mnist: preprocess everything; none: "
                        "take everything as model inputs")
    p.add_argument("--raw", action="store_true",
                   help="the same as --preprocess none (files that are already 28x28 or 32x32 "
                        "model inputs)")
    p.add_argument("--max-pixels", type=_positive_int, metavar="N", default=None,
                   help="refuse images with more pixels than this, from their header "
                        "(default 40,000,000): decompression bombs")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (one is shown on a terminal when tqdm is installed)")


def _add_dask_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("on a Dask cluster (pip install 'fastlenet[dask]')")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on the Dask scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786), or "
                        "'local' for a LocalCluster of one worker process per CPU here; the "
                        "workers must see the same paths")
    g.add_argument("--output", metavar="FILE",
                   help="write the results to FILE.parquet (a directory of parts) or FILE.csv "
                        "(one file); needed with --scheduler, and without it runs the same job "
                        "on Dask's threads in this process")
    g.add_argument("--files-per-partition", type=_positive_int, metavar="N",
                   help="image files per Dask task (default 512; a shard, IDX or .npy file is "
                        "a task of its own)")


# ---- progress -------------------------------------------------------------------------------
class _Progress:
    """A tqdm bar on stderr (total when known, rate) when stderr is a terminal and tqdm is
    installed; else nothing. Error lines go through it so that they do not break the bar."""

    def __init__(self, enabled: bool, desc: str, total=None):
        self.bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                return
            try:  # a pseudo-terminal may report size 0x0: tqdm would then draw nothing
                sized = min(os.get_terminal_size(sys.stderr.fileno())) > 0
            except (OSError, ValueError):
                sized = False
            size = {"dynamic_ncols": True} if sized else {"ncols": 80, "nrows": 24}
            self.bar = tqdm(desc=desc, unit="img", total=total, file=sys.stderr,
                            smoothing=0.1, **size)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def error(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(f"{PROG}: {msg}", file=sys.stderr)
        else:
            _err(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_for(args, desc: str, sources) -> _Progress:
    progress = _Progress(args.progress, desc)
    if progress.active:  # count only when a bar shows it (a folder walk, headers)
        from fastlenet.sources import count

        try:
            progress.bar.total = count(sources)
            progress.bar.refresh()
        except Exception:  # a total is a nicety; the run reports real errors itself
            pass
    return progress


# ---- output ---------------------------------------------------------------------------------
class _Writer:
    """Prediction rows -> text, csv, json or jsonl on `out`, a batch at a time (one string
    per row, one write per batch)."""

    def __init__(self, fmt: str, classes: List[str], k: int, out):
        self.fmt, self.classes, self.k, self.out = fmt, classes, k, out
        self.count = 0
        if fmt == "csv":
            head = ["path", "member", "index", "label", "confidence"]
            for j in range(2, k + 1):
                head += [f"label_{j}", f"confidence_{j}"]
            out.write(",".join(head) + "\n")
        elif fmt == "json":
            out.write("[")

    def _csv_field(self, text: str) -> str:
        if any(c in text for c in ',"\r\n'):
            return '"' + text.replace('"', '""') + '"'
        return text

    def rows(self, preds) -> None:
        classes, k, fmt = self.classes, self.k, self.fmt
        lines = []
        for p in preds:
            if p.error is not None:
                continue
            top = p.top_k[:k]
            if fmt == "text":
                lines.append(safe_name(p.name) + "  " + "  ".join(
                    f"{classes[c]} {conf:.4f}" for c, conf in top) + "\n")
            elif fmt == "csv":
                lines.append(",".join(
                    [self._csv_field(safe_name(p.source)),
                     "" if p.member is None else self._csv_field(safe_name(p.member)),
                     "" if p.index is None else str(p.index)]
                    + [f"{self._csv_field(classes[c])},{conf:.6f}" for c, conf in top]) + "\n")
            else:
                rec = {"path": safe_name(p.source),
                       "member": None if p.member is None else safe_name(p.member),
                       "index": p.index, "label": classes[p.label], "class": p.label,
                       "confidence": round(p.confidence, 6),
                       "top": [{"label": classes[c], "class": c, "confidence": round(conf, 6)}
                               for c, conf in top]}
                if fmt == "jsonl":
                    lines.append(json.dumps(rec) + "\n")
                else:
                    lines.append((",\n" if self.count else "\n") + json.dumps(rec))
            self.count += 1
        if lines:
            self.out.write("".join(lines))
            self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


def _pipeline_options(args) -> dict:
    from fastlenet.pipeline import quiet_pillow

    quiet_pillow()  # one line per bad file on stderr, not Pillow's warnings about it
    return dict(batch_size=args.batch_size, workers=args.jobs, invert=args.invert,
                preprocess="none" if args.raw else args.preprocess,
                max_pixels=args.max_pixels)


# ---- predict --------------------------------------------------------------------------------
def cmd_predict(args) -> int:
    if args.scheduler is not None or args.output is not None:  # a Dask job: fastlenet/dask.py
        from fastlenet.dask import cli_predict

        return cli_predict(args)
    from fastlenet.pipeline import predict_batches

    net = _load_net(args.weights, args.layout, args.threads)
    k = min(args.top_k, net.num_classes)  # --top-k goes up to the model's K
    writer = _Writer(args.format, net.classes, k, sys.stdout)
    progress = _progress_for(args, "predict", args.paths)
    done = failed = 0
    batches = predict_batches(args.paths, net, top_k=k, **_pipeline_options(args))
    try:
        for rows in batches:
            for p in rows:
                if p.error is not None:
                    failed += 1
                    progress.error(f"{safe_name(p.name)}: {p.error}")
            done += len(rows)
            writer.rows(rows)
            progress.update(len(rows))
        writer.close()
    except ValueError as e:  # the model's metadata or an argument the pipeline refuses
        raise UserError(str(e)) from None
    finally:
        batches.close()  # stops the worker pool at once, also on a closed pipe or Ctrl-C
        progress.close()
    predicted = done - failed
    if done == 0:
        _err("no images found in " + ", ".join(safe_name(p) for p in args.paths))
        return 1
    if failed:
        _err(f"{failed} input(s) failed; {predicted} image(s) predicted")
        return 1
    return 0


# ---- demo -----------------------------------------------------------------------------------
ASCII_RAMP = " .:-=+*#%@"


def ascii_art(img: np.ndarray) -> List[str]:
    """A uint8 light-on-dark digit -> lines of ASCII, two characters per pixel."""
    idx = (img.astype(np.int32) * (len(ASCII_RAMP) - 1) + 127) // 255
    return ["".join(ASCII_RAMP[v] * 2 for v in row) for row in idx]


def _sample():
    from importlib.resources import files

    with np.load(files("fastlenet") / "data" / "mnist_sample.npz", allow_pickle=False) as z:
        return z["images"], z["labels"]


def _throughput(net, x, seconds):
    from fastlenet.bench import time_call

    per_batch = time_call(net.logits, x, seconds)
    latency = time_call(net.logits, x[:1], seconds)
    return len(x) / per_batch, latency


def cmd_demo(args) -> int:
    import fastlenet

    net = _load_net(None, threads=args.threads)
    x, y = _sample()
    pred = net.predict(x)
    proba = net.predict_proba(x)
    correct = int((pred == y).sum())
    meta = net.meta
    what = ("MNIST and printed digits" if meta.get("name") == "digits" else "MNIST")
    print(f"fastlenet {fastlenet.__version__}: the bundled LeNet-5 (trained on {what}) on "
          f"{len(x)} MNIST test digits")
    full = meta.get("test_accuracy")
    print(f"accuracy: {correct / len(x):.2%} ({correct}/{len(x)})"
          + (f"   [full 10,000-digit test set: {full:.2%}]" if full else ""))
    print()
    print("  #  label  predicted  confidence")
    for i in range(min(args.show, len(x))):
        mark = "" if pred[i] == y[i] else "   <- wrong"
        print(f"{i:3d}  {y[i]:5d}  {pred[i]:9d}  {proba[i, pred[i]]:10.4f}{mark}")
    wrong = np.flatnonzero(pred != y)
    if args.show:
        picks = [0] + ([int(wrong[0])] if len(wrong) else [1])
        arts = [ascii_art(x[i]) for i in picks]
        print()
        titles = [f"#{i}: label {y[i]}, predicted {pred[i]}" for i in picks]
        print("    ".join(t.ljust(56) for t in titles).rstrip())
        lines = ["    ".join(rows).rstrip() for rows in zip(*arts)]
        keep = [i for i, line in enumerate(lines) if line]
        for line in lines[keep[0]:keep[-1] + 1] if keep else []:
            print(line)
    print()
    batch = np.ascontiguousarray(np.resize(x, (args.batch, 28, 28)))
    ips, lat = _throughput(net, batch, args.seconds)
    print(f"throughput on this machine ({net.isa}, {net.num_threads} thread"
          f"{'s' if net.num_threads > 1 else ''}): {ips:,.0f} images/s at batch {len(batch)}, "
          f"batch-1 latency {lat * 1e6:.1f} us")
    return 0


# ---- eval -----------------------------------------------------------------------------------
def _read_idx_or_fail(path, what):
    from fastlenet import images

    try:
        return images.read_idx(path)
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
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a path,label CSV ({e})") from None
    base = os.path.dirname(path)
    files, labels = [], {}
    for n, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise UserError(f"{path}, line {n}: expected path,label; found {row!r}")
        if n == 1 and row[1].strip() not in classes and not row[1].strip().isdigit():
            continue  # a header
        p = os.path.join(base, row[0].strip())
        files.append(p)
        labels[p] = _class_index(row[1], classes, f"{path}, line {n}")
    if not files:
        raise UserError(f"{path}: no path,label rows")
    return files, labels.__getitem__


def cmd_eval(args) -> int:
    if args.plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # fail before the work, not after
            raise UserError("--plot needs matplotlib: pip install 'fastlenet[plot]'")
    net = _load_net(args.weights, args.layout, args.threads)
    classes = net.classes
    k = len(classes)
    if args.source and (args.images or args.labels):
        raise UsageError("give either a folder / CSV, or --images and --labels")
    if args.source:
        src = args.source
        if os.path.isdir(src):
            sources, label_of = _labelled_folder(src, classes)
        else:
            sources, label_of = _labelled_csv(src, classes)
        y_idx = None
    else:
        if not (args.images and args.labels):
            raise UsageError("expected a folder of class subfolders, a path,label CSV, or "
                             "--images IDX --labels IDX")
        from fastlenet.sources import iter_idx  # header check before any work

        y_idx = _read_idx_or_fail(args.labels, "labels")
        if y_idx.ndim != 1:
            raise UserError(f"{args.labels}: expected IDX labels (N, magic 0x00000801); found "
                            f"shape {y_idx.shape}")
        try:
            it = iter_idx(args.images, 1)
            next(it, None)
            it.close()
        except OSError as e:
            raise UserError(f"{args.images}: {e.strerror or e}") from None
        except ValueError as e:
            msg = str(e)
            if "not images" in msg:
                msg = f"expected IDX images (N x rows x cols, magic 0x00000803); {msg}"
            raise UserError(f"{args.images}: {msg}") from None
        from fastlenet.images import _open_idx

        f, _, shape = _open_idx(args.images)
        f.close()
        if shape[0] != len(y_idx):
            raise UserError(f"{shape[0]} images in {args.images} but {len(y_idx)} labels in "
                            f"{args.labels}")
        if y_idx.dtype.kind not in "iu" or (len(y_idx) and (y_idx.min() < 0
                                                            or y_idx.max() >= k)):
            raise UserError(f"{args.labels}: labels must be integers 0..{k - 1}")
        y_idx = y_idx.astype(np.int64)
        sources = [args.images]

        def label_of(path):  # pragma: no cover - IDX rows carry their index
            raise AssertionError

    from fastlenet.pipeline import predict_batches

    progress = _progress_for(args, "eval", sources)
    ys, preds, wrong_x, wrong_yp = [], [], [], []
    failed = 0
    # model inputs only for --plot's misclassified digits: without them the decode workers
    # classify their own chunks
    batches = predict_batches(sources, net, inputs=bool(args.plot), **_pipeline_options(args))
    try:
        for item in batches:
            rows, x = item if args.plot else (item, None)
            j = 0
            for p in rows:
                if p.error is not None:
                    failed += 1
                    progress.error(f"{safe_name(p.name)}: {p.error}")
                    continue
                t = int(y_idx[p.index]) if y_idx is not None else label_of(p.source)
                ys.append(t)
                preds.append(p.label)
                if p.label != t and len(wrong_x) < 36 and args.plot:
                    wrong_x.append(x[j])
                    wrong_yp.append((t, p.label))
                j += 1
            progress.update(len(rows))
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        batches.close()
        progress.close()
    y = np.asarray(ys, np.int64)
    pred = np.asarray(preds, np.int64)
    n = len(y)
    conf = np.zeros((k, k), np.int64)
    ok = pred >= 0  # -1 (NaN logits) never happens for real weights; counted as wrong
    np.add.at(conf, (y[ok], pred[ok]), 1)
    correct = int((pred == y).sum())
    if args.plot:  # before anything goes to stdout: a closed pipe must not lose the plot
        _plot(args.plot, conf, classes, wrong_x, wrong_yp, correct, n, int((pred != y).sum()))
    per_class = [(c, int((y == c).sum()), int(conf[c, c])) for c in range(k)]
    if args.format == "json":
        print(json.dumps({
            "images": n, "failed": failed, "correct": correct,
            "accuracy": correct / n if n else None,
            "per_class": {classes[c]: {"count": t, "correct": kk,
                                       "accuracy": kk / t if t else None}
                          for c, t, kk in per_class},
            "confusion": conf.tolist()}, indent=2))
    else:
        acc = f"{correct / n:.2%}" if n else "n/a"
        print(f"accuracy: {acc} ({correct}/{n})" + (f"; {failed} input(s) failed"
                                                    if failed else ""))
        print()
        print("class  count  correct  accuracy")
        for c, t, kk in per_class:
            print(f"{classes[c]:>5}  {t:5d}  {kk:7d}  " + (f"{kk / t:8.2%}" if t else "     n/a"))
        print()
        width = max(5, len(str(conf.max() if conf.size else 0)) + 1,
                    max(len(c) for c in classes) + 1)
        print("confusion matrix (rows: true class, columns: predicted)")
        print("      " + "".join(f"{classes[c]:>{width}}" for c in range(k)))
        for r in range(k):
            print(f"{classes[r]:>5} " + "".join(f"{v:>{width}d}" for v in conf[r]))
    if args.plot:
        print(f"\nwrote {args.plot}", file=sys.stderr if args.format == "json" else sys.stdout)
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


# ---- bench ----------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    import fastlenet
    from fastlenet import bench

    net = fastlenet.pretrained()
    weights, meta = net.weights, net.meta
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 1, 32, 32)).astype(np.float32)
    threads_list = list(range(1, fastlenet.DEFAULT_THREADS + 1))
    rows = []

    def measure(engine, threads, label=None, isa=None, batch=None):
        xb = x if batch is None else x[:batch]
        try:
            if isa is not None:
                run = bench.make_fastlenet(weights, meta, threads, isa=isa)
            else:
                run = bench.ENGINES[engine](weights, meta, threads)
            ips = len(xb) / bench.time_call(run, xb, args.seconds)
            lat = bench.time_call(run, xb[:1], args.seconds)
        except Exception as e:  # a peer that fails to build must not end the benchmark
            print(f"{label or engine:<14} failed: {type(e).__name__}: {e}".splitlines()[0])
            return
        row = (label or engine, isa or "-", threads, len(xb), ips, lat)
        rows.append(row)
        print(f"{row[0]:<14} {row[1]:<7} {row[2]!s:>7} {row[3]:>6} {ips:>14,.0f} "
              f"{lat * 1e6:>12.1f}", flush=True)

    print(f"{'engine':<14} {'isa':<7} {'threads':>7} {'batch':>6} {'images/s':>14} "
          f"{'batch-1 (us)':>12}")
    for isa in fastlenet.available_isas():
        for t in threads_list:
            measure("fastlenet", t, isa=isa)
    measure("numpy", "-")
    measure("reference", 1, batch=min(args.batch, 8))
    if args.peers:
        for engine in bench.PEERS:
            if engine == "torch.compile":
                continue  # compiling takes tens of seconds per thread count
            why = bench.unavailable(engine)
            if why:
                print(f"{engine:<14} skipped: {why}")
                continue
            for t in sorted({1, threads_list[-1]}):
                measure(engine, t)
    best = max((r for r in rows if r[0] == "fastlenet"), key=lambda r: r[4], default=None)
    if best:
        others = [r for r in rows if r[0] != "fastlenet" and r[3] == best[3]]
        if others:
            print()
            print(f"fastlenet ({best[1]}, {best[2]} threads) at batch {best[3]}: "
                  + ", ".join(f"{best[4] / r[4]:.1f}x {r[0]}"
                            + (f" ({r[2]} thr)" if r[2] != "-" else "") for r in others))
    return 0


# ---- inspect / config -----------------------------------------------------------------------
def cmd_inspect(args) -> int:
    from fastlenet import loader

    try:
        conv = loader.inspect(args.weights, layout=args.layout, strict=args.strict)
        meta = loader.check_meta(conv.meta, f"{args.weights}: metadata")
    except (OSError, ValueError, ImportError, KeyError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UserError(msg if args.weights in msg else f"{args.weights}: {msg}") from None
    count = sum(int(v.size) for v in conv.weights.values())
    print(f"{args.weights}")
    print(conv.describe())
    print(f"parameters: {count:,}")
    chans = "1 channel (grayscale)" if conv.in_channels == 1 else f"{conv.in_channels} channels (RGB)"
    print(f"input: {chans}, {meta.get('input_size') or 32}x{meta.get('input_size') or 32}")
    print(f"classes: {conv.num_classes}")
    if conv.meta:
        print("metadata:")
        for key, value in conv.meta.items():
            print(f"  {key}: {json.dumps(value)}")
    else:
        defaults = ", ".join(f"{k}={meta[k]}" for k in ("activation", "pool", "mean", "std"))
        print(f"metadata: none (defaults: {defaults})")
    return 0


def cmd_config(args) -> int:
    import fastlenet

    fastlenet.show_config()
    return 0


# ---- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    import fastlenet

    parser = argparse.ArgumentParser(
        prog=PROG, description="LeNet-5 inference on the CPU with C kernels.",
        epilog="Run 'fastlenet COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"fastlenet {fastlenet.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("predict", help="classify images, shards, .npy arrays, IDX files and "
                                       "folders",
                       description="Classify images (PNG, JPEG, BMP... via Pillow), folders "
                                   "(recursively, in natural order), glob patterns, .tar/.tar.gz/"
                                   ".zip shards of images (read as streams), .npy arrays (one "
                                   "image or a batch) and IDX files (gzipped or not). One line "
                                   "per image: path (path:member inside shards, path[index] "
                                   "inside multi-image files), label, confidence. Unreadable "
                                   "inputs: one line each on stderr, exit status 1 at the end.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--top-k", type=_positive_int, default=1, metavar="K",
                   help="show the K most likely classes (default 1)")
    p.add_argument("--format", choices=("text", "json", "jsonl", "csv"), default="text",
                   help="output format (default text; json is one array, jsonl one object "
                        "per line)")
    _add_model_options(p)
    _add_file_options(p)
    _add_dask_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="the pretrained model on the bundled MNIST sample",
                       description="Accuracy, a few predictions and the throughput of the "
                                   "bundled pretrained LeNet-5 on 500 MNIST test digits.")
    p.add_argument("--show", type=int, default=10, metavar="N",
                   help="predictions to list (default 10)")
    p.add_argument("--threads", type=_positive_int, metavar="N")
    p.add_argument("--batch", type=_positive_int, default=1000, metavar="N",
                   help="batch size for the throughput measurement (default 1000)")
    p.add_argument("--seconds", type=_positive_float, default=0.5, metavar="S",
                   help="time per throughput measurement (default 0.5)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("eval", help="accuracy and confusion matrix on labelled images",
                       description="Accuracy, per-class accuracy and the confusion matrix of a "
                                   "model on labelled images: a folder with one subfolder per "
                                   "class (named by the class, e.g. digits/7/*.png), a CSV of "
                                   "path,label rows (paths relative to the CSV), or IDX files "
                                   "(e.g. MNIST's t10k-images-idx3-ubyte.gz and "
                                   "t10k-labels-idx1-ubyte.gz).")
    p.add_argument("source", nargs="?", metavar="FOLDER|CSV",
                   help="a folder of class subfolders, or a path,label CSV")
    p.add_argument("--images", metavar="IDX", help="IDX images (N x rows x cols)")
    p.add_argument("--labels", metavar="IDX", help="IDX labels (N)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw the confusion matrix and misclassified digits (needs matplotlib: "
                        "pip install 'fastlenet[plot]')")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_model_options(p)
    _add_file_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="images/s and batch-1 latency on this machine",
                       description="Throughput and batch-1 latency of fastlenet at each thread "
                                   "count and ISA, beside NumPy, the SciPy reference and the "
                                   "peers that are installed (onnxruntime, openvino, torch).")
    p.add_argument("--batch", type=_positive_int, default=1000, metavar="N",
                   help="batch size for throughput (default 1000)")
    p.add_argument("--seconds", type=_positive_float, default=0.3, metavar="S",
                   help="time per measurement (default 0.3)")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure installed peers (default: yes)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("inspect", help="how a weights file maps to LeNet-5",
                       description="Detected framework and layout, each source key -> canonical "
                                   "name and shape, parameter count and metadata.")
    p.add_argument("weights", metavar="WEIGHTS")
    p.add_argument("--layout", default="auto",
                   help="auto (default), canonical, pytorch, keras, flax, onnx, positional")
    p.add_argument("--no-strict", dest="strict", action="store_false",
                   help="ignore extra arrays and break ties by name")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("config", help="ISA, OpenMP and threads of this build and machine")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        sub = parser._subparsers._group_actions[0].choices.get(args.command, parser)
        sub.error(str(e))  # exits 2
    except UserError as e:
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # `fastlenet predict dir | head`: the reader has what it wanted; stop quietly with
        # success, and point stdout at devnull so that the interpreter's final flush does not
        # complain again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
