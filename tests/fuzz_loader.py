"""A seeded mutational fuzzer for fastlenet.load: valid weight files (every zip method, metadata,
an .onnx graph) are mutated byte by byte and structurally, and every mutant must either load
(then predict) or raise FormatError. Anything else is a finding: another exception type, a
crash (the process dies), memory beyond the limit (MemoryError under RLIMIT_AS), a hang.

    python tests/fuzz_loader.py --cases 200000 --seed 1 [--save-findings DIR]

prints the counts by outcome. tests/weights/test_fuzz_loader.py runs a short, seeded run in CI.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import traceback
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastlenet  # noqa: E402
from fastlenet.weights.checks import FormatError  # noqa: E402

from _helpers import make_weights  # noqa: E402
from _hostile import npy_of  # noqa: E402

INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF]


def corpus(seed: int) -> dict[str, bytes]:
    """Valid files to mutate, small enough to mutate fast."""
    w = make_weights(np.random.default_rng(seed))
    meta = {"activation": "relu", "pool": "max", "mean": 0.1307, "std": 0.3081,
            "classes": list("0123456789")}
    files = {}
    for name, method in (("stored.npz", zipfile.ZIP_STORED), ("deflated.npz", zipfile.ZIP_DEFLATED),
                         ("bzip2.npz", zipfile.ZIP_BZIP2), ("lzma.npz", zipfile.ZIP_LZMA)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as zf:
            for k, v in w.items():
                zf.writestr(k + ".npy", npy_of(v))
            zf.writestr("fastlenet_meta.npy", npy_of(np.array(json.dumps(meta))))
        files[name] = buf.getvalue()
    # a small file whose structure dominates (headers, directory): mutations hit fields
    buf = io.BytesIO()
    np.savez(buf, **{k: v[..., :1] if v.ndim > 1 else v for k, v in w.items()})
    files["small.npz"] = buf.getvalue()
    try:
        sys.path.insert(0, HERE)
        from test_safety_loader import _lenet_onnx  # needs onnx

        files["model.onnx"] = _lenet_onnx(w).SerializeToString()
    except Exception:
        pass
    return files


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.choice((1, 1, 1, 2, 3, 8))):
        op = rnd.randrange(9)
        if not b:
            b += bytes([rnd.randrange(256)])
        i = rnd.randrange(len(b))
        if op == 0:  # flip a bit
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:  # an interesting byte
            b[i] = rnd.choice((0, 0x7F, 0x80, 0xFF, ord("("), ord("'"), ord(":")))
        elif op in (2, 3):  # an interesting 16/32-bit little-endian integer (zip fields)
            fmt = "<H" if op == 2 else "<I"
            v = rnd.choice(INTERESTING) & (0xFFFF if op == 2 else 0xFFFFFFFF)
            if rnd.random() < 0.3:
                v = (struct.unpack_from(fmt, b + bytes(4), i)[0] + rnd.randint(-16, 16)) % (
                    1 << (16 if op == 2 else 32))
            b[i:i + struct.calcsize(fmt)] = struct.pack(fmt, v)
        elif op == 4:  # truncate
            del b[rnd.randrange(len(b)):]
        elif op == 5:  # delete a chunk
            del b[i:i + rnd.randint(1, 64)]
        elif op == 6:  # duplicate a chunk
            j = rnd.randrange(len(b))
            b[i:i] = b[j:j + rnd.randint(1, 256)]
        elif op == 7:  # random bytes
            b[i:i + 8] = bytes(rnd.randrange(256) for _ in range(8))
        else:  # mangle the text of an .npy header or JSON near a quote
            k = b.find(b"'", i)
            if k >= 0:
                b[k:k + 1] = rnd.choice((b"((((", b"1e999", b"\\", b"]", b"'" * 3, b"\xff"))
    return bytes(b)


def run(cases: int, seed: int, save: str | None = None, log_every: float = 0) -> dict:
    rnd = random.Random(seed)
    files = corpus(seed)
    names = sorted(files)
    counts: collections.Counter = collections.Counter()
    findings = []
    x = np.zeros((2, 28, 28), np.uint8)
    tmp = tempfile.mkdtemp(prefix="fastlenet-fuzz-")
    t0 = last = time.perf_counter()
    for case in range(cases):
        name = names[case % len(names)]
        data = mutate(files[name], rnd)
        path = os.path.join(tmp, f"case{os.path.splitext(name)[1]}")
        with open(path, "wb") as f:
            f.write(data)
        try:
            net = fastlenet.load(path)
            net.predict(x)
            counts["loaded"] += 1
        except FormatError as e:
            counts["FormatError"] += 1
            if str(path) not in str(e):
                counts["finding: message without the file name"] += 1
                findings.append((name, data, f"no file name: {e}"))
        except Exception as e:  # a finding: an undocumented exception type
            kind = f"finding: {type(e).__name__}"
            counts[kind] += 1
            findings.append((name, data, traceback.format_exc()))
        if log_every and time.perf_counter() - last > log_every:
            last = time.perf_counter()
            print(f"{case + 1} cases, {dict(counts)}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if save and findings:
        os.makedirs(save, exist_ok=True)
        for i, (name, data, tb) in enumerate(findings[:200]):
            with open(os.path.join(save, f"{i}-{name}"), "wb") as f:
                f.write(data)
            with open(os.path.join(save, f"{i}-{name}.txt"), "w") as f:
                f.write(tb)
    return {"cases": cases, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "counts": dict(counts), "first_findings": [tb for _, _, tb in findings[:3]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--memory-limit-mib", type=int, default=4096,
                   help="RLIMIT_AS for this process (a bomb then shows as MemoryError)")
    p.add_argument("--save-findings", metavar="DIR")
    p.add_argument("--log-every", type=float, default=0, metavar="SECONDS")
    args = p.parse_args()
    try:
        import resource

        if "libasan" in os.environ.get("LD_PRELOAD", ""):
            raise ValueError("AddressSanitizer maps terabytes of shadow memory: no RLIMIT_AS")
        limit = args.memory_limit_mib << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    print(json.dumps(run(args.cases, args.seed, args.save_findings, args.log_every), indent=1))


if __name__ == "__main__":
    main()
