"""The `fastlenet` command line (also `python -m fastlenet`).

    fastlenet predict PATH...     classify images, .npy arrays, IDX files, folders (recursively)
    fastlenet demo                the pretrained model on the bundled MNIST sample
    fastlenet eval --images IDX --labels IDX [--plot out.png]
    fastlenet bench               images/s and batch-1 latency here, beside NumPy and peers
    fastlenet inspect WEIGHTS     how a weights file maps to LeNet-5's canonical layout
    fastlenet config              ISA, OpenMP and threads of this build and machine

Exit codes: 0 success, 1 when an input or the weights could not be read (each reported on one
stderr line, the other inputs still processed), 2 for usage errors (argparse). User errors never
print a traceback.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Iterator, List, Optional

import numpy as np

PROG = "fastlenet"


class UserError(Exception):
    """An error to report on one line (exit 1), without a traceback."""


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
        else:
            net = fastlenet.load(weights, layout=layout)
    except (OSError, ValueError, ImportError, KeyError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        where = weights or "the pretrained weights"
        raise UserError(msg if where in msg else f"cannot load weights {where}: {msg}") from None
    if threads is not None:
        net.num_threads = threads
    return net


def _model_geometry(net):
    """(input size, foreground) from the model's metadata: input_size (default 32), foreground
    (default light-on-dark, as every MNIST-trained LeNet)."""
    meta = net.meta
    size = meta.get("input_size") or 32
    fg = meta.get("foreground") or "light-on-dark"
    from fastlenet.images import FOREGROUNDS

    if size not in (28, 32) or fg not in FOREGROUNDS:
        raise UserError(f"the model's metadata has input_size={size!r}, foreground={fg!r}; "
                        f"expected 28 or 32 and one of {', '.join(FOREGROUNDS)}")
    return int(size), fg


def _add_model_options(p: argparse.ArgumentParser, batch: bool = True) -> None:
    p.add_argument("--weights", metavar="FILE",
                   help="weights file (any file fastlenet.load accepts: canonical or other "
                        "frameworks' .npz, .onnx); default: the bundled pretrained MNIST model")
    p.add_argument("--layout", default="auto",
                   help="weights layout: auto (default), canonical, pytorch, keras, flax, onnx, "
                        "positional")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for inference (default: the CPUs this process may use)")
    if batch:
        p.add_argument("--batch-size", type=_positive_int, default=256, metavar="N",
                       help="images per inference call (default 256); memory stays bounded")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert pixel values: auto (default) decides per image from its border "
                        "brightness, so dark-on-light drawings suit a light-on-dark model")


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
    """A tqdm bar on stderr when stderr is a terminal and tqdm is installed; else nothing."""

    def __init__(self, enabled: bool, desc: str):
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
            self.bar = tqdm(desc=desc, unit="img", file=sys.stderr, **size)

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


def _model_batches(items, net, size, fg, invert, batch_size, progress) -> Iterator[tuple]:
    """images.Input records -> (inputs, uint8 batch) chunks; errors reported and counted."""
    from fastlenet import images

    names, arrays = [], []
    stats = {"failed": 0}
    for item in items:
        if item.error is None:
            try:
                arrays.append(images.to_model_input(item.image, size, invert, fg))
                names.append(item)
            except ValueError as e:
                item = item._replace(error=str(e))
        if item.error is not None:
            stats["failed"] += 1
            progress.error(f"{item.name}: {item.error}")
            continue
        if len(arrays) == batch_size:
            yield names, np.stack(arrays), stats
            names, arrays = [], []
    if arrays:
        yield names, np.stack(arrays), stats
    yield [], None, stats


# ---- predict --------------------------------------------------------------------------------
class _Writer:
    def __init__(self, fmt: str, classes: List[str], k: int, out):
        self.fmt, self.classes, self.k, self.out = fmt, classes, k, out
        self.count = 0
        if fmt == "csv":
            self.csv = csv.writer(out, lineterminator="\n")
            head = ["path", "index", "label", "confidence"]
            for j in range(2, k + 1):
                head += [f"label_{j}", f"confidence_{j}"]
            self.csv.writerow(head)
        elif fmt == "json":
            out.write("[")

    def rows(self, items, proba: np.ndarray) -> None:
        top = np.argsort(-proba, axis=1, kind="stable")[:, :self.k]
        lines = []
        for item, p, t in zip(items, proba, top):
            pairs = [(self.classes[c], float(p[c])) for c in t]
            if self.fmt == "text":
                lines.append(f"{item.name}  " + "  ".join(f"{lab} {conf:.4f}"
                                                         for lab, conf in pairs) + "\n")
            elif self.fmt == "csv":
                row = [item.path, "" if item.index is None else item.index]
                for lab, conf in pairs:
                    row += [lab, f"{conf:.6f}"]
                self.csv.writerow(row)
            else:
                rec = {"path": item.path, "index": item.index, "label": pairs[0][0],
                       "class": int(t[0]), "confidence": round(pairs[0][1], 6),
                       "top": [{"label": lab, "class": int(c), "confidence": round(conf, 6)}
                               for (lab, conf), c in zip(pairs, t)]}
                sep = "\n" if self.fmt == "jsonl" else (",\n" if self.count else "\n")
                lines.append((sep if self.fmt == "json" else "") + json.dumps(rec)
                             + ("\n" if self.fmt == "jsonl" else ""))
            self.count += 1
        self.out.write("".join(lines))
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


def cmd_predict(args) -> int:
    if args.scheduler is not None or args.output is not None:  # a Dask job: fastlenet/dask.py
        from fastlenet.dask import cli_predict

        return cli_predict(args)
    from fastlenet import images

    net = _load_net(args.weights, args.layout, args.threads)
    size, fg = _model_geometry(net)
    k = min(args.top_k, 10)
    writer = _Writer(args.format, net.classes, k, sys.stdout)
    progress = _Progress(args.progress, "predict")
    done, stats = 0, {"failed": 0}
    try:
        for items, batch, stats in _model_batches(images.iter_inputs(args.paths), net, size, fg,
                                                  args.invert, args.batch_size, progress):
            if batch is None:
                break
            writer.rows(items, net.predict_proba(batch))
            done += len(items)
            progress.update(len(items))
    finally:
        progress.close()
        writer.close()
    if done == 0 and stats["failed"] == 0:
        _err("no images found in " + ", ".join(args.paths))
        return 1
    if stats["failed"]:
        _err(f"{stats['failed']} input(s) failed; {done} image(s) predicted")
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
    print(f"fastlenet {fastlenet.__version__}: the bundled LeNet-5 (trained on MNIST) on "
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


def cmd_eval(args) -> int:
    from fastlenet import images

    if args.plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # fail before the work, not after
            raise UserError("--plot needs matplotlib: pip install 'fastlenet[plot]'")
    net = _load_net(args.weights, args.layout, args.threads)
    size, fg = _model_geometry(net)
    x = _read_idx_or_fail(args.images, "images")
    y = _read_idx_or_fail(args.labels, "labels")
    if x.ndim != 3:
        raise UserError(f"{args.images}: expected IDX images (N x rows x cols, magic "
                        f"0x00000803); found shape {x.shape}")
    if y.ndim != 1:
        raise UserError(f"{args.labels}: expected IDX labels (N, magic 0x00000801); found shape "
                        f"{y.shape}")
    if len(x) != len(y):
        raise UserError(f"{len(x)} images in {args.images} but {len(y)} labels in "
                        f"{args.labels}")
    if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise UserError(f"{args.labels}: labels must be integers 0..9")
    y = y.astype(np.int64)
    n = len(x)
    pred = np.empty(n, np.int64)
    progress = _Progress(args.progress, "eval")
    prepared = [] if args.plot else None
    try:
        for start in range(0, n, args.batch_size):
            chunk = x[start:start + args.batch_size]
            try:
                batch = np.stack([images.to_model_input(im, size, args.invert, fg)
                                  for im in chunk])
            except ValueError as e:
                raise UserError(f"{args.images}: {e}") from None
            pred[start:start + len(chunk)] = net.predict(batch)
            if prepared is not None:
                prepared.append(batch)
            progress.update(len(chunk))
    finally:
        progress.close()
    conf = np.zeros((10, 10), np.int64)
    np.add.at(conf, (y, pred.clip(0, 9)), 1)  # -1 (NaN logits) never happens for real weights
    correct = int((pred == y).sum())
    classes = net.classes
    per_class = [(c, int(conf[c].sum()), int(conf[c, c])) for c in range(10)]
    if args.format == "json":
        print(json.dumps({
            "images": n, "correct": correct, "accuracy": correct / n if n else None,
            "per_class": {classes[c]: {"count": t, "correct": k,
                                       "accuracy": k / t if t else None}
                          for c, t, k in per_class},
            "confusion": conf.tolist()}, indent=2))
    else:
        acc = f"{correct / n:.2%}" if n else "n/a"
        print(f"accuracy: {acc} ({correct}/{n})")
        print()
        print("class  count  correct  accuracy")
        for c, t, k in per_class:
            print(f"{classes[c]:>5}  {t:5d}  {k:7d}  " + (f"{k / t:8.2%}" if t else "     n/a"))
        print()
        width = max(5, len(str(conf.max())) + 1)
        print("confusion matrix (rows: true class, columns: predicted)")
        print("      " + "".join(f"{classes[c]:>{width}}" for c in range(10)))
        for r in range(10):
            print(f"{classes[r]:>5} " + "".join(f"{v:>{width}d}" for v in conf[r]))
    if args.plot:
        _plot(args.plot, conf, classes, np.concatenate(prepared) if prepared else x,
              y, pred, fg, correct, n)
        print(f"\nwrote {args.plot}", file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


def _plot(path, conf, classes, x, y, pred, fg, correct, n) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = np.flatnonzero(pred != y)[:36]
    fig = plt.figure(figsize=(14, 6.5), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1])
    ax = left.subplots()
    ax.imshow(conf, cmap="Blues")
    for r in range(10):
        for c in range(10):
            if conf[r, c]:
                ax.text(c, r, str(conf[r, c]), ha="center", va="center", fontsize=8,
                        color="white" if conf[r, c] > conf.max() / 2 else "black")
    ax.set_xticks(range(10), classes)
    ax.set_yticks(range(10), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: accuracy {correct / max(n, 1):.2%} ({correct}/{n})")
    right.suptitle(f"misclassified digits ({len(np.flatnonzero(pred != y))}; "
                   f"up to 36 shown, true -> predicted)")
    axes = right.subplots(6, 6).ravel()
    cmap = "gray" if fg == "light-on-dark" else "gray_r"
    for a in axes:
        a.axis("off")
    for a, i in zip(axes, wrong):
        a.imshow(x[i], cmap=cmap if x.dtype == np.uint8 else "gray", vmin=0,
                 vmax=255 if x.dtype == np.uint8 else None)
        a.set_title(f"{classes[y[i]]} -> {classes[pred[i]] if pred[i] >= 0 else '?'}",
                    fontsize=9)
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

    p = sub.add_parser("predict", help="classify images, .npy arrays, IDX files and folders",
                       description="Classify images (PNG, JPEG, BMP... via Pillow), .npy arrays "
                                   "(one image or a batch), IDX files (gzipped or not) and "
                                   "folders (recursively, in sorted order). One line per image: "
                                   "path (with [index] inside multi-image files), label, "
                                   "confidence.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--top-k", type=_positive_int, default=1, metavar="K",
                   help="show the K most likely classes (default 1)")
    p.add_argument("--format", choices=("text", "json", "jsonl", "csv"), default="text",
                   help="output format (default text; json is one array, jsonl one object "
                        "per line)")
    _add_model_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (one is shown on a terminal when tqdm is installed)")
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

    p = sub.add_parser("eval", help="accuracy and confusion matrix on IDX images and labels",
                       description="Accuracy, per-class accuracy and the confusion matrix of a "
                                   "model on IDX files (e.g. MNIST's t10k-images-idx3-ubyte.gz "
                                   "and t10k-labels-idx1-ubyte.gz).")
    p.add_argument("--images", required=True, metavar="IDX", help="IDX images (N x rows x cols)")
    p.add_argument("--labels", required=True, metavar="IDX", help="IDX labels (N)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw the confusion matrix and misclassified digits (needs matplotlib: "
                        "pip install 'fastlenet[plot]')")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_model_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false")
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
    except UserError as e:
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # `fastlenet predict dir | head`: stop quietly; point stdout at devnull so that the
        # interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
