"""The invalid-spec corpus: every file in tests/specs_invalid/ has its exact diagnostics in a golden file.

Each ``NAME.yaml`` sits beside ``NAME.expected``, which lists the diagnostics as ``line:col:
error[CODE]: message`` (``-`` where a diagnostic has no position) with their hint lines. To rewrite the
golden files after a deliberate change, run with ``NNSPEC_REGEN_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nnspec.compiler.frontend import diagnose
from nnspec.errors import Diagnostic

CORPUS = Path(__file__).parent / "specs_invalid"
SPECS = sorted(CORPUS.glob("*.yaml"))


def render(diagnostics: list[Diagnostic]) -> str:
    """The golden-file text of a list of diagnostics (positions without the file name)."""
    lines = []
    for d in diagnostics:
        where = f"{d.line}:{d.column}" if d.line is not None else "-"
        lines.append(f"{where}: {d.severity}[{d.code}]: {d.message}")
        if d.hint:
            lines.append(f"  hint: {d.hint}")
    # Messages may name files by absolute path; the corpus folder is written as <corpus> so that the
    # golden files hold wherever the checkout is.
    return ("\n".join(lines) + "\n").replace(str(CORPUS.resolve()), "<corpus>").replace(str(CORPUS), "<corpus>")


def test_corpus_is_large_enough() -> None:
    assert len(SPECS) >= 40


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_diagnostics_match_golden(spec: Path) -> None:
    graph, diagnostics = diagnose(spec)
    assert graph is None, f"{spec.name} should be invalid"
    assert diagnostics, f"{spec.name} gave no diagnostics"
    assert all(d.file == str(spec) for d in diagnostics)
    assert diagnostics == sorted(diagnostics, key=Diagnostic.sort_key)
    golden = spec.with_suffix(".expected")
    text = render(diagnostics)
    if os.environ.get("NNSPEC_REGEN_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"missing golden file {golden.name}"
    assert text == golden.read_text()


def test_every_golden_has_a_spec() -> None:
    for golden in CORPUS.glob("*.expected"):
        assert golden.with_suffix(".yaml").exists(), golden.name


def test_codes_cover_every_group() -> None:
    codes = {
        line.split("[", 1)[1][:5]
        for g in CORPUS.glob("*.expected")
        for line in g.read_text().splitlines()
        if "error[" in line or "warning[" in line
    }
    assert {c[:3] for c in codes} >= {"E01", "E02", "E03", "E04", "E05", "E06", "E07", "W07"}


def test_graph_codes_are_all_in_the_corpus() -> None:
    text = "".join(g.read_text() for g in CORPUS.glob("*.expected"))
    for code in ("E0305", "E0701", "E0702", "E0703", "E0704", "E0705"):
        assert f"error[{code}]" in text, code
    assert "warning[W0701]" in text


def test_warnings_do_not_hide_errors_and_sort_with_them() -> None:
    graph, diagnostics = diagnose(CORPUS / "graph_unused_layer_and_error.yaml")
    assert graph is None
    assert [(d.severity, d.code) for d in diagnostics] == [("warning", "W0701"), ("error", "E0207")]
