"""Every built-in backend must be installed and importable here: README's install step installs them all,
and the backend tests run once per installed backend, so a missing engine fails loudly instead of
silently shrinking the test matrix."""

from __future__ import annotations

import pytest

from nnspec.backends import BUILTIN, backend_class


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_backend_is_available(name: str) -> None:
    ok, why = backend_class(name).availability()
    assert ok, (
        f"backend '{name}' is not available here: {why}. Install every engine (see README: pip install -e "
        "'.[all,dev]')."
    )
