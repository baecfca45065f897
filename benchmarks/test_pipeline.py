"""pytest-benchmark: images/s of the file pipeline beside the engine and a bare Pillow loop.

    pytest --benchmark-only benchmarks/test_pipeline.py

One group ("pipeline"): the engine alone on the 60,000 training digits, predict_files on their
IDX file, on a folder of the 10,000 test digits as PNG files and on a tar shard of them, and
the baseline, a single-threaded loop that only opens and decodes the PNG files with Pillow.
The data is written from ../shared/data/mnist into a temporary folder (skipped without it).
For interleaved rounds and the ratios, run benchmarks/pipeline.py.
"""
import os

import pytest

import fastlenet

MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if not os.path.isdir(MNIST):
        pytest.skip("needs ../shared/data/mnist")
    pytest.importorskip("PIL")
    from benchmarks import pipeline as script

    png, tar, idx = script.prepare(MNIST, str(tmp_path_factory.mktemp("pipeline")))
    from fastlenet.io.containers import read_idx

    return {"png": png, "tar": tar, "idx": idx, "x": read_idx(idx)}


CASES = ("engine", "idx", "png", "tar", "pillow")


@pytest.mark.parametrize("case", CASES)
def test_pipeline(benchmark, data, case):
    from fastlenet.pipeline.run import predict_batches

    net = fastlenet.pretrained()
    if case == "engine":
        x = data["x"]

        def run():
            for i in range(0, len(x), 1024):
                net.predict_proba(x[i:i + 1024])
            return len(x)
    elif case == "pillow":
        from PIL import Image

        names = sorted(os.listdir(data["png"]))

        def run():
            for name in names:
                with Image.open(os.path.join(data["png"], name)) as im:
                    im.load()
            return len(names)
    else:
        def run():
            n = 0
            for rows in predict_batches(data[case], net):
                assert rows[0].error is None, rows[0]
                n += len(rows)
            return n
    benchmark.group = "pipeline"
    n = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({"case": case, "images": n,
                                 "images_per_s": round(n / benchmark.stats.stats.median, 1),
                                 "workers": fastlenet.DEFAULT_THREADS})
