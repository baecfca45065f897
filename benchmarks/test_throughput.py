"""pytest-benchmark: images/s per (batch size, threads) group, every engine on the same weights.

    pytest --benchmark-only                       # everything available here
    pytest --benchmark-only -k "b8192 and t2"     # one group

One benchmark per (engine, batch, threads); fastlenet at each ISA level this CPU has, and
fastlenet-int8 (Net.quantize) at the top level and the scalar specification (batch 1); the SciPy
reference on small batches only (about 20 images/s); peers when the `peers` extra is installed.
The group is the (batch, threads) pair, so each table compares engines at equal footing; the
img/s figure is in extra_info. For interleaved rounds and ratios, use benchmarks/compare.py.
"""
import numpy as np
import pytest

import fastlenet
from fastlenet import bench

BATCHES = (1, 64, 1024, 8192)
THREADS = (1, 2)
WEIGHTS = bench.random_weights(0)
META = {"activation": "tanh", "pool": "avg"}


def _cases():
    for b in BATCHES:
        for t in THREADS:
            for isa in fastlenet.available_isas():
                if isa == "scalar" and b > 64:
                    continue  # ~1,500 img/s: minutes per round at large batches
                yield pytest.param("fastlenet", isa, b, t, id=f"fastlenet-{isa}-b{b}-t{t}")
                if isa in ("scalar", fastlenet.available_isas()[-1]) and not (
                        isa == "scalar" and b > 1):
                    # int8 at the top level (VNNI where the CPU has it) and the scalar spec
                    yield pytest.param("fastlenet-int8", isa, b, t,
                                       id=f"fastlenet-int8-{isa}-b{b}-t{t}")
            yield pytest.param("numpy", None, b, t, id=f"numpy-b{b}-t{t}")
            if b == 1 and t == 1:
                yield pytest.param("reference", None, b, t, id=f"reference-b{b}-t{t}")
            for peer in bench.PEERS:
                if peer == "torch.compile":
                    continue  # minutes of compilation per case; compare.py --torch-compile
                yield pytest.param(peer, None, b, t, id=f"{peer}-b{b}-t{t}")


@pytest.mark.parametrize("engine,isa,batch,threads", list(_cases()))
def test_throughput(benchmark, engine, isa, batch, threads):
    why = bench.unavailable(engine)
    if why:
        pytest.skip(why)
    kwargs = {"isa": isa} if isa else {}
    run = bench.ENGINES[engine](WEIGHTS, META, threads, **kwargs)
    x = np.random.default_rng(1).standard_normal((batch, 1, 32, 32)).astype(np.float32)
    benchmark.group = f"batch {batch:>5}, {threads} thread{'s' if threads > 1 else ''}"
    rounds = 5 if engine == "reference" else max(3, min(200, 20000 // batch))
    out = benchmark.pedantic(run, args=(x,), rounds=rounds, iterations=1, warmup_rounds=1)
    assert out.shape == (batch, 10)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update({
        "engine": engine, "isa": isa or "", "batch": batch, "threads": threads,
        "precision": "int8" if engine.endswith("-int8") else "fp32",
        "images_per_s": round(batch / median, 1), "machine_isa": fastlenet.detected_isa(),
        "machine_threads": fastlenet.DEFAULT_THREADS,
    })
