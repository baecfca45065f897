"""Benchmark suites and scripts (a package so that test modules may share basenames with tests/)."""
