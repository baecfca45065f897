"""Throughput of one build, for interleaved comparisons of two builds (e.g. the OpenMP loop of
de25927 against the pool of issue 10):

    for r in 1 2 3; do PYTHONPATH=/path/to/old python tools/measure/pool_vs_openmp.py old; \
                       PYTHONPATH=. python tools/measure/pool_vs_openmp.py new; done

Prints images/s (best of 5 repeats) per batch size at 2 threads, and the median per call.
"""
import sys
import timeit

import numpy as np

import fastlenet

net = fastlenet.pretrained(num_threads=2)
rng = np.random.default_rng(0)
for n in (16, 256, 8192):
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    net.predict(x)
    number = max(1, 20000 // n)
    best = min(timeit.repeat(lambda: net.predict(x), number=number, repeat=5)) / number
    print(f"{sys.argv[1] if len(sys.argv) > 1 else ''} batch {n}: {n / best:,.0f} images/s "
          f"({best * 1e6:,.0f} us per call)")
