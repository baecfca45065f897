"""Engines to compare, on the same canonical weights, and a fair timer.

Used by benchmarks/ (pytest-benchmark and compare.py) and by `fastlenet bench`. Every engine is
built as `make(weights, meta, threads) -> run(x)`, where x is a float32 (N, 1, 32, 32) array and
run returns the (N, 10) logits as a numpy array: the whole Python-call-to-numpy-result path a
user pays. Peers (ONNX Runtime, OpenVINO, PyTorch) are optional: an engine whose package is
missing reports why in `unavailable`.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Callable, Mapping

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


# ---- fastlenet and the baselines ------------------------------------------------------------
def make_fastlenet(weights, meta, threads, isa=None) -> Runner:
    from fastlenet._engine import Net

    net = Net(weights, meta, num_threads=threads)
    if isa is not None:
        net.isa = isa
    return net.logits


def make_fastlenet_int8(weights, meta, threads, isa=None) -> Runner:
    """fastlenet's int8 engine on the same weights (tanh: fixed scales, no calibration)."""
    from fastlenet._engine import Net

    net = Net(weights, meta, num_threads=threads).quantize(_calibration_images(1000))
    if isa is not None:
        net.isa = isa
    return net.logits


def _calibration_images(n: int) -> np.ndarray:
    """n MNIST training digits as float32 (n, 1, 32, 32) in 0..1 when ../shared/data/mnist is
    there (the issue's ORT figure: calibrated on training digits), else the bundled sample of
    test digits (the speed does not depend on which digits calibrate)."""
    from pathlib import Path

    from fastlenet.io import containers

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    path = shared / "train-images-idx3-ubyte.gz"
    if path.exists():
        x = containers.read_idx(path)[-n:]
    else:
        with np.load(Path(__file__).parent / "data" / "mnist_sample.npz") as z:
            x = z["images"][:n]
    return np.pad(x, ((0, 0), (2, 2), (2, 2)))[:, None].astype(np.float32) / 255


def make_onnxruntime_int8(weights, meta, threads) -> Runner:
    """ONNX Runtime's static int8 quantization of the same graph: QDQ, per-channel int8 weights,
    uint8 activations, MinMax-calibrated on 1,000 MNIST training digits."""
    import onnxruntime as ort
    from onnxruntime import quantization as oq

    calib = _calibration_images(1000)

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self._it = iter(calib[i:i + 100] for i in range(0, len(calib), 100))

        def get_next(self):
            b = next(self._it, None)
            return None if b is None else {"x": b}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as f:
            f.write(onnx_model_bytes(weights, meta))
        oq.quantize_static(src, dst, Reader(), quant_format=oq.QuantFormat.QDQ,
                           per_channel=True, activation_type=oq.QuantType.QUInt8,
                           weight_type=oq.QuantType.QInt8,
                           calibrate_method=oq.CalibrationMethod.MinMax)
        with open(dst, "rb") as f:
            model = f.read()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def make_reference(weights, meta, threads) -> Runner:
    from fastlenet import reference

    return lambda x: reference.logits(weights, x, **_act_pool(meta))


def _act_pool(meta):
    return {"activation": meta.get("activation", "tanh"), "pool": meta.get("pool", "avg")}


def make_numpy(weights, meta, threads) -> Runner:
    """A vectorised float32 NumPy LeNet-5 (im2col + matmul), the best one can do without C."""
    from numpy.lib.stride_tricks import sliding_window_view

    if meta.get("activation", "tanh") != "tanh" or meta.get("pool", "avg") != "avg":
        raise ValueError("the NumPy baseline implements tanh + average pooling only")
    w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    k1 = w["c1.weight"].reshape(6, 25).T
    k3 = w["c3.weight"].reshape(16, 150).T
    k5 = w["c5.weight"].reshape(120, 400).T
    f6, out = w["f6.weight"].T, w["output.weight"].T

    def conv(x, k, b):  # x (N, C, H, W) -> (N, O, H-4, W-4)
        n, c, h, wd = x.shape
        cols = sliding_window_view(x, (5, 5), axis=(2, 3))  # N, C, H-4, W-4, 5, 5
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n, h - 4, wd - 4, c * 25)
        return np.tanh(cols @ k + b).transpose(0, 3, 1, 2)

    def pool(x):
        n, c, h, wd = x.shape
        return x.reshape(n, c, h // 2, 2, wd // 2, 2).mean(axis=(3, 5))

    def run(x):
        x = np.asarray(x, np.float32).reshape(-1, 1, 32, 32)
        s2 = pool(conv(x, k1, w["c1.bias"]))
        s4 = pool(conv(s2, k3, w["c3.bias"]))
        c5 = np.tanh(s4.reshape(len(x), 400) @ k5 + w["c5.bias"])
        return np.tanh(c5 @ f6 + w["f6.bias"]) @ out + w["output.bias"]

    return run


# ---- peers ----------------------------------------------------------------------------------
def onnx_model_bytes(weights: Mapping[str, np.ndarray], meta) -> bytes:
    """The LeNet-5 graph as ONNX (opset 17), built directly from the weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    act = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}[meta.get("activation", "tanh")]
    pool = {"avg": "AveragePool", "max": "MaxPool"}[meta.get("pool", "avg")]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1.weight", "c1.bias"], ["c1"]), n(act, ["c1"], ["a1"]),
        n(pool, ["a1"], ["s2"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["s2", "c3.weight", "c3.bias"], ["c3"]), n(act, ["c3"], ["a3"]),
        n(pool, ["a3"], ["s4"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["s4", "c5.weight", "c5.bias"], ["c5"]), n(act, ["c5"], ["a5"]),
        n("Flatten", ["a5"], ["flat"]),
        n("Gemm", ["flat", "f6.weight", "f6.bias"], ["f6"], transB=1), n(act, ["f6"], ["a6"]),
        n("Gemm", ["a6", "output.weight", "output.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "lenet5",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_onnxruntime(weights, meta, threads) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_model_bytes(weights, meta), opts,
                                providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def make_openvino(weights, meta, threads) -> Runner:
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lenet5.onnx")
        with open(path, "wb") as f:
            f.write(onnx_model_bytes(weights, meta))
        core = ov.Core()
        # f32 forced: on AVX-512 BF16 machines OpenVINO otherwise computes in bf16.
        compiled = core.compile_model(core.read_model(path), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return run


def _torch_module(weights, meta):
    import torch
    from torch import nn

    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[meta.get("activation", "tanh")]
    pool = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[meta.get("pool", "avg")]
    model = nn.Sequential(nn.Conv2d(1, 6, 5), act(), pool(2, 2), nn.Conv2d(6, 16, 5), act(),
                          pool(2, 2), nn.Conv2d(16, 120, 5), act(), nn.Flatten(),
                          nn.Linear(120, 84), act(), nn.Linear(84, 10))
    names = ["c1", None, None, "c3", None, None, "c5", None, None, "f6", None, "output"]
    state = {f"{i}.{p}": torch.from_numpy(np.asarray(weights[f"{name}.{p}"], np.float32))
             for i, name in enumerate(names) if name for p in ("weight", "bias")}
    model.load_state_dict(state)
    return model.eval()


def make_torch(weights, meta, threads) -> Runner:
    import torch

    model = _torch_module(weights, meta)

    def run(x):
        torch.set_num_threads(threads)  # process-wide in torch: set on every call
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def make_torch_compile(weights, meta, threads) -> Runner:
    import torch
    import torch._inductor.config as inductor

    inductor.freezing = True
    model = torch.compile(_torch_module(weights, meta))

    def run(x):
        torch.set_num_threads(threads)  # process-wide in torch: set on every call
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


ENGINES: dict[str, Callable[..., Runner]] = {
    "fastlenet": make_fastlenet,
    "fastlenet-int8": make_fastlenet_int8,
    "numpy": make_numpy,
    "reference": make_reference,
    "onnxruntime": make_onnxruntime,
    "onnxruntime-int8": make_onnxruntime_int8,
    "openvino": make_openvino,
    "torch": make_torch,
    "torch.compile": make_torch_compile,
}
PEERS = ("onnxruntime", "onnxruntime-int8", "openvino", "torch", "torch.compile")


def unavailable(engine: str) -> str | None:
    """Why `engine` cannot run here (a missing package), or None."""
    needs = {"onnxruntime": ("onnxruntime", "onnx"), "onnxruntime-int8": ("onnxruntime", "onnx"),
             "openvino": ("openvino", "onnx"),
             "torch": ("torch",), "torch.compile": ("torch",)}.get(engine, ())
    import importlib.util

    for mod in needs:
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install 'fastlenet[peers]')"
    return None


# ---- timing ---------------------------------------------------------------------------------
def time_call(run: Runner, x: np.ndarray, min_seconds: float = 0.05) -> float:
    """Median seconds per call over repeats filling about min_seconds (after one warm-up)."""
    run(x)
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_seconds and len(times) >= 3:
            return statistics.median(times)


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random canonical weights with unit-variance pre-activations (nothing saturates)."""
    from fastlenet.weights.layout import CANONICAL_SHAPES

    rng = np.random.default_rng(seed)
    out = {}
    for k, shape in CANONICAL_SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if k.endswith("weight") else 1
        scale = 1 / np.sqrt(fan_in) if k.endswith("weight") else 0.1
        out[k] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out
