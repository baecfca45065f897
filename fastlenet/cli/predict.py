"""fastlenet predict: in-process (rows on stdout as text, csv, json or jsonl) or, with
--scheduler/--output, as a job on a Dask cluster written to Parquet or CSV."""
from __future__ import annotations

import sys
from typing import List

from fastlenet.cli.cluster import dask_job, require_dask
from fastlenet.cli.common import (RowWriter, _pipeline_options, _progress_for, csv_field,
                                  job_status, load_net, write_rows)
from fastlenet.names import safe_name

class _Writer(RowWriter):
    """Predictions -> text, csv, json or jsonl (rows with an error are left out: they go to
    stderr)."""

    def __init__(self, fmt: str, classes: List[str], k: int, out):
        head = ["path", "member", "index", "label", "confidence"]
        for j in range(2, k + 1):
            head += [f"label_{j}", f"confidence_{j}"]
        super().__init__(fmt, out, head)
        self.classes, self.k = classes, k

    def line(self, p):
        if p.error is not None:
            return None
        classes, top = self.classes, p.top_k[:self.k]
        if self.fmt == "text":
            return safe_name(p.name) + "  " + "  ".join(
                f"{classes[c]} {conf:.4f}" for c, conf in top)
        return ",".join([csv_field(safe_name(p.source)),
                         "" if p.member is None else csv_field(safe_name(p.member)),
                         "" if p.index is None else str(p.index)]
                        + [f"{csv_field(classes[c])},{conf:.6f}" for c, conf in top])

    def record(self, p):
        if p.error is not None:
            return None
        classes = self.classes
        return {"path": safe_name(p.source),
                "member": None if p.member is None else safe_name(p.member),
                "index": p.index, "label": classes[p.label], "class": p.label,
                "confidence": round(p.confidence, 6),
                "top": [{"label": classes[c], "class": c, "confidence": round(conf, 6)}
                        for c, conf in p.top_k[:self.k]]}


def cmd_predict(args) -> int:
    if args.scheduler is not None or args.output is not None:  # a Dask job
        return _predict_on_dask(args)
    from fastlenet.pipeline.run import predict_batches

    net = load_net(args.weights, args.layout, args.threads,
                   precision=getattr(args, "precision", None))
    k = min(args.top_k, net.num_classes)  # --top-k goes up to the model's K
    writer = _Writer(args.format, net.classes, k, sys.stdout)
    progress = _progress_for(args, "predict", args.paths)
    batches = predict_batches(args.paths, net, top_k=k, **_pipeline_options(args))
    done, failed = write_rows(batches, writer, progress)
    return job_status(done, failed, args.paths, "image(s) predicted")


# ---- fastlenet predict --scheduler/--output ----------------------------------------------
def _predict_on_dask(args) -> int:
    """`fastlenet predict --scheduler ADDRESS|local --output FILE ...`."""
    require_dask()
    net = load_net(args.weights, getattr(args, "layout", "auto"),  # as in-process, once
                   precision=getattr(args, "precision", None))
    # What the in-process `predict` takes goes to every task alike (getattr: options the
    # command may or may not have).
    options = {"top_k": args.top_k, "invert": args.invert,
               "batch_size": getattr(args, "batch_size", None),
               "threads": getattr(args, "threads", None),
               "workers": getattr(args, "jobs", None),
               "preprocess": "none" if getattr(args, "raw", False)
               else getattr(args, "preprocess", "auto")}
    if getattr(args, "max_pixels", None) is not None:
        options["max_pixels"] = args.max_pixels
    return dask_job(args, "predict_files", net, options, "prediction(s)")
