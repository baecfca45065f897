"""pytest-benchmark: what colour input and many classes cost, beside the classic net.

    pytest --benchmark-only benchmarks/test_geometry_throughput.py

One group per (batch, threads); in each, fastlenet (default ISA) on the classic 1-channel
10-class net, on 3-channel RGB (uint8 NHWC, as images arrive, and float32 NCHW) and on K = 47
and 1000 classes, all predict_proba. images/s in extra_info. The 1-channel, 10-class case is
the same net as benchmarks/test_throughput.py's, so this also shows that the geometry work left
it alone; for a before/after comparison of two builds use benchmarks/ab_builds.py.
"""
import numpy as np
import pytest

import fastlenet
from fastlenet.weights import layout

CASES = (  # (label, in_channels, classes, input layout)
    ("gray-k10", 1, 10, "nchw"),
    ("rgb-k10-u8-nhwc", 3, 10, "nhwc_u8"),
    ("rgb-k10-f32-nchw", 3, 10, "nchw"),
    ("gray-k47", 1, 47, "nchw"),
    ("gray-k1000", 1, 1000, "nchw"),
    ("rgb-k43-u8-nhwc", 3, 43, "nhwc_u8"),
)


def _weights(c, k):
    rng = np.random.default_rng([0, c, k])
    return {key: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 10)
                  ).astype(np.float32) for key, s in layout.canonical_shapes(c, k).items()}


def _input(c, layout, batch):
    rng = np.random.default_rng(1)
    if layout == "nhwc_u8":
        return rng.integers(0, 256, (batch, 32, 32, c), np.uint8)
    return rng.random((batch, c, 32, 32), dtype=np.float32)


@pytest.mark.parametrize("batch,threads", [(1, 1), (1024, 1), (8192, 2)],
                         ids=["b1-t1", "b1024-t1", "b8192-t2"])
@pytest.mark.parametrize("label,c,k,layout", CASES, ids=[c[0] for c in CASES])
def test_geometry_throughput(benchmark, label, c, k, layout, batch, threads):
    net = fastlenet.Net(_weights(c, k), num_threads=threads)
    x = _input(c, layout, batch)
    benchmark.group = f"geometry: batch {batch:>5}, {threads} thread{'s' if threads > 1 else ''}"
    out = benchmark.pedantic(net.predict_proba, args=(x,), rounds=max(3, min(200, 20000 // batch)),
                             iterations=1, warmup_rounds=1)
    assert out.shape == (batch, k)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update({"case": label, "in_channels": c, "classes": k, "batch": batch,
                                 "threads": threads, "images_per_s": round(batch / median, 1),
                                 "isa": net.isa})
