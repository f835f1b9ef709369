"""Benchmarks: nnspec against hand-written code on the same engine and against Keras 3 ``fit``.

Run ``python -m benchmarks.run --help`` from the repository root; docs/benchmarks.md explains what is
measured and how.
"""
