"""Shared test configuration: backend parametrisation and engine settings.

Tests that take a ``backend_name`` argument run once per backend installed here. Every built-in
backend is expected to be installed for the test run (README's install step installs them all);
``tests/test_backends_installed.py`` fails when one is missing, so a missing engine is never a silent skip.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

from nnspec.backends import available_backends

BACKENDS = available_backends()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend_name`` over every available backend."""
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", BACKENDS)
