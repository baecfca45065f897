# cython: language_level=3
"""The Net type: owns the packed weights and calls the C engine with the GIL released.

Everything per call happens here in C-level Cython (shape/dtype checks on the array struct, one
output allocation) so that batch 1 costs a few microseconds above the kernels. The input is never
copied: the engine reads each image in place, whatever its dtype and strides.
"""
import json
import os
import warnings
from time import perf_counter
from collections.abc import Mapping

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from libc.string cimport memcpy
from libc.stdint cimport int8_t, int32_t, uint8_t, uintptr_t

from fastlenet import weights as _weights
from fastlenet.weights import int8 as _int8
from fastlenet.weights.checks import FormatError

cnp.import_array()

# One concern per include, in dependency order.
include "_engine_capi.pxi"
include "_engine_config.pxi"
include "_engine_net.pxi"
include "_engine_testing.pxi"
include "_engine_preprocess.pxi"
include "_engine_fields.pxi"
