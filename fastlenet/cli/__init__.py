"""The `fastlenet` command line (also `python -m fastlenet`).

    fastlenet predict PATH...     classify images, folders, globs, shards, .npy and IDX files
    fastlenet read PATH...        read fields of digits (ZIP codes, amounts, comb boxes)
    fastlenet demo                the pretrained model on the bundled MNIST sample
    fastlenet eval FOLDER|CSV     accuracy on labelled images (or --images IDX --labels IDX,
                                  or --fields CSV for fields of digits)
    fastlenet bench               images/s and batch-1 latency here, beside NumPy and peers
    fastlenet inspect WEIGHTS     how a weights file maps to LeNet-5's canonical layout
    fastlenet config              ISA, OpenMP and threads of this build and machine

Exit codes: 0 success (also when the reader of stdout closes it early, as `| head` does), 1 when
an input or the weights could not be read (each reported on one stderr line, the other inputs
still processed), 2 for usage errors (argparse). User errors never print a traceback. The work
itself lives in the library; the commands here parse arguments and format output, and are
the only clients of the package's face.

    common.py    errors, options, --weights -> Net (once, for every command and for Dask)
    predict.py   predict (in-process and --scheduler)   eval.py   eval
    read.py      read (fields of digits)                eval_fields.py   eval --fields
    cluster.py   the --scheduler/--output job of predict and read
    bench.py     demo and bench                          inspect.py   inspect and config
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from fastlenet._version import __version__
from fastlenet.cli.bench import cmd_bench, cmd_demo
from fastlenet.cli.common import (PROG, UsageError, UserError, _add_dask_options,
                                  _add_file_options, _add_model_options, _add_precision_option,
                                  _err, _positive_float, _positive_int)
from fastlenet.cli.eval import cmd_eval
from fastlenet.cli.inspect import cmd_config, cmd_inspect
from fastlenet.cli.predict import cmd_predict
from fastlenet.cli.read import cmd_read

__all__ = ["main", "build_parser", "UserError", "UsageError", "PROG"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="LeNet-5 inference on the CPU with C kernels.",
        epilog="Run 'fastlenet COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"fastlenet {__version__}")
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

    p = sub.add_parser("read", help="read fields of digits: ZIP codes, amounts, IDs, comb boxes",
                       description="Read each image (files, folders, globs, shards, .npy and IDX "
                                   "files, as predict takes them) as one field: a row of digits, "
                                   "spaced or touching, handwritten or printed, in comb boxes or "
                                   "on a rule line. One row per field: path, member, index, "
                                   "text (the digits read), confidence (of the whole string), "
                                   "error. Unreadable inputs: a row with the error, one line on "
                                   "stderr, exit status 1 at the end.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", choices=("csv", "json", "jsonl", "text"), default="csv",
                   help="output format (default csv; json and jsonl add each digit's box, "
                        "confidence and alternatives)")
    p.add_argument("--length", metavar="N|N-M",
                   help="the number of digits each field has (e.g. 5, or 5-9)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw the first fields with their digit boxes and the digits read")
    p.add_argument("--weights", metavar="FILE", action="append",
                   help="weights file or bundled model name; given more than once, the models "
                        "read together (their probabilities averaged; a pair reader such "
                        "as pairs reads touching digits two at once, a strip reader such as "
                        "strips the whole field without cuts). Default, for fields: the "
                        "bundled fields, fields2, pairs and strips, in int8 where the CPU has "
                        "int8 kernels")
    p.add_argument("--layout", default="auto", help="weights layout (default auto)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="engine threads (default: the CPUs this process may use)")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="auto (default): the ink is the field's minority class; yes: light ink "
                        "on dark; no: dark ink on light")
    _add_file_options(p, preprocess=False)
    _add_precision_option(p)
    _add_dask_options(p)
    p.set_defaults(func=cmd_read)

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
    _add_precision_option(p)
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
    p.add_argument("--fields", metavar="CSV",
                   help="labelled fields of digits: a path,text CSV (paths relative to it); "
                        "prints exact-string and per-digit accuracy and the worst fields")
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
    _add_precision_option(p)
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
