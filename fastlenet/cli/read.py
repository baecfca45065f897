"""fastlenet read: fields of digits (ZIP codes, amounts, IDs, comb boxes) -> one row per field
(csv, json, jsonl or text on stdout), in-process or as a Dask job (--scheduler/--output);
--plot draws the first fields with their digit boxes for a person to check."""
from __future__ import annotations

import sys
from typing import Optional

from fastlenet import fields
from fastlenet.cli.common import (RowWriter, UsageError, UserError, _err, _progress_for,
                                  csv_field, job_status, load_field_nets, write_rows)
from fastlenet.names import safe_name

# Fields drawn by --plot.
PLOT_FIELDS = 12


def parse_length(text: Optional[str]):
    """--length N or N-M -> None, an int or a range."""
    if text is None:
        return None
    lo, sep, hi = text.partition("-")
    try:
        length = int(lo) if not sep else range(int(lo), int(hi) + 1)
    except ValueError:
        raise UsageError(f"--length: expected N or N-M digits; got {text!r}") from None
    try:
        fields.length_range(length)
    except (TypeError, ValueError):
        raise UsageError(f"--length: expected N or N-M with 0 <= N <= M <= "
                         f"{fields.FIELD_MAX_PIECES}; got {text!r}") from None
    return length


class _Writer(RowWriter):
    """Fields -> csv, json, jsonl or text (every field, its error included)."""

    def __init__(self, fmt: str, out):
        super().__init__(fmt, out, ["path", "member", "index", "text", "confidence", "error"])

    def line(self, f):
        conf = "" if f.error is not None else f"{f.confidence:.6f}"
        if self.fmt == "text":
            return f"{safe_name(f.name)}  " + (
                f"{f.text or '-'}  {conf}" if f.error is None else f"error: {f.error}")
        return ",".join([csv_field(safe_name(f.source)),
                         "" if f.member is None else csv_field(safe_name(f.member)),
                         "" if f.index is None else str(f.index),
                         f.text, conf, "" if f.error is None else csv_field(f.error)])

    def record(self, f):
        return {"path": safe_name(f.source),
                "member": None if f.member is None else safe_name(f.member),
                "index": f.index, "text": f.text,
                "confidence": None if f.error is not None else round(f.confidence, 6),
                "digits": [{"label": d.label, "confidence": round(d.confidence, 6),
                            "box": list(d.box),
                            "alternatives": [[c, round(p, 6)] for c, p in d.alternatives]}
                           for d in f.digits],
                "error": f.error}


def cmd_read(args) -> int:
    length = parse_length(args.length)
    if args.scheduler is not None or args.output is not None:
        if args.plot:
            raise UsageError("--plot draws fields read in this process; it does not go with "
                             "--scheduler/--output")
        return _read_on_dask(args, length)
    from fastlenet.io.decode import quiet_pillow
    from fastlenet.pipeline.fields import read_field_batches

    quiet_pillow()
    net = load_field_nets(args.weights, args.layout, args.threads, args.precision)
    writer = _Writer(args.format, sys.stdout)
    progress = _progress_for(args, "read", args.paths)
    shown: list = []
    try:
        batches = read_field_batches(args.paths, net, workers=args.jobs, length=length,
                                     invert=args.invert, max_pixels=args.max_pixels)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None

    def keep(f):  # the first fields read, for --plot
        if len(shown) < PLOT_FIELDS:
            shown.append(f)

    done, failed = write_rows(batches, writer, progress, keep if args.plot else None)
    if args.plot:
        _plot(shown, args.plot, args.max_pixels)
    return job_status(done, failed, args.paths, "field(s) read")


def _read_on_dask(args, length) -> int:
    from fastlenet.cli.cluster import dask_job

    # the default models go as None: each worker chooses its precision for its own CPU
    net = None if not args.weights and args.precision is None else \
        load_field_nets(args.weights, args.layout, precision=args.precision)
    options = {"length": length, "invert": args.invert, "threads": args.threads,
               "workers": args.jobs}
    if args.max_pixels is not None:
        options["max_pixels"] = args.max_pixels
    return dask_job(args, "read_fields", net, options, "field(s) read")


def _field_image(f, max_pixels):
    """The image a Field was read from, decoded again for the plot."""
    from fastlenet.io import containers, decode

    if f.member is not None:
        for member, data, err in containers.iter_shard(f.source):
            if member == f.member and err is None:
                return decode.decode(data, max_pixels)
        raise ValueError("member not found")
    if f.index is not None:
        if str(f.source).lower().endswith(".npy"):
            return containers.open_npy(f.source)[0][f.index]
        for start, x in containers.iter_idx(f.source, 1024):
            if start <= f.index < start + len(x):
                return x[f.index - start]
    return decode.decode(decode.read_file_bytes(f.source, 1 << 30), max_pixels)


def _plot(rows, out: str, max_pixels) -> None:
    """A PNG of the fields in `rows`, one under another: each digit's box in red with the
    digit read above it, and the field's text and confidence at the left."""
    import numpy as np

    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise UserError("--plot needs Pillow: pip install pillow") from None
    from fastlenet.pixels import to_gray

    panels = []
    for f in rows:
        try:
            a = np.asarray(_field_image(f, max_pixels))
        except Exception as e:  # the run already read it; a plot is a nicety
            _err(f"--plot: {safe_name(f.name)}: {e}")
            continue
        if a.ndim == 3:
            a = to_gray(a)
        a = a.astype(np.float64)
        top = a.max() if a.size else 1
        g = (255 * a / (top if top > 0 else 1)).clip(0, 255).astype(np.uint8)
        scale = max(1, int(64 // max(1, min(g.shape[0], 64))))
        im = Image.fromarray(g).convert("RGB")
        if scale > 1:
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
        canvas = Image.new("RGB", (im.width + 220, im.height + 16), "white")
        canvas.paste(im, (220, 16))
        d = ImageDraw.Draw(canvas)
        for dg in f.digits:
            x0, y0, x1, y1 = (v * scale for v in dg.box)
            d.rectangle([220 + x0, 16 + y0, 220 + x1 - 1, 16 + y1 - 1], outline=(220, 0, 0))
            d.text((220 + x0, 16 + max(0, y0 - 12)), str(dg.label), fill=(220, 0, 0))
        d.text((4, 16), f"{f.text or '-'}  ({f.confidence:.3f})", fill=(0, 0, 160))
        d.text((4, 2), safe_name(f.name)[-34:], fill=(90, 90, 90))
        panels.append(canvas)
    if not panels:
        _err("--plot: no field to draw")
        return
    width = max(p.width for p in panels)
    sheet = Image.new("RGB", (width, sum(p.height + 4 for p in panels)), "white")
    y = 0
    for p in panels:
        sheet.paste(p, (0, y))
        y += p.height + 4
    try:
        sheet.save(out)
    except (OSError, ValueError) as e:
        raise UserError(f"--plot {out}: {e}") from None
