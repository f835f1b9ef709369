"""Property-based fuzzing of the front end: whatever the spec text, bytes or ``--set`` values, the front end
returns diagnostics (``diagnose``) or raises ``SpecError`` (``nnspec.load``), and never another exception.

10,000 generated cases in all, deterministic (``derandomize``), no example database: structured specs (valid
skeletons mutated with real keys, layer types and hostile numbers and strings, ``extends`` towards a cycle,
a long chain, a FIFO, a directory, a device), raw edits of real specs, invalid bytes spliced into spec
files, ``--set`` strings (arbitrary bytes decoded as a shell would hand them over) and Python override
values. The seeded generators live in ``benchmarks/fuzz_frontend.py`` (which also runs 10^5 cases outside
CI); hypothesis draws their seeds, 5 cases per example, since its own cost per example (about 1 ms, more
for nested strategies) would otherwise exceed the 60 s budget. The last three tests draw with hypothesis's
own strategies (so a failure shrinks): 1300 * 5 + 400 * 5 + 500 + 300 + 700 = 10,000 cases.
"""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.fuzz_frontend import (
    BASE,
    HUGE,
    NUMBERS,
    ODD,
    SPEC_TEXTS,
    WORDS,
    Case,
    generate_case,
    generate_override_case,
    prepare_workdir,
    run_case,
)  # noqa: E402


def fuzz_settings(examples: int) -> settings:
    """Deterministic, no deadline, no example database."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A folder with the hostile bases ``extends`` may name (cycle, chain, FIFO, directory, bad UTF-8)."""
    folder = prepare_workdir(str(tmp_path_factory.mktemp("fuzz")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield folder


#: Cases checked per hypothesis example of the seeded generators (amortises hypothesis's per-example cost).
BATCH = 5


@fuzz_settings(1300)
@given(seed=st.integers(min_value=0, max_value=2**64 - 1))
def test_generated_specs_give_only_diagnostics(workdir: str, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(BATCH):
        run_case(generate_case(rng), workdir)


@fuzz_settings(400)
@given(seed=st.integers(min_value=0, max_value=2**64 - 1))
def test_generated_overrides_give_only_diagnostics(workdir: str, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(BATCH):
        run_case(generate_override_case(rng), workdir)


#: ``--set`` paths: real ones, and malformed ones.
PATHS = st.sampled_from(
    [
        "train.epochs",
        "train.batch_size",
        "train.optimizer",
        "train.optimizer.adam.learning_rate",
        "train.schedule",
        "train.checkpoint.every",
        "train.early_stopping.patience",
        "input.shape",
        "input.shape.0",
        "input.dtype",
        "layers",
        "layers.1.dense.units",
        "layers[1].dense.units",
        "layers.1",
        "layers.9",
        "layers.1.dense",
        "data.path",
        "data.dataset",
        "nnspec",
        "name",
        "output",
        "extends",
        "",
        " ",
        "..",
        "a..b",
        "[0]",
        "layers[",
        "layers." + HUGE,
        ".".join(["a"] * 40),
        "layers.-1",
        "layers.²",
        "layers.٣",
        "train.epochs.x",
        "train[0]",
    ]
)
#: A value as a shell hands it over: any bytes, decoded as Python decodes ``argv``.
ARGV_TEXT = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))
SET_VALUES = st.one_of(
    st.sampled_from(NUMBERS + WORDS + ODD),
    ARGV_TEXT,
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from(
        ["[28, 28, 1]", "{adam: {learning_rate: 0.1}}", "[" * 40, "{" * 40 + "}" * 40, "- a\n- b", "a: &x [*x]"]
    ),
)
SET_ITEMS = st.one_of(
    st.tuples(PATHS, SET_VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    ARGV_TEXT,
    SET_VALUES,
)


@fuzz_settings(500)
@given(text=st.sampled_from([BASE, *SPEC_TEXTS[:2]]), overrides=st.lists(SET_ITEMS, min_size=1, max_size=4))
def test_set_values_give_only_diagnostics(workdir: str, text: str, overrides: list[str]) -> None:
    run_case(Case(text, overrides), workdir)


def _self_containing() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


PYTHON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([5000, -400, 63, 31, 0]).map(lambda e: 10**e if e > 100 else -(10**-e) if e < 0 else 2**e),
        st.floats(),
        ARGV_TEXT,
        st.sampled_from(["a\x00b", HUGE, b"bytes", (1, 2)]),
        st.builds(_self_containing),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["adam", "learning_rate", "units", 3, None]), inner, max_size=3)
    ),
    max_leaves=8,
)


@fuzz_settings(300)
@given(
    text=st.sampled_from([BASE, *SPEC_TEXTS[:2]]),
    overrides=st.dictionaries(PATHS, PYTHON_VALUES, min_size=1, max_size=3),
    via_load=st.booleans(),
)
def test_python_override_values_give_only_diagnostics(
    workdir: str, text: str, overrides: dict[str, Any], via_load: bool
) -> None:
    run_case(Case(text, overrides, via_load=via_load), workdir)


@fuzz_settings(700)
@given(
    text=st.sampled_from(SPEC_TEXTS),
    at=st.integers(min_value=0),
    junk=st.binary(min_size=1, max_size=6),
    cut=st.integers(0, 3),
)
def test_spliced_bytes_give_only_diagnostics(workdir: str, text: str, at: int, junk: bytes, cut: int) -> None:
    data = text.encode()
    where = at % (len(data) + 1)
    run_case(Case(data[:where] + junk + data[where + cut :]), workdir)
