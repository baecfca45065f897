"""What every command shares: errors without tracebacks, argument types and options, the one
place a --weights value becomes a Net, the progress bar."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Optional

from fastlenet import models
from fastlenet.io import sources
from fastlenet.names import safe_name
from fastlenet.pixels import INVERT_CHOICES

PROG = "fastlenet"


class UserError(Exception):
    """An error to report on one line (exit 1), without a traceback."""


class UsageError(UserError):
    """A combination of arguments argparse cannot check: usage message, exit 2."""


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


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


# ---- labelled CSVs (eval) ---------------------------------------------------------------------
def csv_rows(path: str, what: str):
    """(line number, row) of a labelled CSV's non-empty rows, each of two fields at least;
    `what` names the columns in messages ("path,label")."""
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise UserError(f"{path}: {e.strerror or e}") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a {what} CSV ({e})") from None
    for n, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise UserError(f"{path}, line {n}: expected {what}; found {row!r}")
        yield n, row


# ---- the model -----------------------------------------------------------------------------
def load_net(weights: Optional[str], layout: str = "auto", threads: Optional[int] = None,
             precision: Optional[str] = None):
    """--weights as a Net (None: the bundled "digits"); --precision int8 quantizes it (None: as
    the file says)."""
    try:
        net = models.open_net(weights, layout)
        if precision is not None and precision != net.precision:
            if net.precision == "int8":
                raise ValueError("the file holds an int8 model; --precision fp32 needs its fp32 "
                                 "source")
            if net.activation == "relu":
                raise ValueError("a relu model needs calibration images for int8: quantize it "
                                 "in Python (net.quantize(calibration).save(path)) and pass "
                                 "that file")
            net = net.quantize(precision=precision)
    except (OSError, ValueError, ImportError, KeyError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        where = weights or "the pretrained weights"
        raise UserError(msg if where in msg else f"cannot load weights {where}: {msg}") from None
    except Exception as e:  # a weights file is untrusted: whatever else it provokes is one line
        raise UserError(f"cannot load weights {weights or 'the pretrained weights'}: "
                        f"{type(e).__name__}: {e}") from None
    if threads is not None:
        net.num_threads = threads
    return net


def load_field_nets(weights: Optional[list], layout: str = "auto",
                    threads: Optional[int] = None, precision: Optional[str] = None) -> tuple:
    """The Nets of read and eval --fields: each --weights given (read together), or none: the
    bundled models (fastlenet.fields.default_nets; --precision fp32/int8 forces theirs, else
    int8 where this CPU has int8 kernels)."""
    from fastlenet import fields

    if weights:
        return tuple(load_net(w, layout, threads, precision) for w in weights)
    try:
        nets = fields.default_nets(precision or "auto")
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the pretrained weights: {e}") from None
    if threads is not None:
        for n in nets:
            n.num_threads = threads
    return nets


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
    _add_precision_option(p)
    if batch:
        p.add_argument("--batch-size", type=_positive_int, default=1024, metavar="N",
                       help="images per inference call (default 1024); memory stays bounded")
    p.add_argument("--invert", choices=INVERT_CHOICES, default="auto",
                   help="invert pixel values: auto (default) decides per image from its frame, "
                        "so dark-on-light drawings suit a light-on-dark model")


def _add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("fp32", "int8"), default=None,
                   help="run the model in fp32 or int8 (default: as the weights file says, "
                        "fp32 for the bundled models); int8 quantizes tanh/sigmoid models "
                        "without calibration")


def _add_file_options(p: argparse.ArgumentParser, preprocess: bool = True) -> None:
    p.add_argument("--jobs", "-j", type=_non_negative_int, metavar="N",
                   help="processes that read, decode and preprocess image files (default: the "
                        "CPUs this process may use; 0: none, all in this process)")
    if preprocess:
        _add_preprocess_options(p)
    p.add_argument("--max-pixels", type=_positive_int, metavar="N", default=None,
                   help="refuse images with more pixels than this, from their header "
                        "(default 40,000,000): decompression bombs")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (one is shown on a terminal when tqdm is installed)")


def _add_preprocess_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preprocess", choices=("auto", "mnist", "none"), default="auto",
                   help="auto (default): image files get MNIST's preprocessing (ink box scaled "
                        "into 20x20, centred by centre of mass), IDX/.npy images of 28x28 or "
                        "32x32 are taken as model inputs; mnist: preprocess everything; none: "
                        "take everything as model inputs")
    p.add_argument("--raw", action="store_true",
                   help="the same as --preprocess none (files that are already 28x28 or 32x32 "
                        "model inputs)")


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


# ---- output rows ---------------------------------------------------------------------------
def csv_field(text: str) -> str:
    """One CSV field, quoted when it holds a comma, a quote or a line break."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


class RowWriter:
    """Rows -> text, csv, json or jsonl on `out`, a batch at a time (one string per row, one
    write per batch): the framing every command shares. A subclass turns one row into its text
    or csv line (`line`) or its JSON record (`record`), or None to leave the row out."""

    def __init__(self, fmt: str, out, csv_header: list):
        self.fmt, self.out, self.count = fmt, out, 0
        if fmt == "csv":
            out.write(",".join(csv_header) + "\n")
        elif fmt == "json":
            out.write("[")

    def line(self, row):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def record(self, row):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def rows(self, rows) -> None:
        lines = []
        for row in rows:
            if self.fmt in ("text", "csv"):
                text = self.line(row)
                if text is None:
                    continue
                lines.append(text + "\n")
            else:
                rec = self.record(row)
                if rec is None:
                    continue
                if self.fmt == "jsonl":
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


# ---- progress ------------------------------------------------------------------------------
def write_rows(batches, writer, progress, keep=None):
    """A CLI job's rows, batch by batch: each error row reported on stderr, the others passed
    to keep (if given), every row written (writer None: a job that only keeps, as eval). The
    pipeline's refusals (the model's metadata, an argument) become UserError; the worker pool
    and the bar are closed on any exit, also on a closed pipe or Ctrl-C. -> (rows, error
    rows)."""
    done = failed = 0
    try:
        for rows in batches:
            for r in rows:
                if r.error is not None:
                    failed += 1
                    progress.error(f"{safe_name(r.name)}: {r.error}")
                elif keep is not None:
                    keep(r)
            done += len(rows)
            if writer is not None:
                writer.rows(rows)
            progress.update(len(rows))
        if writer is not None:
            writer.close()
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        batches.close()
        progress.close()
    return done, failed


def job_status(done: int, failed: int, paths, what: str) -> int:
    """The exit status of a job over paths: 1, said on stderr, when no image was found or some
    failed (what: the others, as "image(s) predicted")."""
    if done == 0:
        _err("no images found in " + ", ".join(safe_name(p) for p in paths))
        return 1
    if failed:
        _err(f"{failed} input(s) failed; {done - failed} {what}")
        return 1
    return 0


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


def _progress_for(args, desc: str, paths) -> _Progress:
    progress = _Progress(args.progress, desc)
    if progress.active:  # count only when a bar shows it (a folder walk, headers)
        try:
            progress.bar.total = sources.count(paths)
            progress.bar.refresh()
        except Exception:  # a total is a nicety; the run reports real errors itself
            pass
    return progress


def _pipeline_options(args) -> dict:
    from fastlenet.io.decode import quiet_pillow

    quiet_pillow()  # one line per bad file on stderr, not Pillow's warnings about it
    return dict(batch_size=args.batch_size, workers=args.jobs, invert=args.invert,
                preprocess="none" if args.raw else args.preprocess,
                max_pixels=args.max_pixels)
