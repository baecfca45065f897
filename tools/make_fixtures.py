#!/usr/bin/env python
"""Build the framework fixtures in tests/data/frameworks/ with the real frameworks.

Not part of the package or of CI: it needs PyTorch, Keras 3 (torch backend),
JAX + Flax and ONNX (and for the "files" family safetensors and h5py) installed in the
running python, e.g.::

    pip install torch==2.13.0          # CPU wheel
    pip install keras onnx onnxscript jax jaxlib flax safetensors h5py
    KERAS_BACKEND=torch python tools/make_fixtures.py [--only NAME ...]

For each fixture NAME it writes
  NAME.npz          the weights exactly as that framework's usual export writes them
  NAME.expect.npz   x (8,1,32,32) float32 (NCHW; keras/flax were fed x.transpose(0,2,3,1)),
                    logits (8,10) and features (8,84, F6 after its activation) computed
                    by the framework itself, and strings activation, pool, framework,
                    layout (the layout fastlenet.formats should detect), notes.
The "files" family writes the framework's own files instead (NAME.safetensors, NAME.keras,
NAME.h5, NAME.weights.h5) beside NAME.expect.npz with x (8,C,S,S), logits (8,K), features,
proba (the model's own output), weights_file, load_kwargs; see file_fixtures.
and MANIFEST.json with versions.  Frameworks that are missing are skipped
(with a message) unless --require-all is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "frameworks"
N = 8
SEED = 1234


def make_x():
    rng = np.random.default_rng(SEED)
    return rng.uniform(-1.0, 1.0, size=(N, 1, 32, 32)).astype(np.float32)


def save(name, weights, logits, features, *, activation, pool, framework, layout, notes=""):
    OUT.mkdir(parents=True, exist_ok=True)
    if isinstance(weights, (list, tuple)):
        np.savez(OUT / f"{name}.npz", *weights)
    else:
        np.savez(OUT / f"{name}.npz", **weights)
    np.savez(
        OUT / f"{name}.expect.npz",
        x=make_x(),
        logits=np.asarray(logits, dtype=np.float32),
        features=np.asarray(features, dtype=np.float32),
        activation=np.array(activation),
        pool=np.array(pool),
        framework=np.array(framework),
        layout=np.array(layout),
        notes=np.array(notes),
    )
    keys = list(weights) if not isinstance(weights, (list, tuple)) else [f"arr_{i}" for i in range(len(weights))]
    print(f"  {name}: {len(keys)} arrays, first keys {keys[:4]}", flush=True)
    return keys


# ----------------------------------------------------------------------------- PyTorch

def torch_fixtures(manifest):
    import torch
    import torch.nn as nn

    manifest["torch"] = torch.__version__
    torch.manual_seed(SEED)
    x = torch.from_numpy(make_x())

    class ScaledTanh(nn.Module):
        def forward(self, t):
            return 1.7159 * torch.tanh(2.0 * t / 3.0)

    def act_mod(a):
        return {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "scaled_tanh": ScaledTanh}[a]()

    def pool_mod(p):
        return nn.AvgPool2d(2) if p == "avg" else nn.MaxPool2d(2)

    def perturb(model):
        # "briefly trained"-like: move every parameter off its init, seeded
        g = torch.Generator().manual_seed(SEED)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        return model.eval()

    def export_state(model):
        return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}

    # 1. nn.Sequential, C5 as Conv2d: keys 0.weight, 3.weight, 6.weight, 9.weight, 11.weight
    def sequential(a, p):
        return nn.Sequential(
            nn.Conv2d(1, 6, 5), act_mod(a), pool_mod(p),
            nn.Conv2d(6, 16, 5), act_mod(a), pool_mod(p),
            nn.Conv2d(16, 120, 5), act_mod(a), nn.Flatten(),
            nn.Linear(120, 84), act_mod(a),
            nn.Linear(84, 10),
        )

    for name, a, p in (("torch_sequential", "tanh", "avg"),
                       ("torch_sequential_scaled_tanh", "scaled_tanh", "avg")):
        m = perturb(sequential(a, p))
        with torch.no_grad():
            logits = m(x)
            feats = m[:11](x)
        save(name, export_state(m), logits.numpy(), feats.numpy(), activation=a, pool=p,
             framework="pytorch", layout="pytorch-sequential")

    # 2. nested Sequential features/classifier, Flatten + Linear(400,120), ReLU + MaxPool
    class Nested(nn.Module):
        def __init__(self, a, p):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 6, 5), act_mod(a), pool_mod(p),
                                          nn.Conv2d(6, 16, 5), act_mod(a), pool_mod(p))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(400, 120), act_mod(a),
                                            nn.Linear(120, 84), act_mod(a), nn.Linear(84, 10))

        def forward(self, t, features=False):
            h = self.classifier[:5](self.features(t))
            return h if features else self.classifier[5](h)

    m = perturb(Nested("relu", "max"))
    with torch.no_grad():
        save("torch_nested_relu_max", export_state(m), m(x).numpy(), m(x, True).numpy(),
             activation="relu", pool="max", framework="pytorch", layout="pytorch-sequential")

    # 3. named attributes, C5 as Conv2d: conv1 conv2 conv3 fc1(=F6) fc2(=output)
    class NamedConv(nn.Module):
        def __init__(self, a, p):
            super().__init__()
            self.a, self.p = a, p
            self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5), nn.Conv2d(16, 120, 5)
            self.fc1, self.fc2 = nn.Linear(120, 84), nn.Linear(84, 10)
            self.act, self.pool = act_mod(a), pool_mod(p)

        def forward(self, t, features=False):
            t = self.pool(self.act(self.conv1(t)))
            t = self.pool(self.act(self.conv2(t)))
            t = torch.flatten(self.act(self.conv3(t)), 1)
            f = self.act(self.fc1(t))
            return f if features else self.fc2(f)

    # 4. named attributes, C5 as Flatten + Linear(400,120): conv1 conv2 fc1(=C5!) fc2 fc3
    class NamedLinear(nn.Module):
        def __init__(self, a, p):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)
            self.act, self.pool = act_mod(a), pool_mod(p)

        def forward(self, t, features=False):
            t = self.pool(self.act(self.conv1(t)))
            t = self.pool(self.act(self.conv2(t)))
            t = torch.flatten(t, 1)          # C,H,W order
            t = self.act(self.fc1(t))
            f = self.act(self.fc2(t))
            return f if features else self.fc3(f)

    for name, cls, a, p in (("torch_named_conv", NamedConv, "tanh", "avg"),
                            ("torch_named_linear", NamedLinear, "tanh", "avg"),
                            ("torch_named_sigmoid", NamedLinear, "sigmoid", "avg")):
        m = perturb(cls(a, p))
        with torch.no_grad():
            save(name, export_state(m), m(x).numpy(), m(x, True).numpy(), activation=a, pool=p,
                 framework="pytorch", layout="pytorch-named")

    # 5. DataParallel: module. prefix (works on CPU-only machines: it just wraps)
    inner = perturb(NamedConv("tanh", "max"))
    dp = nn.DataParallel(inner)
    with torch.no_grad():
        save("torch_dataparallel", export_state(dp), dp(x).numpy(), inner(x, True).numpy(),
             activation="tanh", pool="max", framework="pytorch", layout="pytorch-dataparallel")

    return NamedLinear, perturb


# ----------------------------------------------------------------------------- ONNX

def onnx_fixtures(manifest, NamedLinear, perturb):
    import torch
    import torch.nn as nn
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    manifest["onnx"] = onnx.__version__
    try:
        import onnxscript
        manifest["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    x = make_x()

    class TwoOut(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, t):
            return self.m(t), self.m(t, True)

    def run_onnx(path):
        sess = ReferenceEvaluator(str(path))
        logits, feats = sess.run(None, {"x": x})
        return logits, feats

    def initializers(path):
        g = onnx.load(str(path)).graph
        return {i.name: numpy_helper.to_array(i) for i in g.initializer}

    # a) dynamo exporter (torch.export based), weights embedded in the file
    torch.manual_seed(SEED + 1)
    m = perturb(NamedLinear("tanh", "avg"))
    path = OUT / "onnx_dynamo.onnx"
    torch.onnx.export(TwoOut(m), (torch.from_numpy(x),), str(path), dynamo=True, external_data=False,
                      input_names=["x"], output_names=["logits", "features"])
    logits, feats = run_onnx(path)
    save("onnx_dynamo", initializers(path), logits, feats, activation="tanh", pool="avg",
         framework="onnx", layout="onnx",
         notes="torch.onnx.export(dynamo=True); int64 Reshape shape constant among initializers")

    # b) legacy TorchScript exporter, the C5 dense as x @ W.t(): constant folding
    #    turns W.t() into a fresh (in,out) initializer named onnx::MatMul_NNN
    class MatMulNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.w5 = nn.Parameter(torch.randn(120, 400) * 0.05)
            self.b5 = nn.Parameter(torch.randn(120) * 0.05)
            self.w6 = nn.Parameter(torch.randn(84, 120) * 0.1)
            self.b6 = nn.Parameter(torch.randn(84) * 0.1)
            self.out = nn.Linear(84, 10)

        def forward(self, t, features=False):
            t = nn.functional.max_pool2d(torch.relu(self.conv1(t)), 2)
            t = nn.functional.max_pool2d(torch.relu(self.conv2(t)), 2)
            t = t.reshape(t.shape[0], 400)
            t = torch.relu(torch.matmul(t, self.w5.t()) + self.b5)
            f = torch.relu(torch.matmul(t, self.w6.t()) + self.b6)
            return f if features else self.out(f)

    torch.manual_seed(SEED + 2)
    m = perturb(MatMulNet())
    path = OUT / "onnx_legacy.onnx"
    torch.onnx.export(TwoOut(m), (torch.from_numpy(x),), str(path), dynamo=False,
                      input_names=["x"], output_names=["logits", "features"], do_constant_folding=True)
    logits, feats = run_onnx(path)
    save("onnx_legacy", initializers(path), logits, feats, activation="relu", pool="max",
         framework="onnx", layout="onnx",
         notes="torch.onnx.export(dynamo=False), constant folding renames transposed weights onnx::MatMul_*")


# ----------------------------------------------------------------------------- Keras

def keras_fixtures(manifest):
    import keras
    from keras import layers as L

    manifest["keras"] = keras.__version__
    manifest["keras_backend"] = keras.backend.backend()
    keras.utils.set_random_seed(SEED)
    x = make_x()
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def build(c5, a="tanh", p="avg"):
        P = L.AveragePooling2D if p == "avg" else L.MaxPooling2D
        ls = [keras.Input((32, 32, 1)), L.Conv2D(6, 5, activation=a), P(2), L.Conv2D(16, 5, activation=a), P(2)]
        if c5 == "conv":
            ls += [L.Conv2D(120, 5, activation=a), L.Flatten()]
        else:
            ls += [L.Flatten(), L.Dense(120, activation=a)]   # flattens H,W,C
        ls += [L.Dense(84, activation=a), L.Dense(10)]
        return keras.Sequential(ls)

    def run(model):
        logits = keras.ops.convert_to_numpy(model(x_nhwc))
        h = x_nhwc
        for layer in model.layers[:-1]:
            h = layer(h)
        return logits, keras.ops.convert_to_numpy(h)

    # throwaway models first: layer counters grow within a session, so the
    # fixtures below get names like conv2d_9, conv2d_10, dense_12 ...
    for _ in range(3):
        build("conv")

    m = build("conv")
    lg, ft = run(m)
    path_w = {w.path: keras.ops.convert_to_numpy(w) for w in m.weights}
    save("keras_path_conv", path_w, lg, ft, activation="tanh", pool="avg", framework="keras",
         layout="keras-path", notes="{w.path: w.numpy()} Keras 3; C5 Conv2D")
    # TF2-style names: layer/var:0 (what tf.Variable.name gives), large counters
    tf2 = {f"{w.path.split('/')[-2]}/{w.path.split('/')[-1]}:0": keras.ops.convert_to_numpy(w) for w in m.weights}
    save("keras_tf2_names", tf2, lg, ft, activation="tanh", pool="avg", framework="keras",
         layout="keras-tf2", notes="TF2 w.name style keys (layer/var:0) derived from the Keras 3 paths")

    m = build("dense")
    lg, ft = run(m)
    save("keras_path_dense", {w.path: keras.ops.convert_to_numpy(w) for w in m.weights}, lg, ft,
         activation="tanh", pool="avg", framework="keras", layout="keras-path",
         notes="Flatten + Dense(120) as C5 (H,W,C flatten)")

    m = build("dense", a="relu", p="max")
    lg, ft = run(m)
    save("keras_positional", list(m.get_weights()), lg, ft, activation="relu", pool="max",
         framework="keras", layout="keras-positional", notes="np.savez(path, *model.get_weights())")

    m = build("conv", a="sigmoid", p="avg")
    lg, ft = run(m)
    save("keras_positional_conv", list(m.get_weights()), lg, ft, activation="sigmoid", pool="avg",
         framework="keras", layout="keras-positional", notes="np.savez(path, *model.get_weights()); C5 Conv2D")


# ----------------------------------------------------------------------------- Flax

def flax_fixtures(manifest):
    import jax
    import jax.numpy as jnp
    import flax
    import flax.linen as nn
    from flax.traverse_util import flatten_dict

    manifest["jax"] = jax.__version__
    manifest["flax"] = flax.__version__
    x = make_x()
    x_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))

    class LeNet(nn.Module):
        c5: str = "conv"

        @nn.compact
        def __call__(self, t):
            t = nn.avg_pool(jnp.tanh(nn.Conv(6, (5, 5), padding="VALID")(t)), (2, 2), strides=(2, 2))
            t = nn.avg_pool(jnp.tanh(nn.Conv(16, (5, 5), padding="VALID")(t)), (2, 2), strides=(2, 2))
            if self.c5 == "conv":
                t = jnp.tanh(nn.Conv(120, (5, 5), padding="VALID")(t)).reshape((t.shape[0], -1))
            else:
                t = jnp.tanh(nn.Dense(120)(t.reshape((t.shape[0], -1))))  # H,W,C order
            f = jnp.tanh(nn.Dense(84)(t))
            return nn.Dense(10)(f), f

    for i, c5 in enumerate(("conv", "dense")):
        model = LeNet(c5=c5)
        variables = model.init(jax.random.PRNGKey(SEED + i), x_nhwc)
        # perturb biases (flax initialises them to zero)
        leaves, tree = jax.tree_util.tree_flatten(variables)
        keys = jax.random.split(jax.random.PRNGKey(SEED + 10 + i), len(leaves))
        leaves = [l + 0.05 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
        variables = jax.tree_util.tree_unflatten(tree, leaves)
        with jax.default_matmul_precision("highest"):
            logits, feats = model.apply(variables, x_nhwc)
        flat = {k: np.asarray(v) for k, v in flatten_dict(flax.core.unfreeze(variables), sep="/").items()}
        # file order is not layer order: store the dict sorted by leaf name, then path
        flat = dict(sorted(flat.items(), key=lambda kv: kv[0][::-1]))
        save(f"flax_{c5}", flat, np.asarray(logits), np.asarray(feats), activation="tanh", pool="avg",
             framework="flax", layout="flax",
             notes="flax.traverse_util.flatten_dict(variables, sep='/'); " +
                   ("C5 nn.Conv" if c5 == "conv" else "C5 reshape + nn.Dense(120), H,W,C order"))


# ----------------------------------------------------------------------------- other files

def make_x_geom(c, size=32, n=N, seed=SEED):
    """(n, c, size, size) float32 in [0, 1) (pixels scaled as the models were fed)."""
    rng = np.random.default_rng([seed, c, size])
    return rng.random((n, c, size, size), dtype=np.float32)


def save_file_fixture(name, file, x, logits, features, proba, *, framework, load_kwargs, notes):
    """NAME.expect.npz for a weights file the framework wrote itself (OUT/file): the input x
    (NCHW), the framework's own logits, F6 features and output probabilities, and the keyword
    arguments fastlenet.load needs (none when the file records activation and pooling)."""
    np.savez(
        OUT / f"{name}.expect.npz",
        x=x, logits=np.asarray(logits, np.float32), features=np.asarray(features, np.float32),
        proba=np.asarray(proba, np.float32), weights_file=np.array(file), framework=np.array(framework),
        load_kwargs=np.array(json.dumps(load_kwargs)), notes=np.array(notes),
        num_classes=np.array(np.shape(logits)[1]), in_channels=np.array(x.shape[1]),
    )
    print(f"  {name}: {file} ({(OUT / file).stat().st_size:,} bytes), K={np.shape(logits)[1]}, "
          f"C={x.shape[1]}", flush=True)


def file_fixtures(manifest):
    """The files people actually have: safetensors from PyTorch, Keras's own .keras / .h5 /
    .weights.h5, for other K and for RGB input. Random-init (perturbed) weights keep them small."""
    import torch
    import torch.nn as nn
    import keras
    from keras import layers as L
    import safetensors
    from safetensors.torch import save_file
    import h5py

    manifest.update(torch=torch.__version__, keras=keras.__version__,
                    keras_backend=keras.backend.backend(), safetensors=safetensors.__version__,
                    h5py=h5py.__version__)
    OUT.mkdir(parents=True, exist_ok=True)

    # 1. The PyTorch CIFAR-10 tutorial's network (3x32x32 RGB, ReLU, max pooling, C5 as
    #    Linear(400, 120)), saved with safetensors.torch.save_file: the file records no
    #    activations, so loading names them.
    class CifarNet(nn.Module):
        def __init__(self, k=10):
            super().__init__()
            self.conv1, self.pool, self.conv2 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, k)

        def forward(self, t, features=False):
            t = self.pool(torch.relu(self.conv1(t)))
            t = self.pool(torch.relu(self.conv2(t)))
            t = torch.flatten(t, 1)
            f = torch.relu(self.fc2(torch.relu(self.fc1(t))))
            return f if features else self.fc3(f)

    torch.manual_seed(SEED + 20)
    x = make_x_geom(3)
    for name, k in (("torch_cifar10", 10), ("torch_gtsrb43", 43)):
        m = CifarNet(k).eval()
        save_file(m.state_dict(), str(OUT / f"{name}.safetensors"))
        with torch.no_grad():
            lg, ft = m(torch.from_numpy(x)), m(torch.from_numpy(x), True)
        save_file_fixture(name, f"{name}.safetensors", x, lg.numpy(), ft.numpy(),
                          torch.softmax(lg, 1).numpy(), framework="pytorch",
                          load_kwargs={"activation": "relu", "pool": "max"},
                          notes="safetensors.torch.save_file(model.state_dict(), path); the "
                                "CIFAR-10 tutorial network" + ("" if k == 10 else f", {k} classes"))

    # 2. Keras models saved by Keras itself. Each is compiled and trained one step, so the files
    #    carry optimizer state beside the weights (as users' files do).
    keras.utils.set_random_seed(SEED + 30)

    def keras_run(model, x_nchw):
        """(logits, F6 features, model output) computed by Keras: the layers one by one; the
        logits are the last Dense layer's pre-activation, x @ kernel + bias, in keras.ops."""
        h = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
        out = keras.ops.convert_to_numpy(model(h))
        last = [l for l in model.layers if isinstance(l, L.Dense)][-1]
        for layer in model.layers[: model.layers.index(last)]:
            h = layer(h)
        feats = h
        logits = keras.ops.matmul(feats, last.kernel) + last.bias
        if last.get_config()["activation"] != "softmax":  # a logits model: Keras's own softmax
            out = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        return (keras.ops.convert_to_numpy(logits), keras.ops.convert_to_numpy(feats), out)

    def train_one_step(model, c, size, k, optimizer="adam"):
        # Adam keeps two slot arrays per weight (the files triple in size); plain SGD keeps
        # only its iteration count and learning rate
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(SEED)
        model.fit(rng.random((16, size, size, c), dtype=np.float32), rng.integers(0, k, 16),
                  epochs=1, batch_size=16, verbose=0)
        return model

    # a) EMNIST balanced (47 classes), 28x28 input, the first convolution 'same'-padded (the
    #    classic Keras LeNet), ReLU + max pooling, softmax output: model.save("m.keras")
    m = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(6, 5, padding="same", activation="relu"),
        L.MaxPooling2D(2), L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
        L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dropout(0.2),
        L.Dense(47, activation="softmax")])
    m = train_one_step(m, 1, 28, 47)
    x = make_x_geom(1, 28)
    m.save(str(OUT / "keras_emnist47.keras"))
    save_file_fixture("keras_emnist47", "keras_emnist47.keras", x, *keras_run(m, x),
                      framework="keras", load_kwargs={},
                      notes='model.save("m.keras"); 28x28 input, Conv2D padding="same", '
                            "Dropout, softmax output, Adam state in the archive")

    # b) EMNIST letters (26 classes): tanh + average pooling, C5 as a 5x5 Conv2D, a separate
    #    Activation layer; the legacy model.save("m.h5")
    m = keras.Sequential([
        keras.Input((32, 32, 1)), L.Conv2D(6, 5), L.Activation("tanh"), L.AveragePooling2D(2),
        L.Conv2D(16, 5, activation="tanh"), L.AveragePooling2D(2),
        L.Conv2D(120, 5, activation="tanh"), L.Flatten(), L.Dense(84, activation="tanh"),
        L.Dense(26)])
    m = train_one_step(m, 1, 32, 26, "sgd")
    x = make_x_geom(1)
    m.save(str(OUT / "keras_letters26.h5"))
    save_file_fixture("keras_letters26", "keras_letters26.h5", x, *keras_run(m, x),
                      framework="keras", load_kwargs={},
                      notes='legacy model.save("m.h5"): model_config attribute, layer_names; '
                            "C5 Conv2D, Activation layer, SGD state in optimizer_weights")

    # c) model.save_weights("m.weights.h5") of a 10-class sigmoid model whose layer names sort
    #    in no useful order: the file records no activation, so loading names it
    names = ["zeta", "pool_a", "alpha", "pool_b", "flat", "mid", "c5", "out"]
    m = keras.Sequential([
        keras.Input((32, 32, 1)), L.Conv2D(6, 5, activation="sigmoid", name=names[0]),
        L.AveragePooling2D(2, name=names[1]), L.Conv2D(16, 5, activation="sigmoid", name=names[2]),
        L.AveragePooling2D(2, name=names[3]), L.Flatten(name=names[4]),
        L.Dense(120, activation="sigmoid", name=names[5]),
        L.Dense(84, activation="sigmoid", name=names[6]), L.Dense(10, name=names[7])])
    m = train_one_step(m, 1, 32, 10, "sgd")
    x = make_x_geom(1)
    m.save_weights(str(OUT / "keras_sigmoid.weights.h5"))
    save_file_fixture("keras_sigmoid", "keras_sigmoid.weights.h5", x, *keras_run(m, x),
                      framework="keras", load_kwargs={"activation": "sigmoid", "pool": "avg"},
                      notes='model.save_weights("m.weights.h5"); layer names zeta, alpha, mid, '
                            "c5, out (sorted names are not layer order)")

    # d) a subclassed keras.Model (layers as attributes; EMNIST ByClass, 62 classes):
    #    save_weights stores attribute-named groups (conv1/vars ...), not layers/<name>
    class SubLeNet(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv1, self.pool = L.Conv2D(6, 5, activation="tanh"), L.AveragePooling2D(2)
            self.conv2, self.flat = L.Conv2D(16, 5, activation="tanh"), L.Flatten()
            self.fc1, self.fc2 = L.Dense(120, activation="tanh"), L.Dense(84, activation="tanh")
            self.head = L.Dense(62)

        def call(self, t):
            t = self.flat(self.pool(self.conv2(self.pool(self.conv1(t)))))
            return self.head(self.fc2(self.fc1(t)))

    m = SubLeNet()
    x = make_x_geom(1)
    m(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # build
    m.save_weights(str(OUT / "keras_subclassed62.weights.h5"))
    h = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    h = m.fc2(m.fc1(m.flat(m.pool(m.conv2(m.pool(m.conv1(h)))))))
    lg = keras.ops.matmul(h, m.head.kernel) + m.head.bias
    save_file_fixture("keras_subclassed62", "keras_subclassed62.weights.h5", x,
                      keras.ops.convert_to_numpy(lg), keras.ops.convert_to_numpy(h),
                      keras.ops.convert_to_numpy(keras.ops.softmax(lg, axis=-1)),
                      framework="keras", load_kwargs={"activation": "tanh", "pool": "avg"},
                      notes="subclassed keras.Model, model.save_weights: groups conv1/vars, "
                            "fc1/vars ... named by attribute")

    # e) traffic signs (GTSRB, 43 classes), RGB 32x32x3, Functional API, ReLU + max pooling:
    #    model.save("m.keras")
    inp = keras.Input((32, 32, 3))
    t = L.MaxPooling2D(2)(L.Conv2D(6, 5, activation="relu")(inp))
    t = L.MaxPooling2D(2)(L.Conv2D(16, 5, activation="relu")(t))
    t = L.Dense(120, activation="relu")(L.Flatten()(t))
    t = L.Dense(84, activation="relu")(t)
    m = keras.Model(inp, L.Dense(43, activation="softmax")(t))
    m = train_one_step(m, 3, 32, 43, keras.optimizers.SGD(momentum=0.9))
    x = make_x_geom(3)
    m.save(str(OUT / "keras_gtsrb43.keras"))
    # a Functional model's layers include the InputLayer; keras_run skips nothing else
    lg, ft, out = keras_run(keras.Sequential(m.layers[1:]), x)
    save_file_fixture("keras_gtsrb43", "keras_gtsrb43.keras", x, lg, ft, out,
                      framework="keras", load_kwargs={},
                      notes='Functional keras.Model, RGB input, model.save("m.keras"), SGD momentum state')


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=["torch", "onnx", "keras", "flax", "files"],
                    help="build only these families")
    ap.add_argument("--require-all", action="store_true", help="fail if a framework is missing")
    args = ap.parse_args(argv)
    fams = args.only or ["torch", "onnx", "keras", "flax", "files"]
    manifest = {"numpy": np.__version__, "python": sys.version.split()[0], "seed": SEED}
    mpath = OUT / "MANIFEST.json"
    if mpath.exists():
        manifest = {**json.loads(mpath.read_text()), **manifest}

    def attempt(label, fn, *a):
        print(f"[{label}]", flush=True)
        try:
            return fn(*a)
        except ImportError as e:
            if args.require_all:
                raise
            print(f"  skipped: {e}", flush=True)
            return None

    res = None
    if "torch" in fams or "onnx" in fams:
        res = attempt("torch", torch_fixtures, manifest)
    if "onnx" in fams and res is not None:
        attempt("onnx", onnx_fixtures, manifest, *res)
    if "keras" in fams:
        attempt("keras", keras_fixtures, manifest)
    if "flax" in fams:
        attempt("flax", flax_fixtures, manifest)
    if "files" in fams:
        attempt("files", file_fixtures, manifest)
    OUT.mkdir(parents=True, exist_ok=True)
    mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print("versions:", json.dumps(manifest, sort_keys=True))


if __name__ == "__main__":
    main()
