"""Weights: files and mappings from any framework -> canonical LeNet-5 weights and metadata.

    checks.py       the byte budget, FormatError, the one metadata validator (check_meta)
    layout.py       the shape matcher: any framework's arrays -> the canonical layout
    npz.py onnx.py keras.py safetensors.py   one reader per file format
    loader.py       which reader a file needs; the conversion every Net is built through
"""
from fastlenet.weights.checks import (ACTIVATIONS, MAX_ARRAY_ELEMENTS, MAX_FILE_BYTES,
                                      MAX_MEMBERS, MAX_META_BYTES, MAX_WEIGHT_BYTES, META_KEY,
                                      POOLS, Budget, FormatError, WeightsError, check_declared_size,
                                      check_meta, override_meta, parse_meta)
from fastlenet.weights.layout import (CANONICAL_SHAPES, LAYOUTS, Conversion, canonical_shapes,
                                      geometry)
from fastlenet.weights.loader import Canonical, convert, inspect, load, read_weights
from fastlenet.weights.npz import read_npz, save

__all__ = ["Canonical", "ACTIVATIONS", "CANONICAL_SHAPES", "LAYOUTS", "META_KEY", "POOLS", "Budget",
           "Conversion", "FormatError", "WeightsError", "canonical_shapes", "check_declared_size",
           "check_meta", "convert", "geometry", "inspect", "load", "override_meta", "parse_meta",
           "read_npz", "read_weights", "save", "MAX_ARRAY_ELEMENTS", "MAX_FILE_BYTES",
           "MAX_MEMBERS", "MAX_META_BYTES", "MAX_WEIGHT_BYTES"]
