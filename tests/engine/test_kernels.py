"""Each C kernel of each ISA against float64 NumPy/SciPy, through the private testing hooks in
fastlenet._engine (the same kernel tables fl_net_forward uses)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import fastlenet
from fastlenet import _engine

from _helpers import (ACT64, ACTIVATIONS, ISAS, POOLS, assert_within, conv5x5_direct, dense_bound,
                      layer_bound, make_net, pool2x2_np, gamma, U32)

# Tolerances: derived per value where outputs are unbounded (layer_bound, dense_bound in
# _helpers.py); these absolute ones only where the output is bounded by construction.
ACT_TOL = 1e-6      # the vectorised activations' approximation error (the rational tanh)

TAIL_SIZES = (0, 1, 7, 15, 16, 17, 33)


# ---- activations ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _grid() -> np.ndarray:
    """A dense float32 grid over [-20, 20] plus the values near 0 where tanh switches from its
    series to the exp form (|x| = 1/16), the clamps (9, 87) and their neighbours."""
    grid = np.linspace(-20, 20, 2_000_001, dtype=np.float64).astype(np.float32)
    near0 = np.geomspace(1e-12, 0.5, 20_001, dtype=np.float64).astype(np.float32)
    edges = np.array([0.0625, 9.0, 87.0, 88.0, 4.5, 6.0], dtype=np.float32)
    steps = np.concatenate([np.nextafter(edges, np.float32(0)), edges,
                            np.nextafter(edges, np.float32(np.inf))])
    out = np.concatenate([grid, near0, -near0, steps, -steps])
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=None)
def _grid_ref(act: str) -> np.ndarray:
    return ACT64[act](_grid().astype(np.float64))


SPECIAL = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, -1.1754944e-38,
                    1e-30, -1e-30, np.inf, -np.inf, np.nan, -np.nan, 1e30, -1e30,
                    3.4028235e38, -3.4028235e38, 100.0, -100.0, 1000.0, -1000.0],
                   dtype=np.float32)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_dense_grid(isa, act):
    x = _grid()
    y = _engine._kernel_activation(isa, act, x)
    assert y.dtype == np.float32 and y.shape == x.shape
    err = np.abs(y.astype(np.float64) - _grid_ref(act))
    worst = int(np.argmax(err))
    assert err[worst] <= ACT_TOL, f"{act}[{isa}]({x[worst]!r}) = {y[worst]!r}, err {err[worst]:.3g}"


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_special_values(isa, act):
    y = _engine._kernel_activation(isa, act, SPECIAL)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ACT64[act](SPECIAL.astype(np.float64))
    # NaN exactly where the reference has NaN (NaN in -> NaN out), +-inf only where it has them.
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_allclose(y, ref, rtol=0, atol=ACT_TOL, equal_nan=True)


@pytest.mark.parametrize("act", ["tanh", "scaled_tanh"])
def test_tanh_keeps_sign_of_zero_and_is_odd(isa, act):
    y = _engine._kernel_activation(isa, act, np.array([0.0, -0.0], dtype=np.float32))
    assert not np.signbit(y[0]) and y[0] == 0.0
    assert np.signbit(y[1]) and y[1] == 0.0, f"{act}(-0.0) = {y[1]!r}, expected -0.0"
    x = _grid()[_grid() > 0]
    np.testing.assert_array_equal(_engine._kernel_activation(isa, act, -x),
                                  -_engine._kernel_activation(isa, act, x))


def test_tanh_small_inputs_relative_accuracy(isa):
    """Below the series threshold tanh(x) ~ x: the result must keep its relative accuracy (no
    cancellation in 1 - e^-2x), down to denormals."""
    x = np.concatenate([np.geomspace(1e-44, 0.06, 5001), [1e-45]]).astype(np.float32)
    x = np.concatenate([x, -x])
    y = _engine._kernel_activation(isa, "tanh", x).astype(np.float64)
    ref = np.tanh(x.astype(np.float64))
    normal = np.abs(x) >= np.finfo(np.float32).tiny
    np.testing.assert_allclose(y[normal], ref[normal], rtol=1e-6, atol=0)
    np.testing.assert_allclose(y[~normal], ref[~normal], rtol=0, atol=1e-44)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("n", TAIL_SIZES)
def test_activation_tails(isa, act, n, rng):
    """Lengths that straddle the vector widths: the tail lanes compute exactly what the main
    loop computes for the same value, and match the reference."""
    full = (rng.standard_normal(64) * 4).astype(np.float32)
    full[::5] = SPECIAL[: len(full[::5])]
    whole = _engine._kernel_activation(isa, act, full)
    part = _engine._kernel_activation(isa, act, full[:n])
    assert part.shape == (n,)
    np.testing.assert_array_equal(part, whole[:n])
    # Every position of a length-n array agrees with the value computed in a full vector.
    for shift in range(1, min(n, 17)):
        np.testing.assert_array_equal(_engine._kernel_activation(isa, act, full[shift:shift + n]),
                                      whole[shift:shift + n])
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ACT64[act](full[:n].astype(np.float64))
    np.testing.assert_allclose(part, ref, rtol=0, atol=ACT_TOL, equal_nan=True)


def test_activation_accepts_views_and_keeps_shape(isa):
    x = np.linspace(-3, 3, 60, dtype=np.float32).reshape(6, 10)[:, ::3]
    y = _engine._kernel_activation(isa, "tanh", x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=0, atol=ACT_TOL)


# ---- C1 and C3: conv + bias + activation + pool ----------------------------------------------
def _layer_ref(x, k, b, act, pool):
    return pool2x2_np(ACT64[act](conv5x5_direct(x, k, b)), pool)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_c1(isa, act, pool, rand_weights, rng):
    net = make_net(rand_weights, {"activation": act, "pool": pool})
    img = (rng.standard_normal((32, 32)) * 1.5).astype(np.float32)
    got = _engine._kernel_c1(isa, net, img)
    assert got.shape == (6, 14, 14) and got.dtype == np.float32
    ref = _layer_ref(img[None], rand_weights["c1.weight"], rand_weights["c1.bias"], act, pool)
    bound = layer_bound(img[None], rand_weights["c1.weight"], rand_weights["c1.bias"], act, pool)
    assert_within(got, ref, bound, what=f"{isa} C1 {act}/{pool} vs float64")


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_c3(isa, act, pool, rand_weights, rng):
    net = make_net(rand_weights, {"activation": act, "pool": pool})
    s2 = rng.uniform(-1, 1, (6, 14, 14)).astype(np.float32)
    got = _engine._kernel_c3(isa, net, s2)
    assert got.shape == (16, 5, 5) and got.dtype == np.float32
    ref = _layer_ref(s2, rand_weights["c3.weight"], rand_weights["c3.bias"], act, pool)
    bound = layer_bound(s2, rand_weights["c3.weight"], rand_weights["c3.bias"], act, pool)
    assert_within(got, ref, bound, what=f"{isa} C3 {act}/{pool} vs float64")


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("where", [(0, 0), (31, 31), (0, 31), (13, 17), (30, 2)])
def test_c1_nan_pixel_stays_local(isa, pool, where, rand_weights, rng):
    """A NaN pixel poisons exactly the pooled outputs whose window sees it (max pooling must
    propagate NaN, not drop it); every other output is unaffected. Positions cover the image
    corners, the vector tails and even/odd columns."""
    net = make_net(rand_weights, {"pool": pool})
    img = rng.random((32, 32), dtype=np.float32)
    img[where] = np.nan
    got = _engine._kernel_c1(isa, net, img)
    ref = _layer_ref(img[None], rand_weights["c1.weight"], rand_weights["c1.bias"], "tanh", pool)
    assert np.isnan(ref).any()
    assert_within(got, ref, layer_bound(img[None], rand_weights["c1.weight"],
                                        rand_weights["c1.bias"], "tanh", pool), what="C1, NaN")


def test_c1_saturates_on_infinite_pixels(isa, rand_weights):
    """+-inf pixels (one per window, so no inf - inf) drive tanh to +-1: finite output."""
    net = make_net(rand_weights)
    img = np.zeros((32, 32), np.float32)
    img[5, 7], img[20, 24] = np.inf, -np.inf
    got = _engine._kernel_c1(isa, net, img)
    ref = _layer_ref(img[None], rand_weights["c1.weight"], rand_weights["c1.bias"], "tanh", "avg")
    assert np.isfinite(got).all()
    # saturated: 1 - tanh is below float32's resolution there, so the rounding bound alone
    np.testing.assert_allclose(got, ref, rtol=0, atol=ACT_TOL)


@pytest.mark.parametrize("pool", POOLS)
def test_c3_nan_input(isa, pool, rand_weights, rng):
    net = make_net(rand_weights, {"pool": pool})
    s2 = rng.uniform(-1, 1, (6, 14, 14)).astype(np.float32)
    s2[3, 13, 0] = np.nan
    got = _engine._kernel_c3(isa, net, s2)
    ref = _layer_ref(s2, rand_weights["c3.weight"], rand_weights["c3.bias"], "tanh", pool)
    assert_within(got, ref, layer_bound(s2, rand_weights["c3.weight"], rand_weights["c3.bias"],
                                        "tanh", pool), what="C3 with a NaN input")


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_c1_c3_isas_agree(isa, act, pool, rand_weights, rng):
    """Every SIMD variant agrees with the scalar specification kernel: two float32 sums in
    different orders, so within twice the derived bound (ReLU outputs are unbounded)."""
    w = rand_weights
    net = make_net(w, {"activation": act, "pool": pool})
    img = (rng.standard_normal((32, 32)) * 1.5).astype(np.float32)
    s2 = _engine._kernel_c1("scalar", net, img)
    assert_within(_engine._kernel_c1(isa, net, img), s2,
                  layer_bound(img[None], w["c1.weight"], w["c1.bias"], act, pool), 2.0,
                  f"{isa} C1 {act}/{pool} vs scalar")
    assert_within(_engine._kernel_c3(isa, net, s2), _engine._kernel_c3("scalar", net, s2),
                  layer_bound(s2, w["c3.weight"], w["c3.bias"], act, pool), 2.0,
                  f"{isa} C3 {act}/{pool} vs scalar")


# ---- dense ------------------------------------------------------------------------------------
DENSE_SHAPES = [(1, 1), (7, 1), (1, 7), (7, 7), (17, 17), (15, 16), (16, 15), (33, 9), (3, 31),
                (5, 129), (400, 120), (120, 84), (84, 10), (200, 130)]


@pytest.mark.parametrize("act", (None,) + ACTIVATIONS)
@pytest.mark.parametrize("n_in,n_out", DENSE_SHAPES)
def test_dense(isa, act, n_in, n_out, rng):
    x = rng.standard_normal(n_in).astype(np.float32)
    w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
    b = (0.1 * rng.standard_normal(n_out)).astype(np.float32)
    got = _engine._kernel_dense(isa, act, x, w, b)
    assert got.shape == (n_out,) and got.dtype == np.float32
    ref = ACT64[act](w.astype(np.float64) @ x.astype(np.float64) + b)
    assert_within(got, ref, dense_bound(x, w, b, act), what=f"{isa} dense {act} {n_in}x{n_out}")


def test_dense_nan_and_inf(isa):
    """A NaN input makes every output NaN; an inf input saturates tanh to +-1 (IEEE: an inf
    times a zero weight is NaN, like the float64 reference)."""
    w = np.ones((17, 3), np.float32)
    w[5] = -1.0
    w[16, 0] = 0.0
    b = np.zeros(17, np.float32)
    got = _engine._kernel_dense(isa, "tanh", np.array([np.nan, 1, 1], np.float32), w, b)
    assert np.isnan(got).all()
    x = np.array([np.inf, 1, 1], np.float32)
    got = _engine._kernel_dense(isa, "tanh", x, w, b)
    with np.errstate(invalid="ignore"):
        ref = np.tanh(w.astype(np.float64) @ x.astype(np.float64))
    assert ref[5] == -1.0 and np.isnan(ref[16])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=0, atol=ACT_TOL, equal_nan=True)


# ---- the scalar building blocks: conv5x5 and pool2x2 -----------------------------------------
@pytest.mark.parametrize("cin,h,w,cout", [(1, 32, 32, 6), (6, 14, 14, 16), (16, 5, 5, 120),
                                          (3, 9, 7, 2), (2, 5, 5, 1), (1, 6, 11, 3)])
def test_conv5x5(cin, h, w, cout, rng):
    x = rng.standard_normal((cin, h, w)).astype(np.float32)
    k = (rng.standard_normal((cout, cin, 5, 5)) / np.sqrt(25 * cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    got = _engine._kernel_conv5x5(x, k, b)
    assert got.shape == (cout, h - 4, w - 4)
    want = conv5x5_direct(x, k, b)
    mag = conv5x5_direct(np.abs(x), np.abs(k), np.abs(b))
    assert_within(got, want, gamma(25 * cin + 1) * mag + U32 * np.abs(want), what="conv5x5")


def test_conv5x5_matches_reference_module(rng):
    """fastlenet.reference.conv5x5 (the ground truth for Net tests) agrees with the kernel."""
    x = rng.standard_normal((6, 14, 14)).astype(np.float32)
    k = (rng.standard_normal((16, 6, 5, 5)) / np.sqrt(150)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    ref = fastlenet.reference.conv5x5(x.astype(np.float64), k.astype(np.float64),
                                      b.astype(np.float64))
    mag = conv5x5_direct(np.abs(x), np.abs(k), np.abs(b))
    assert_within(_engine._kernel_conv5x5(x, k, b), ref, gamma(151) * mag + U32 * np.abs(ref),
                  what="conv5x5 vs fastlenet.reference")


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("shape", [(6, 28, 28), (16, 10, 10), (1, 2, 2), (3, 6, 8), (2, 4, 34)])
def test_pool2x2(pool, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    got = _engine._kernel_pool2x2(x, pool)
    assert got.shape == (shape[0], shape[1] // 2, shape[2] // 2)
    np.testing.assert_allclose(got, pool2x2_np(x, pool), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("pos", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_pool2x2_max_propagates_nan(pos):
    """NaN anywhere in a 2x2 window gives NaN, whichever operand of the comparisons it is."""
    for other in (-np.inf, -1.0, 0.0, 5.0, np.inf):
        x = np.full((1, 2, 2), other, np.float32)
        x[(0,) + pos] = np.nan
        assert np.isnan(_engine._kernel_pool2x2(x, "max")[0, 0, 0]), (pos, other)
        assert np.isnan(_engine._kernel_pool2x2(x, "avg")[0, 0, 0]), (pos, other)


def test_pool2x2_special_values():
    x = np.array([[[np.inf, 1.0, -np.inf, -np.inf],
                   [2.0, 3.0, -np.inf, 0.0]]], np.float32)
    np.testing.assert_array_equal(_engine._kernel_pool2x2(x, "max"), [[[np.inf, 0.0]]])
    np.testing.assert_array_equal(_engine._kernel_pool2x2(x, "avg"), [[[np.inf, -np.inf]]])
    x = np.array([[[np.inf, -np.inf], [0.0, 0.0]]], np.float32)
    with np.errstate(invalid="ignore"):
        assert np.isnan(_engine._kernel_pool2x2(x, "avg")[0, 0, 0])


def test_isa_hooks_refuse_unavailable_isas():
    for name in ISAS:
        if name not in fastlenet.available_isas():
            with pytest.raises(ValueError, match="not available"):
                _engine._kernel_activation(name, "tanh", np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="not available"):
        _engine._kernel_activation("sse9", "tanh", np.zeros(3, np.float32))
