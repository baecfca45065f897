"""fastlenet eval --fields LABELS.csv: how well fields of digits are read (exact strings,
digits, the worst fields), from a `path,text` CSV (paths relative to the CSV)."""
from __future__ import annotations

import json
import os
import sys

from fastlenet.cli.common import (UserError, _progress_for, csv_rows, load_field_nets,
                                  write_rows)
from fastlenet.names import safe_name

# Wrong fields listed.
WORST = 10


def _labelled_fields(path: str):
    """A `path,text` CSV -> (files, {file: text}). Text is digits; spaces in it are layout."""
    base = os.path.dirname(path)
    files, truth = [], {}
    for n, row in csv_rows(path, "path,text"):
        text = "".join(row[1].split())
        if not text.isdigit() and text != "":
            if n == 1:
                continue  # a header
            raise UserError(f"{path}, line {n}: expected the digits of the field; found "
                            f"{safe_name(row[1])!r}")
        p = os.path.join(base, row[0].strip())
        if p in truth:
            raise UserError(f"{path}, line {n}: {safe_name(row[0])} is labelled twice")
        files.append(p)
        truth[p] = text
    if not files:
        raise UserError(f"{path}: no path,text rows")
    return files, truth


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: digits dropped, added or misread."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cmd_eval_fields(args) -> int:
    from fastlenet.io.decode import quiet_pillow
    from fastlenet.pipeline.fields import read_field_batches

    quiet_pillow()
    files, truth = _labelled_fields(args.fields)
    net = load_field_nets([args.weights] if args.weights else None, args.layout, args.threads,
                          getattr(args, "precision", None))
    progress = _progress_for(args, "eval", files)
    n = exact = digits = right = unlabelled = 0
    wrong = []

    def score(f):
        nonlocal n, exact, digits, right, unlabelled
        if f.source not in truth or f.member is not None or f.index is not None:
            # a folder, glob, shard or multi-image file in the CSV: no one truth
            unlabelled += 1
            progress.error(f"{safe_name(f.name)}: not a labelled image file of {args.fields}")
            return
        t = truth[f.source]
        n += 1
        d = edit_distance(t, f.text)
        exact += d == 0
        digits += len(t)
        right += max(0, len(t) - d)
        if d:
            wrong.append((d, f.confidence, safe_name(f.name), t, f.text))

    batches = read_field_batches(files, net, workers=args.jobs, invert=args.invert,
                                 max_pixels=args.max_pixels)
    _, failed = write_rows(batches, None, progress, keep=score)
    failed += unlabelled
    wrong.sort(key=lambda w: (-w[0], -w[1]))
    report = {"fields": n, "exact": exact, "string_accuracy": exact / n if n else None,
              "digits": digits, "digit_accuracy": right / digits if digits else None,
              "failed": failed,
              "worst": [{"path": p, "truth": t, "read": r, "edits": d,
                         "confidence": round(c, 6)} for d, c, p, t, r in wrong[:WORST]]}
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(f"fields: {n}  exact strings: {exact} ({100 * exact / max(n, 1):.2f} %)")
        print(f"digits: {digits}  read right: {right} ({100 * right / max(digits, 1):.2f} %, "
              f"by edit distance)")
        if failed:
            print(f"failed inputs: {failed}")
        if wrong:
            print("\nworst fields (edits, confidence, truth -> read):")
            for d, c, p, t, r in wrong[:WORST]:
                print(f"  {d}  {c:.3f}  {t} -> {r or '-'}  {p}")
    if n == 0:
        print("fastlenet: no fields read", file=sys.stderr)
        return 1
    return 1 if failed else 0
