"""Registers the shared fixtures and the report header; they live in _helpers.py so that test
modules can import its helpers by a name no other conftest.py shadows (benchmarks/ has one)."""
from _helpers import (  # noqa: F401
    isa, net, pytest_report_header, rand_weights, rng, rng_seed, sample)
