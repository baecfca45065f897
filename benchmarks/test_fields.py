"""pytest-benchmark: fields/s of fastlenet's field reader and of Tesseract on the same folder of
synthesized PNG fields (issue 18).

    pytest --benchmark-only benchmarks/test_fields.py

One group ("fields"): fastlenet.read_fields on the folder (skipped until the build has it),
Tesseract in process (tesserocr) and the tesseract binary one process per core, each when
present. 40 fields of every style of tests/_fields.py from MNIST test digits (skipped without
../shared/data/mnist) and the test-split fonts when installed. fields/s, digits/s and the exact
string accuracy go to extra_info. For interleaved rounds over 2,700 fields and every peer, run
benchmarks/fields.py.
"""
import os

import numpy as np
import pytest

import fastlenet
from benchmarks import fields as script

PER_STYLE = 40


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    pytest.importorskip("PIL")
    if not os.path.isfile(os.path.join(script.F.MNIST_DIR, "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"needs the MNIST test digits in {script.F.MNIST_DIR}")
    out = str(tmp_path_factory.mktemp("fields"))
    return script.synthesize(out, PER_STYLE)


CASES = ("api", "tesserocr", "tesseract")


@pytest.mark.parametrize("case", CASES)
def test_fields(benchmark, data, case):
    system = script.SYSTEMS[case]()
    why = system.unavailable()
    if why:
        pytest.skip(why)
    system.setup()
    paths = [p for rows in data.values() for p, _ in rows]
    folders = sorted({os.path.dirname(p) for p in paths})
    got = {}

    def run():
        got.clear()
        got.update(system.run(paths, folders))
        return len(got)

    benchmark.group = "fields"
    try:
        n = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    finally:
        system.teardown()
    assert n == len(paths), f"{case} returned {n} readings for {len(paths)} fields"
    digits = sum(len(t) for rows in data.values() for _, t in rows)
    scores = script.score(data, got)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update({
        "case": case, "fields": len(paths), "digits": digits,
        "fields_per_s": round(len(paths) / median, 1),
        "digits_per_s": round(digits / median, 1),
        "exact": {k: round(v[0], 3) for k, v in scores.items()},
        "exact_all": round(float(np.mean([got.get(p) == t for rows in data.values()
                                          for p, t in rows])), 3),
        "cores": script.cores(), "threads": fastlenet.DEFAULT_THREADS})


def test_tesseract_list_mode_stays_aligned(tmp_path):
    """Not a benchmark: the binary's row splits list-mode output at form feeds; a blank image
    (an empty page) and the order of the files must not shift any reading onto a neighbour."""
    system = script.TesseractCli()
    why = system.unavailable()
    if why:
        pytest.skip(why)
    try:
        samples = script.F.make_fields("printed_clean", 12, None, np.random.default_rng(4),
                                       lengths=(3, 8))
    except script.F.NoTestFonts as e:
        pytest.skip(str(e))
    blank = samples[0]._replace(image=np.full((40, 120), 250, np.uint8), text="")
    samples = samples[:5] + [blank] + samples[5:] + [blank]
    rows = script.F.read_labels(script.F.write_fields(samples, tmp_path))
    paths = [os.path.realpath(p) for p, _ in rows]
    system.setup()
    try:
        got = system.run(paths, [str(tmp_path)])
    finally:
        system.teardown()
    assert set(got) == set(paths)
    assert got[paths[5]] == "" and got[paths[-1]] == ""
    # clean print in an unseen font: Tesseract reads nearly all; a shift would break most
    right = sum(got[p] == t for p, t in zip(paths, (s.text for s in samples)))
    assert right >= len(paths) - 3, got
