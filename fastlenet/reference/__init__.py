"""The float64 ground truths, deliberately plain and independent of the C code:

    network.py    the LeNet-5 forward pass (scipy.signal.correlate, NumPy pooling), the oracle
                  of every kernel and Net: fastlenet.reference.logits(weights, x) and friends
    prepare.py    the MNIST-style preprocessing, the specification of csrc/preprocess.c
"""
from fastlenet.reference.network import (ACTIVATIONS, Weights, conv5x5, features, images,
                                         logits, pool2x2, predict_proba)

__all__ = ["ACTIVATIONS", "Weights", "conv5x5", "features", "images", "logits", "pool2x2",
           "predict_proba"]
