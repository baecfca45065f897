"""Fields of digits (issue 18): exact-string accuracy per style and fields/s of fastlenet's field
reader beside the hand-rolled loop a new user writes and the OCR peers, in one run.

    python benchmarks/fields.py [--per-style 340] [--rounds 3] [--out DIR] [--systems a,b]

Synthesizes --per-style fields of each style of tests/_fields.py (MNIST *test* handwriting from
../shared/data/mnist, print in digit_fonts.py's *test* fonts; 8 x 340 = 2,720 fields) as PNG
files, one folder per style with its labels.csv, then measures, interleaving the systems over
--rounds rounds (the order rotates every round; this machine's timings swing 25%+ between runs,
so only medians with their min-max spread are quoted):

  cli         `fastlenet read DIRS --format csv --no-progress`, one subprocess, start-up included
              (the row the issue's >= 2,000 fields/s target is measured on)
  api         fastlenet.read_fields(DIRS) in process
  by-hand     connected components of an Otsu threshold, each through fastlenet.preprocess and
              net.predict, left to right: what a new user writes with today's public API
  tesserocr   Tesseract 5 in process (tesserocr; PSM 7 single line, digit whitelist), 1 thread
  tesseract   the tesseract binary, one process per core over list files (same settings)
  rapidocr    RapidOCR (PP-OCRv4 recognizer on ONNX Runtime), recognizer only (no detection)

A system that is not installed, or not in this build (cli/api before issue 18 lands), is listed
as unavailable, never faked. Every system reads the same PNG files (decoding is timed); the
in-process systems' set-up (model load, Tesseract init) is not. Outputs keep digits only, so
layout spaces are not counted against anyone. Accuracy: the exact string, and per digit as
1 - (edit distance / digits) over all fields of a style (insertions and drops count).
Writes results.json beside the fields.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import _fields as F  # noqa: E402  (tests/ holds the one synthesizer)

TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                 "/usr/share/tessdata", "/usr/local/share/tessdata")
WHITELIST = "0123456789"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def digits_only(s) -> str:
    return "".join(c for c in str(s) if c.isdigit())


# ----------------------------------------------------------------------------- the data
def synthesize(out: str, per_style: int, seed: int = 2026, mnist_dir=None, styles=F.STYLES):
    """Write the fields -> {style: [(path, text), ...]} (paths absolute). Printed styles are
    left out, with a message, when no test-split font is installed."""
    src = F.mnist_test_digits(mnist_dir)
    faces = F.test_fonts()
    data = {}
    for i, style in enumerate(styles):
        if style in F.PRINTED_STYLES and not faces:
            print(f"  {style}: skipped: no font of digit_fonts.py's test split is installed")
            continue
        # one stream per style: a style's fields do not depend on the others' counts
        rng = np.random.default_rng([seed, i])
        samples = F.make_fields(style, per_style, src, rng, faces=faces or None)
        labels = F.write_fields(samples, os.path.join(out, style))
        data[style] = [(os.path.realpath(p), t) for p, t in F.read_labels(labels)]
    return data


# ----------------------------------------------------------------------------- the systems
class System:
    """name, label for the table; unavailable() -> None or why; run(paths, folders) ->
    {realpath: text or None (an error row)}."""
    name = label = ""

    def unavailable(self):
        return None

    def setup(self):
        pass

    def teardown(self):
        pass

    def run(self, paths, folders):
        raise NotImplementedError


class Cli(System):
    name, label = "cli", "`fastlenet read` CLI (subprocess, start-up included)"

    def command(self):
        exe = shutil.which("fastlenet", path=os.path.dirname(sys.executable)) or \
            shutil.which("fastlenet")
        return [exe] if exe else [sys.executable, "-m", "fastlenet"]

    def unavailable(self):
        r = subprocess.run(self.command() + ["read", "--help"], capture_output=True, text=True)
        if r.returncode != 0:
            return "`fastlenet read` is not in this build (issue 18 not landed)"
        return None

    def run(self, paths, folders):
        r = subprocess.run(self.command() + ["read", *folders, "--format", "csv",
                                             "--no-progress"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"fastlenet read exited {r.returncode}: {r.stderr[-2000:]}")
        out = {}
        for row in csv.DictReader(io.StringIO(r.stdout)):
            text = None if row.get("error") else digits_only(row["text"])
            out[os.path.realpath(row["path"])] = text
        return out


class Api(System):
    name, label = "api", "`fastlenet.read_fields` (in process)"

    def unavailable(self):
        import fastlenet

        if not hasattr(fastlenet, "read_fields"):
            return "fastlenet.read_fields is not in this build (issue 18 not landed)"
        return None

    def run(self, paths, folders):
        import fastlenet

        return {os.path.realpath(f.source): (None if f.error else digits_only(f.text))
                for f in fastlenet.read_fields(folders)}


def otsu(img: np.ndarray) -> int:
    """Otsu's threshold of a uint8 image: the level that maximizes the between-class variance."""
    hist = np.bincount(img.ravel(), minlength=256).astype(np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * np.arange(256))
    total, mean = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (mean * w0 - total * m0) ** 2 / (w0 * w1)
    return int(np.nanargmax(var[:-1]))


def read_by_hand(img: np.ndarray, net) -> str:
    """The loop a new user writes: threshold, label the ink, drop specks, classify each
    component with the public single-digit API, read left to right."""
    import fastlenet
    from scipy import ndimage

    t = otsu(img)
    ink = img <= t
    light_ink = ink.mean() > 0.5         # most of a field is paper
    if light_ink:
        ink = ~ink
    lab, n = ndimage.label(ink, structure=np.ones((3, 3), bool))
    if n == 0:
        return ""
    sizes = np.bincount(lab.ravel())[1:]
    objs = ndimage.find_objects(lab)
    glow = img if light_ink else 255 - img   # the model's polarity: light ink on dark
    crops, xs = [], []
    for i, sl in enumerate(objs):
        if sizes[i] < max(8, 0.08 * sizes.max()):   # specks
            continue
        piece = np.where(lab[sl] == i + 1, glow[sl], 0).astype(np.uint8)
        crops.append(np.pad(piece, 2))
        xs.append(sl[1].start)
    if not crops:
        return ""
    labels = net.predict(fastlenet.preprocess(crops, invert="no"))
    return "".join(str(int(labels[j])) for j in np.argsort(xs, kind="stable"))


class ByHand(System):
    name, label = "by-hand", "connected components + `fastlenet.preprocess` + `predict`, by hand"

    def setup(self):
        import fastlenet

        self.net = fastlenet.pretrained()

    def run(self, paths, folders):
        from PIL import Image

        out = {}
        for p in paths:
            with Image.open(p) as im:
                out[p] = read_by_hand(np.asarray(im.convert("L")), self.net)
        return out


def tessdata():
    """The folder holding eng.traineddata (tesserocr's wheel carries no language data)."""
    for d in [os.environ.get("TESSDATA_PREFIX", ""), *TESSDATA_DIRS]:
        if d and os.path.isfile(os.path.join(d, "eng.traineddata")):
            return d
    return None


class Tesserocr(System):
    name, label = "tesserocr", "Tesseract 5 (tesserocr, PSM 7 single line, digit whitelist)"

    def unavailable(self):
        try:
            import tesserocr  # noqa: F401
        except ImportError:
            return "tesserocr is not installed (pip install 'fastlenet[peers]')"
        if tessdata() is None:
            return "no eng.traineddata (apt-get install tesseract-ocr)"
        return None

    def setup(self):
        import tesserocr

        self.api = tesserocr.PyTessBaseAPI(path=tessdata(), lang="eng",
                                           psm=tesserocr.PSM.SINGLE_LINE)
        self.api.SetVariable("tessedit_char_whitelist", WHITELIST)
        self.version = tesserocr.tesseract_version().split()[1]

    def run(self, paths, folders):
        out = {}
        for p in paths:
            self.api.SetImageFile(p)
            out[p] = digits_only(self.api.GetUTF8Text())
        return out


class TesseractCli(System):
    name = "tesseract"
    label = "Tesseract 5 binary, one process per core over list files"

    def unavailable(self):
        if shutil.which("tesseract") is None:
            return "no tesseract binary (apt-get install tesseract-ocr)"
        return None

    def setup(self):
        r = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        self.version = (r.stdout or r.stderr).split()[1]
        self.tmp = tempfile.mkdtemp(prefix="fields-tess-")

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, paths, folders):
        from concurrent.futures import ThreadPoolExecutor

        n = min(cores(), len(paths))
        chunks = [paths[i * len(paths) // n:(i + 1) * len(paths) // n] for i in range(n)]
        self.crashes = []
        out = {}
        with ThreadPoolExecutor(n) as pool:   # threads only wait: one process per core
            for part in pool.map(self._run_list, range(n), chunks):
                out.update(part)
        return out

    def _run_list(self, i, chunk):
        """One tesseract process over a list file; when it dies on an image (5.3.0 gets a
        SIGFPE on some pages), that image reads as an error and a new process takes the rest."""
        env = dict(os.environ, OMP_THREAD_LIMIT="1")  # one core per process
        out = {}
        while chunk:
            lst = os.path.join(self.tmp, f"list{i}.txt")
            with open(lst, "w") as f:
                f.write("\n".join(chunk) + "\n")
            pr = subprocess.run(["tesseract", lst, "stdout", "--psm", "7", "-c",
                                 f"tessedit_char_whitelist={WHITELIST}"],
                                capture_output=True, env=env)
            # list mode writes one page per image, pages separated by a form feed (none after
            # the last); a blank image is an empty page. stderr names each page as it starts.
            pages = pr.stdout.decode("utf-8", "replace").split("\f")
            started = pr.stderr.count(b"Page ")
            if pr.returncode == 0 and len(pages) == len(chunk) == started:
                out.update((p, digits_only(t)) for p, t in zip(chunk, pages))
                return out
            if pr.returncode >= 0 or started == 0 or len(pages) < started - 1:
                raise RuntimeError(f"tesseract returned {len(pages)} pages for {len(chunk)} "
                                   f"images (exit {pr.returncode}): {pr.stderr[-500:]!r}")
            done = started - 1                   # the pages before the one it died on
            out.update((p, digits_only(t)) for p, t in zip(chunk[:done], pages[:done]))
            out[chunk[done]] = None
            self.crashes.append((chunk[done], pr.returncode))
            chunk = chunk[done + 1:]
        return out


class RapidOcr(System):
    name, label = "rapidocr", "RapidOCR (PP-OCR on ONNX Runtime), recognizer only"

    def unavailable(self):
        try:
            import rapidocr_onnxruntime  # noqa: F401
        except ImportError:
            return "rapidocr-onnxruntime is not installed (pip install 'fastlenet[peers]')"
        return None

    def setup(self):
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()

    def run(self, paths, folders):
        from PIL import Image

        out = {}
        for p in paths:
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"))
            res, _ = self.engine(rgb, use_det=False, use_cls=False, use_rec=True)
            out[p] = digits_only("".join(r[0] for r in res or ()))
        return out


SYSTEMS = {s.name: s for s in (Cli, Api, ByHand, Tesserocr, TesseractCli, RapidOcr)}


# ----------------------------------------------------------------------------- scoring
from fastlenet.cli.eval_fields import edit_distance  # noqa: E402  (the one definition)


def score(data, preds):
    """{style: (exact, per-digit accuracy, missing)} for one system's predictions."""
    out = {}
    for style, rows in data.items():
        exact = dist = digits = missing = 0
        for p, truth in rows:
            got = preds.get(p)
            if got is None:              # an error row, or a field the system never returned
                missing += 1
                got = ""
            exact += got == truth
            dist += min(edit_distance(got, truth), len(truth))
            digits += len(truth)
        out[style] = (exact / len(rows), 1 - dist / max(digits, 1), missing)
    return out


def code_version() -> str:
    """Where the measured fastlenet lives and its git commit (+dirty): the venv's editable
    install may be someone's working tree, which can change while a long run goes on."""
    import importlib.util

    where = os.path.dirname(os.path.dirname(importlib.util.find_spec("fastlenet").origin))
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        diff = subprocess.run(["git", "-C", where, "diff", "HEAD"], capture_output=True,
                              timeout=30).stdout if dirty else b""
    except (OSError, subprocess.SubprocessError):
        return where
    import hashlib

    tag = f"+dirty:{hashlib.sha1(diff).hexdigest()[:8]}" if dirty else ""
    return f"{where} @ {head}{tag}" if head else where


def spread(values, scale=1.0):
    v = [scale / x for x in values]
    return statistics.median(v), min(v), max(v)


# ----------------------------------------------------------------------------- the run
def measure(data, systems, rounds):
    paths = [p for rows in data.values() for p, _ in rows]
    folders = sorted({os.path.dirname(p) for p in paths})
    n_fields = len(paths)
    n_digits = sum(len(t) for rows in data.values() for _, t in rows)
    times = {s.name: [] for s in systems}
    preds = {}
    for r in range(rounds):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for s in order:
            t0 = time.perf_counter()
            got = s.run(paths, folders)
            dt = time.perf_counter() - t0
            times[s.name].append(dt)
            if s.name in preds and preds[s.name] != got:
                print(f"  note: {s.name} read differently in round {r + 1}")
            preds[s.name] = got
            for path, code in getattr(s, "crashes", ()):
                print(f"  note: {s.name} died (exit {code}) on {path}; that field counts as "
                      f"unread")
            print(f"  round {r + 1}/{rounds} {s.name:<10} {n_fields / dt:9.1f} fields/s "
                  f"({dt:.2f} s)", flush=True)
    return times, preds, n_fields, n_digits


def table(data, systems, times, preds, n_fields, n_digits):
    styles = list(data)
    scores = {s.name: score(data, preds[s.name]) for s in systems}
    head = "| system | " + " | ".join(st.replace("_", " ") for st in styles) + \
        " | fields/s | digits/s |"
    lines = ["Exact strings per style; speed: median (min-max) over rounds", "", head,
             "|" + "---|" * (len(styles) + 3)]
    for s in systems:
        f = spread(times[s.name], n_fields)
        d = spread(times[s.name], n_digits)
        acc = " | ".join(f"{scores[s.name][st][0]:.2f}" for st in styles)
        lines.append(f"| {s.label} | {acc} | {f[0]:,.0f} ({f[1]:,.0f}-{f[2]:,.0f}) | "
                     f"{d[0]:,.0f} ({d[1]:,.0f}-{d[2]:,.0f}) |")
    lines += ["", "Per-digit accuracy (1 - edit distance / digits)", "",
              "| system | " + " | ".join(st.replace("_", " ") for st in styles) + " |",
              "|" + "---|" * (len(styles) + 1)]
    for s in systems:
        acc = " | ".join(f"{scores[s.name][st][1]:.3f}" for st in styles)
        lines.append(f"| {s.label} | {acc} |")
    missing = {s.name: sum(v[2] for v in scores[s.name].values()) for s in systems}
    if any(missing.values()):
        lines += ["", "Fields without a reading (error rows or not returned): " +
                  ", ".join(f"{k} {v}" for k, v in missing.items() if v)]
    return "\n".join(lines), scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-style", type=int, default=340, help="fields per style (8 styles)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="folder for the fields and results.json (default: a "
                                  "temporary folder, removed afterwards)")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--mnist", default=None, help="folder of the MNIST IDX files "
                                                  "(default ../shared/data/mnist)")
    args = ap.parse_args(argv)

    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    bad = [n for n in names if n not in SYSTEMS]
    if bad:
        ap.error(f"unknown system(s) {', '.join(bad)}; choose from {', '.join(SYSTEMS)}")
    out = args.out or tempfile.mkdtemp(prefix="fields-bench-")
    try:
        t0 = time.perf_counter()
        data = synthesize(out, args.per_style, args.seed, args.mnist)
        n = sum(len(v) for v in data.values())
        print(f"synthesized {n} fields in {time.perf_counter() - t0:.1f} s into {out} "
              f"({', '.join(f'{k} {len(v)}' for k, v in data.items())})")
        systems = []
        for name in names:
            s = SYSTEMS[name]()
            why = s.unavailable()
            if why:
                print(f"  {name}: unavailable: {why}")
                continue
            s.setup()
            if getattr(s, "version", None):
                s.label += f" [{s.version}]"
            systems.append(s)
        if not systems:
            print("no system to measure")
            return 1
        version = code_version()
        print(f"{cores()} cores; {args.rounds} interleaved rounds; fastlenet from {version}")
        times, preds, n_fields, n_digits = measure(data, systems, args.rounds)
        if code_version() != version:
            print(f"WARNING: fastlenet changed during the run (now {code_version()}): the "
                  f"CLI rows ran the new code in later rounds, the in-process rows the old")
        text, scores = table(data, systems, times, preds, n_fields, n_digits)
        print()
        print(text)
        by = {s.name: statistics.median(times[s.name]) for s in systems}
        if "cli" in by:
            print(f"\n`fastlenet read`: {n_fields / by['cli']:,.0f} fields/s (target >= 2,000)")
            if "tesseract" in by:
                print(f"`fastlenet read` / Tesseract binary: {by['tesseract'] / by['cli']:.1f}x "
                      f"(target >= 10x)")
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"fastlenet": version, "fields": n_fields, "digits": n_digits, "cores": cores(),
                       "per_style": {k: len(v) for k, v in data.items()},
                       "seconds": times, "scores": scores}, f, indent=1)
    finally:
        for s in locals().get("systems", ()):
            s.teardown()
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
