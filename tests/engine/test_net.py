"""The whole Net against the float64 SciPy reference: every ISA, batch sizes that straddle the
vector widths and thread chunks, every activation x pool combination."""
from __future__ import annotations

import functools
import io

import numpy as np
import pytest

import fastlenet
from fastlenet import reference

from _helpers import (ACTIVATIONS, BANK, ISA_TOL, ISAS, LOGIT_TOL, POOLS, _session_weights,
                      assert_predictions_match, images, make_net, ref_features, ref_logits,
                      softmax64)
from _helpers import TESTS  # noqa: E402

SMALL_BATCHES = (0, 1, 2, 3, 7, 15, 16, 17)
LARGE_BATCHES = (64, 97, 1000)
COMBO_BATCH = 3


@pytest.mark.parametrize("n", SMALL_BATCHES)
def test_logits_match_reference(isa, n):
    net = make_net(isa=isa)
    out = net.logits(images(n))
    assert out.shape == (n, 10) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, ref_logits()[:n], rtol=0, atol=LOGIT_TOL)


@pytest.mark.parametrize("n", SMALL_BATCHES)
def test_predict_matches_reference(isa, n):
    pred = make_net(isa=isa).predict(images(n))
    assert pred.shape == (n,) and pred.dtype == np.int64
    assert_predictions_match(pred, ref_logits()[:n])


@functools.lru_cache(maxsize=None)
def _scalar_logits(n: int) -> np.ndarray:
    return make_net(isa="scalar").logits(images(n))


@functools.lru_cache(maxsize=None)
def _tail_reference() -> tuple[np.ndarray, np.ndarray]:
    """Reference logits of the last image of each large batch (the ragged end of the last
    thread chunk and of the last SIMD tile)."""
    idx = np.array(sorted({n - 1 for n in LARGE_BATCHES}))
    return idx, reference.logits(_session_weights(), images(max(LARGE_BATCHES))[idx])


@pytest.mark.parametrize("n", LARGE_BATCHES)
def test_large_batches(isa, n):
    """Large batches: against the scalar ISA within ISA_TOL (all images), and against the
    reference on the cached prefix and on the last images."""
    net = make_net(isa=isa, num_threads=2)
    x = images(n)
    out = net.logits(x)
    assert out.shape == (n, 10)
    np.testing.assert_allclose(out, _scalar_logits(n), rtol=0, atol=ISA_TOL)
    np.testing.assert_allclose(out[:BANK], ref_logits(), rtol=0, atol=LOGIT_TOL)
    idx, ref = _tail_reference()
    sel = idx[idx < n]
    np.testing.assert_allclose(out[sel], ref[: len(sel)], rtol=0, atol=LOGIT_TOL)
    pred = net.predict(x)
    assert_predictions_match(pred[:BANK], ref_logits())
    np.testing.assert_array_equal(pred, np.argmax(out, axis=1))


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_pool_combinations(isa, act, pool):
    net = make_net(meta={"activation": act, "pool": pool}, isa=isa)
    assert (net.activation, net.pool) == (act, pool)
    x = images(COMBO_BATCH)
    ref = ref_logits(COMBO_BATCH, act, pool)
    np.testing.assert_allclose(net.logits(x), ref, rtol=0, atol=LOGIT_TOL)
    assert_predictions_match(net.predict(x), ref)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_meta_overrides_through_from_weights(act, rand_weights):
    """activation= / pool= keywords build the same Net as metadata."""
    a = fastlenet.Net.from_weights(rand_weights, activation=act, pool="max")
    b = fastlenet.Net(rand_weights, {"activation": act, "pool": "max"})
    np.testing.assert_array_equal(a.logits(images(5)), b.logits(images(5)))


def test_predict_proba(isa):
    net = make_net(isa=isa)
    p = net.predict_proba(images(BANK))
    assert p.shape == (BANK, 10) and p.dtype == np.float32
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=1, dtype=np.float64), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(p, softmax64(ref_logits()), rtol=0, atol=1e-5)


def test_predict_proba_large_logits_do_not_overflow(isa, rand_weights):
    """Softmax subtracts the max: logits of a few hundred still give finite probabilities."""
    w = dict(rand_weights)
    w["output.weight"] = w["output.weight"] * 400
    net = make_net(w, isa=isa)
    x = images(16)
    logits, p = net.logits(x), net.predict_proba(x)
    assert np.abs(logits).max() > 100
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, softmax64(logits), rtol=0, atol=1e-5)


def test_features_match_reference(isa):
    net = make_net(isa=isa)
    f = net.features(images(5))
    assert f.shape == (5, 84) and f.dtype == np.float32
    np.testing.assert_allclose(f, ref_features(), rtol=0, atol=1e-5)


def test_outputs_are_consistent_with_each_other(isa):
    """predict = argmax(logits), predict_proba = softmax(logits), logits = output layer of
    features, on a batch with a ragged end."""
    net = make_net(isa=isa)
    x = images(203)
    logits = net.logits(x)
    np.testing.assert_array_equal(net.predict(x), np.argmax(logits, axis=1))
    np.testing.assert_allclose(net.predict_proba(x), softmax64(logits), rtol=0, atol=1e-6)
    w = _session_weights()
    f = net.features(x).astype(np.float64)
    np.testing.assert_allclose(f @ w["output.weight"].T.astype(np.float64) + w["output.bias"],
                               logits, rtol=0, atol=1e-5)


def test_batch_composition_does_not_change_results(isa):
    """Each image is computed on its own: its logits do not depend on its batch."""
    net = make_net(isa=isa)
    x = images(41)
    whole = net.logits(x)
    parts = np.concatenate([net.logits(x[a:b]) for a, b in [(0, 1), (1, 8), (8, 25), (25, 41)]])
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(net.logits(x[::-1]), whole[::-1])


def test_repeated_calls_are_bit_identical(isa):
    net = make_net(isa=isa)
    x = images(50)
    first = net.logits(x)
    for _ in range(3):
        np.testing.assert_array_equal(net.logits(x), first)


# ---- ISA selection --------------------------------------------------------------------------------
def test_isa_levels():
    avail = fastlenet.available_isas()
    assert avail[0] == "scalar"
    assert tuple(avail) == ISAS[: len(avail)]
    assert fastlenet.detected_isa() == avail[-1]
    assert fastlenet.default_isa() in avail
    assert make_net().isa == fastlenet.default_isa()


def test_generic_level_on_every_x86_64_and_aarch64():
    """The 4-wide level is the targets' baseline (SSE2, NEON): always there, no CPU check, and
    the level FASTLENET_ISA=generic selects (what a CPU without AVX2 runs)."""
    import os
    import platform
    import subprocess
    import sys

    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        pytest.skip(f"no generic level on {platform.machine()}")
    assert "generic" in fastlenet.available_isas()
    buf = io.StringIO()
    fastlenet.show_config(file=buf)
    assert "generic" in buf.getvalue()
    code = ("import fastlenet; net = fastlenet.pretrained(); "
            "print(fastlenet.default_isa(), net.isa)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, FASTLENET_ISA="generic"),
                         cwd=str(TESTS))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["generic", "generic"]


def test_isa_can_be_switched_per_net(isa):
    net = make_net()
    other = make_net()
    net.isa = isa
    assert net.isa == isa and other.isa == fastlenet.default_isa()
    assert isa in repr(net)


def test_show_config_reports_the_machine():
    buf = io.StringIO()
    fastlenet.show_config(file=buf)
    text = buf.getvalue()
    assert f"ISA: {fastlenet.default_isa()}" in text
    assert "OpenMP" in text and f"default threads: {fastlenet.DEFAULT_THREADS}" in text


def test_default_threads_respect_the_cpu_count():
    import os

    net = make_net()
    assert net.num_threads == fastlenet.DEFAULT_THREADS >= 1
    if fastlenet.HAS_OPENMP:
        assert fastlenet.DEFAULT_THREADS <= len(os.sched_getaffinity(0))


def test_isa_env_override_can_only_lower(monkeypatch):
    """FASTLENET_ISA lowers the level; an unknown or unsupported level warns and is ignored."""
    from fastlenet import _engine

    detected = fastlenet.available_isas().index(fastlenet.detected_isa())
    for level, name in enumerate(fastlenet.available_isas()):
        monkeypatch.setenv("FASTLENET_ISA", f" {name.upper()} ")
        assert _engine._isa_from_env() == level
    monkeypatch.setenv("FASTLENET_ISA", "")
    assert _engine._isa_from_env() == detected
    for bad in ("sse9", "avx1024"):
        monkeypatch.setenv("FASTLENET_ISA", bad)
        with pytest.warns(RuntimeWarning, match=f"FASTLENET_ISA={bad!r} is not one of"):
            assert _engine._isa_from_env() == detected
    if "avx512" not in fastlenet.available_isas():
        monkeypatch.setenv("FASTLENET_ISA", "avx512")
        with pytest.warns(RuntimeWarning, match="not supported by this CPU"):
            assert _engine._isa_from_env() == detected


def test_isa_env_sets_the_default_at_import():
    import os
    import subprocess
    import sys

    code = ("import fastlenet, numpy as np; from fastlenet.weights import CANONICAL_SHAPES as S; "
            "net = fastlenet.Net({k: np.zeros(s, np.float32) for k, s in S.items()}); "
            "print(fastlenet.default_isa(), net.isa, fastlenet.detected_isa())")
    env = dict(os.environ, FASTLENET_ISA="scalar")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=env, cwd=str(TESTS))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["scalar", "scalar", fastlenet.detected_isa()]
