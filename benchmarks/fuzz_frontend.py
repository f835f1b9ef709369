"""Fuzz the nnspec front end: generated specs and ``--set`` values give diagnostics, never a crash.

A case is a spec (structured: a valid skeleton mutated with real keys, layer types and hostile values;
or raw: YAML text or bytes with random edits, invalid UTF-8 included), optionally with overrides (``--set``
strings or a dict of Python values) and ``extends`` towards a prepared folder of hostile bases (a cycle,
a long chain, a FIFO, a directory, a device, invalid UTF-8). :func:`run_case` feeds it to the front end
and raises :class:`Crash` when anything but diagnostics comes out: an exception other than
:class:`~nnspec.SpecError`, or diagnostics that contradict the result.

``tests/test_fuzz_frontend.py`` drives :func:`generate_case` from hypothesis in CI; outside CI::

    python -m benchmarks.fuzz_frontend -n 100000        # prints the count tried and the count of crashes
    python -m benchmarks.fuzz_frontend --seconds 600    # as many as fit in ten minutes
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import nnspec  # noqa: E402
from nnspec.compiler.frontend import analyse_text, diagnose  # noqa: E402
from nnspec.compiler.ir import (  # noqa: E402
    ACTIVATIONS,
    DATASETS,
    INITIALIZERS,
    LOSSES,
    MONITORS,
    OPTIMIZERS,
    SCHEDULES,
)
from nnspec.compiler.memory import estimate, memory_diagnostic  # noqa: E402
from nnspec.compiler.opset import OPS  # noqa: E402
from nnspec.compiler.summary import format_summary  # noqa: E402
from nnspec.errors import Diagnostic, SpecError  # noqa: E402

HUGE = "9" * 5000
NUMBERS: tuple[str, ...] = (
    "0",
    "1",
    "2",
    "3",
    "8",
    "10",
    "32",
    "-1",
    "-3",
    "2147483647",
    "2147483648",
    "4294967296",
    "99999999999999999999",
    HUGE,
    "-" + HUGE,
    "1" + "0" * 4400,
    "1e400",
    "-1e400",
    "1e-400",
    "1e308",
    "1e99999999999",
    "0.5",
    "0.0",
    "1.5",
    "-0.5",
    "1e-3",
    "1e3",
    "3.",
    ".5",
    "+5",
    ".inf",
    "-.inf",
    ".nan",
    "0777",
    "0x1f",
    "0b101",
    "1_000",
    "1:30",
    "007",
    "1.0e+3",
    "9" * 4301 + ".5",
    "0." + "0" * 5000 + "1",
    "1e" + HUGE,
    "281474976710657",
    "65536",
)
WORDS: tuple[str, ...] = (
    *ACTIVATIONS,
    *OPTIMIZERS,
    *DATASETS,
    *LOSSES,
    *SCHEDULES,
    *MONITORS,
    *INITIALIZERS[:3],
    *OPS,
    "same",
    "valid",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "null",
    "~",
    "true",
    "false",
    "True",
    "input",
    "stop",
    "continue",
    "scale",
    "none",
    "standardize",
    "float32",
    "float64",
    "float16",
    "x",
    "y",
    "label",
    "a",
    "b",
    "_",
    "accuracy",
    "auto",
)
ODD: tuple[str, ...] = (
    '"a\\0b"',
    '"\\0"',
    '"\\x00"',
    '"\\udcff"',
    '"\\ud800"',
    "'tab\there'",
    '"\\u2028"',
    '"\\ufeff"',
    "é",
    "名前",
    "🙂",
    "'" + "x" * 70000 + "'",
    '"../../etc/passwd"',
    '"/dev/zero"',
    '"."',
    '""',
    "' '",
    '"a\\nb"',
    '"\\x7f"',
    "'\u202e\u202e'",
    "!!python/object/apply:os.system ['true']",
    "&a x",
    "*a",
    "*nope",
    "!!str x",
    "|\n  block",
    "? k",
    "[",
    "{",
    "]",
    "}",
    ":",
    "- -",
    "@",
    "`",
    "%YAML 1.1",
    '"' + "\\x41" * 300 + '"',
    "a b",
    "a: b",
    "'",
    '"',
    "#",
    "<<: *a",
)
#: Keys that exist somewhere in a spec, and some that do not.
KEYS: tuple[str, ...] = (
    "nnspec",
    "name",
    "description",
    "extends",
    "input",
    "layers",
    "output",
    "train",
    "data",
    "shape",
    "dtype",
    "loss",
    "optimizer",
    "schedule",
    "weight_decay",
    "batch_size",
    "epochs",
    "seed",
    "metrics",
    "on_divergence",
    "checkpoint",
    "early_stopping",
    "every",
    "keep",
    "monitor",
    "mode",
    "patience",
    "min_delta",
    "restore_best",
    "dataset",
    "path",
    "validation_split",
    "test_split",
    "normalize",
    "learning_rate",
    "momentum",
    "nesterov",
    "beta_1",
    "beta_2",
    "epsilon",
    "rho",
    "decay_steps",
    "decay_rate",
    "staircase",
    "alpha",
    "factor",
    "inputs",
    "units",
    "filters",
    "kernel",
    "strides",
    "padding",
    "activation",
    "use_bias",
    "kernel_init",
    "bias_init",
    "size",
    "rate",
    "axis",
    "center",
    "scale",
    "stddev",
    "mean",
    "minval",
    "maxval",
    "epoch",
    "lr",
    "<<",
    "",
    "a b",
    "0",
    "-1",
    "x" * 200,
    "layers[0]",
    "train.epochs",
)
#: Names used in ``extends``; :func:`prepare_workdir` creates the files.
EXTENDS: tuple[str, ...] = (
    "base.yaml",
    "cycle_a.yaml",
    "chain_0.yaml",
    "self.yaml",
    "fifo.yaml",
    "subdir",
    "/dev/null",
    "/dev/zero",
    "nope.yaml",
    '"a\\0b"',
    '""',
    "x" * 5000,
    "bad_utf8.yaml",
    "huge.yaml",
    "list.yaml",
    "spec.yaml",
    "null",
    "[base.yaml]",
    "3",
    "../" * 40 + "etc/passwd",
    "'" + "a/" * 3000 + "b'",
)

BASE = (
    "nnspec: 1\ninput: {shape: [8, 8, 1]}\nlayers: [flatten, {dense: {units: 10}}, softmax]\n"
    "train: {epochs: 1}\ndata: {dataset: digits}\n"
)


def prepare_workdir(folder: str) -> str:
    """Create the hostile bases that ``extends`` may name in ``folder``; returns ``folder``."""

    def write(name: str, data: str | bytes) -> None:
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)

    write("base.yaml", BASE)
    write("cycle_a.yaml", "extends: cycle_b.yaml\n" + BASE)
    write("cycle_b.yaml", "extends: cycle_a.yaml\n" + BASE)
    write("self.yaml", "extends: self.yaml\n" + BASE)
    for i in range(12):
        write(f"chain_{i}.yaml", f"extends: chain_{i + 1}.yaml\n" if i < 11 else BASE)
    write("bad_utf8.yaml", b"nnspec: 1\nname: \xff\xfe\n")
    write("list.yaml", "- 1\n- 2\n")
    with open(os.path.join(folder, "huge.yaml"), "wb") as handle:
        handle.write(b"nnspec: 1\n")
        handle.truncate(2 << 20)
    os.makedirs(os.path.join(folder, "subdir"), exist_ok=True)
    fifo = os.path.join(folder, "fifo.yaml")
    if hasattr(os, "mkfifo") and not os.path.exists(fifo):
        os.mkfifo(fifo)
    return folder


@dataclass
class Case:
    """One input to the front end: ``text`` (str, checked as text; bytes, written to a file) and overrides."""

    text: str | bytes
    overrides: Any = None
    via_load: bool = False

    def __repr__(self) -> str:
        text = (
            self.text if len(self.text) < 600 else self.text[:600] + (b"..." if isinstance(self.text, bytes) else "...")
        )
        overrides = repr(self.overrides)
        return f"Case(text={text!r}, overrides={overrides[:600]}, via_load={self.via_load})"


class Crash(Exception):
    """The front end did something but give diagnostics: raised by :func:`run_case` with the case and the cause."""


# --- structured specs ------------------------------------------------------------------------------------

Tree = Any  # dict[str, Tree] | list[Tree] | str (a scalar written as is)


def _skeletons() -> list[Tree]:
    mlp = {
        "nnspec": "1",
        "name": "fz",
        "input": {"shape": ["8", "8", "1"]},
        "layers": ["flatten", {"dense": {"units": "16", "activation": "relu"}}, {"dense": {"units": "10"}}, "softmax"],
        "train": {"epochs": "2", "batch_size": "32", "optimizer": {"adam": {"learning_rate": "0.001"}}},
        "data": {"dataset": "digits"},
    }
    cnn = {
        "nnspec": "1",
        "input": {"shape": ["28", "28", "1"], "dtype": "float64"},
        "layers": [
            {
                "conv2d": {
                    "filters": "8",
                    "kernel": "3",
                    "padding": "same",
                    "kernel_init": {"normal": {"stddev": "0.05"}},
                }
            },
            {"max_pool2d": {"size": "2", "strides": ["2", "2"]}},
            {"batch_norm": {"momentum": "0.9"}},
            "flatten",
            {"dropout": "0.5"},
            {"dense": {"units": "10", "use_bias": "false"}},
            "softmax",
        ],
        "train": {
            "loss": "cross_entropy",
            "optimizer": {"sgd": {"momentum": "0.9", "nesterov": "true"}},
            "schedule": {"cosine": {"decay_steps": "100"}},
            "checkpoint": {"every": "1", "keep": "2"},
            "early_stopping": {"monitor": "val_loss", "patience": "3"},
        },
        "data": {"dataset": "mnist", "validation_split": "0.1"},
    }
    graph = {
        "nnspec": "1.1",
        "name": "res",
        "description": "'residual'",
        "input": {"shape": ["8", "8", "2"]},
        "layers": [
            {"conv2d": {"filters": "4", "kernel": "3", "padding": "same", "name": "stem"}},
            {"conv2d": {"filters": "4", "kernel": ["3", "3"], "padding": "same", "name": "c1"}},
            {"add": {"inputs": ["c1", "stem"], "name": "sum"}},
            {"layer_norm": {"epsilon": "1e-3"}},
            {"concat": {"inputs": ["sum", "stem"], "axis": "-1"}},
            {"global_avg_pool2d": None},
            {"reshape": ["-1", "4"]},
            "flatten",
            {"activation": "tanh"},
            {"dense": {"units": "3", "name": "head"}},
        ],
        "output": "head",
        "train": {"optimizer": "rmsprop", "loss": "mse", "metrics": ["accuracy"], "on_divergence": "continue"},
        "data": {"dataset": "npz", "path": "data.npz", "x": "features", "y": "labels"},
    }
    child = {"extends": "base.yaml", "name": "child", "train": {"epochs": "3"}}
    return [mlp, cnn, graph, child]


SKELETONS = _skeletons()


#: Values that often keep a spec valid, so that shapes and wiring get exercised too.
MILD: tuple[str, ...] = (
    "1",
    "2",
    "3",
    "4",
    "7",
    "16",
    "64",
    "128",
    "0.1",
    "0.5",
    "relu",
    "same",
    "valid",
    "true",
    "false",
    "[2, 2]",
    "[4, -1]",
    "[8, 8, 1]",
    "[28, 28, 1]",
    "[16]",
)


def _scalar(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(MILD)
    if pick < 0.45:
        return rng.choice(NUMBERS)
    if pick < 0.8:
        return rng.choice(WORDS)
    return rng.choice(ODD)


def _value(rng: random.Random, depth: int = 0) -> Tree:
    pick = rng.random()
    if depth > 2 or pick < 0.6:
        return _scalar(rng)
    if pick < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _layer(rng: random.Random) -> Tree:
    op = rng.choice([*OPS, *OPS, "dense2", "Dense", "os.system", ""])
    fields = list(OPS[op].fields) if op in OPS else list(KEYS[:10])
    pick = rng.random()
    if pick < 0.2:
        return op
    if pick < 0.3:
        return {op: _scalar(rng)}
    params = {}
    for _ in range(rng.randrange(5)):
        key = rng.choice([*fields, "name", "inputs", rng.choice(KEYS)])
        params[key] = rng.choice(NUMBERS[:12]) if rng.random() < 0.5 else _value(rng, 1)
    return {op: params}


def _containers(tree: Tree, found: list[Tree]) -> None:
    if isinstance(tree, dict):
        found.append(tree)
        for value in tree.values():
            _containers(value, found)
    elif isinstance(tree, list):
        found.append(tree)
        for value in tree:
            _containers(value, found)


def _mutate(tree: Tree, rng: random.Random) -> None:
    found: list[Tree] = []
    _containers(tree, found)
    target = rng.choice(found)
    action = rng.randrange(7)
    if isinstance(target, dict):
        keys = list(target)
        if action == 0 and keys:
            del target[rng.choice(keys)]
        elif action in (1, 2) or not keys:
            target[rng.choice(KEYS)] = _value(rng)
        elif action == 3:
            key = rng.choice(keys)
            for _ in range(rng.choice((1, 2, 5, 40))):
                target[key] = [target[key]] if rng.random() < 0.5 else {rng.choice(KEYS): target[key]}
        elif action == 4 and "layers" in target and isinstance(target["layers"], list):
            target["layers"].insert(rng.randrange(len(target["layers"]) + 1), _layer(rng))
        elif action == 5 and "extends" not in target:
            target["extends"] = rng.choice(EXTENDS)
        else:
            target[rng.choice(keys)] = _scalar(rng)
    else:
        if action == 0 and target:
            del target[rng.randrange(len(target))]
        elif action in (1, 4):
            target.insert(rng.randrange(len(target) + 1), _layer(rng))
        elif target:
            target[rng.randrange(len(target))] = _value(rng)
        else:
            target.append(_value(rng))


def _flow(tree: Tree) -> str:
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" if v is not None else str(k) for k, v in tree.items()) + "}"
    if isinstance(tree, list):
        return "[" + ", ".join(_flow(v) for v in tree) + "]"
    return str(tree)


def _block(tree: dict, rng: random.Random) -> str:
    lines = []
    for key, value in tree.items():
        if isinstance(value, list) and value and rng.random() < 0.5:
            lines.append(f"{key}:")
            lines.extend(f"  - {_flow(item)}" for item in value)
        elif isinstance(value, dict) and value and rng.random() < 0.5:
            lines.append(f"{key}:")
            lines.extend(f"  {k}: {_flow(v) if v is not None else ''}" for k, v in value.items())
        else:
            lines.append(f"{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def structured_text(rng: random.Random) -> tuple[str, Tree]:
    """A skeleton spec with a few random mutations, written as YAML (block or flow); returns (text, tree)."""
    tree = copy.deepcopy(rng.choice(SKELETONS))
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 5))):
        _mutate(tree, rng)
    return (_block(tree, rng) if rng.random() < 0.8 else _flow(tree) + "\n"), tree


# --- raw text mutations ------------------------------------------------------------------------------

TOKENS: tuple[str, ...] = (
    ":",
    " ",
    "\n",
    "\t",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!",
    "#",
    "'",
    '"',
    "---\n",
    "...\n",
    HUGE,
    "\x00",
    "\x85",
    "\u2028",
    "\ufeff",
    "\udcff",
    "\ud800",
    "<<: *a",
    "? ",
    "\r",
    "\\",
    "%",
    "|",
    ">",
    "1e999",
    "-1",
    "@",
)
BAD_BYTES: tuple[bytes, ...] = (
    b"\xff",
    b"\xfe",
    b"\xc3",
    b"\x80",
    b"\xef\xbb\xbf",
    b"\xe2\x82",
    b"\x00",
    b"\r",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
)


def _edit(text: str, rng: random.Random) -> str:
    action = rng.randrange(5)
    at = rng.randrange(len(text) + 1)
    if action == 0:
        return text[:at] + rng.choice(TOKENS) + text[at:]
    if action == 1:
        return text[:at] + text[at + rng.randrange(1, 12) :]
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if action == 2:
        lines.insert(i, lines[j])
    elif action == 3:
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = " " * rng.choice((1, 2, 3, 8)) + lines[i]
    return "\n".join(lines)


def raw_text(rng: random.Random, seed_text: str) -> str | bytes:
    """``seed_text`` with 1 to 6 random edits; as bytes (with invalid UTF-8 inserted) a third of the time."""
    text = seed_text
    for _ in range(rng.randrange(1, 7)):
        text = _edit(text, rng)
    if rng.random() < 0.66:
        return text
    data = text.encode("utf-8", "surrogatepass")
    for _ in range(rng.randrange(3)):
        at = rng.randrange(len(data) + 1)
        data = data[:at] + rng.choice(BAD_BYTES) + data[at:]
    return data


# --- overrides -----------------------------------------------------------------------------------------


def _paths(tree: Tree, prefix: str, found: list[str]) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            found.append(path)
            _paths(value, path, found)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            path = f"{prefix}.{i}" if i % 2 else f"{prefix}[{i}]"
            found.append(path)
            _paths(value, path, found)


JUNK_PATHS: tuple[str, ...] = (
    "",
    ".",
    "..",
    "a..b",
    "[0]",
    "layers[",
    "layers." + HUGE,
    "layers[" + HUGE + "]",
    ".".join(["a"] * 50),
    " train.epochs ",
    "tr\udcffain.epochs",
    "train.epochs\x00",
    "layers.-1.dense.units",
    "layers.99.x",
    "train.epochs.x",
    "input.shape.0",
    "layers.٣.dense",
    "layers.²",
    "=",
    "train[0]",
)

PYTHON_VALUES: tuple[Any, ...] = (
    3,
    0,
    -1,
    10**5000,
    -(10**400),
    2**63,
    2**31,
    1.5,
    float("inf"),
    float("-inf"),
    float("nan"),
    -0.0,
    1e308,
    True,
    False,
    None,
    "3",
    "\udcff",
    "a\x00b",
    HUGE,
    [1, 2],
    [[[[1]]]],
    {"adam": {"learning_rate": 0.1}},
    {3: 4},
    (1, 2),
    b"bytes",
    object(),
)


def _selfish() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def overrides_for(tree: Tree, rng: random.Random, always: bool = False) -> Any:
    """None (unless ``always``), ``key=value`` strings, or a dict of Python values, addressing paths of ``tree``
    and junk ones."""
    pick = rng.uniform(0.45, 1.0) if always else rng.random()
    if pick < 0.45:
        return None
    found: list[str] = []
    _paths(tree, "", found)
    candidates = found or ["train.epochs"]

    def path() -> str:
        return rng.choice(JUNK_PATHS) if rng.random() < 0.2 else rng.choice(candidates)

    if pick < 0.85:
        items = []
        for _ in range(rng.randrange(1, 4)):
            value = _scalar(rng) if rng.random() < 0.8 else _flow(_value(rng, 1))
            if rng.random() < 0.1:
                value += rng.choice(("\udcff", "\x00", "\ud800"))
            form = rng.random()
            items.append(
                f"{path()}{value}" if form < 0.05 else f"{path()}=={value}" if form < 0.1 else f"{path()}={value}"
            )
        return items
    chosen = {}
    for _ in range(rng.randrange(1, 4)):
        value = _selfish() if rng.random() < 0.05 else rng.choice(PYTHON_VALUES)
        chosen[path() if rng.random() < 0.9 else rng.choice((3, None, 10**5000))] = value
    return chosen


# --- cases ----------------------------------------------------------------------------------------------


def _spec_texts() -> list[str]:
    folder = os.path.join(REPO_ROOT, "specs")
    texts = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".yaml"):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                texts.append(handle.read())
    return texts or [BASE]


SPEC_TEXTS = _spec_texts()


def generate_case(rng: random.Random) -> Case:
    """One fuzz case from ``rng`` (a ``random.Random``, or hypothesis's)."""
    text, tree = structured_text(rng)
    if rng.random() < 0.35:
        return Case(
            raw_text(rng, rng.choice((text, rng.choice(SPEC_TEXTS)))),
            overrides_for(tree, rng) if rng.random() < 0.3 else None,
        )
    return Case(text, overrides_for(tree, rng), via_load=rng.random() < 0.1)


def generate_override_case(rng: random.Random) -> Case:
    """A spec (a skeleton, mutated at most once) with ``--set`` strings or Python override values."""
    tree = copy.deepcopy(rng.choice(SKELETONS))
    if rng.random() < 0.3:
        _mutate(tree, rng)
    return Case(_block(tree, rng), overrides_for(tree, rng, always=True), via_load=rng.random() < 0.1)


def _check_diagnostics(graph: Any, diagnostics: list[Diagnostic]) -> None:
    errors = [d for d in diagnostics if d.severity == "error"]
    if graph is None and not errors:
        raise AssertionError("no graph, yet no error diagnostic")
    if graph is not None and errors:
        raise AssertionError(f"a graph, yet {len(errors)} errors")
    for d in diagnostics:
        if not isinstance(d, Diagnostic) or not isinstance(d.format(), str) or d.severity not in ("error", "warning"):
            raise AssertionError(f"malformed diagnostic {d!r}")
    if graph is not None:
        estimate(graph).describe()
        memory_diagnostic(graph, limit=1 << 30, source="fuzz")
        format_summary(graph)


def run_case(case: Case, workdir: str) -> None:
    """Feed ``case`` to the front end (spec file in ``workdir``); raises :class:`Crash` on anything but diagnostics."""
    try:
        if isinstance(case.text, bytes) or case.via_load:
            path = os.path.join(workdir, "spec.yaml")
            with open(path, "wb") as handle:
                handle.write(case.text if isinstance(case.text, bytes) else case.text.encode("utf-8", "surrogatepass"))
            if case.via_load:
                try:
                    graph, diagnostics = nnspec.load(path, overrides=case.overrides), []
                except SpecError as exc:
                    graph, diagnostics = None, exc.diagnostics
            else:
                graph, diagnostics = diagnose(path, case.overrides)
        else:
            graph, diagnostics = analyse_text(
                case.text, os.path.join(workdir, "spec.yaml"), case.overrides, base_dir=workdir
            )
        _check_diagnostics(graph, diagnostics)
    except Exception as exc:
        raise Crash(f"{type(exc).__name__}: {str(exc)[:300]}") from exc


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = frames[-1] if frames else None
    return (
        f"{type(exc).__name__} at {os.path.relpath(inner.filename, REPO_ROOT)}:{inner.lineno}"
        if inner
        else type(exc).__name__
    )


def fuzz(
    count: int,
    seed: int = 0,
    seconds: float | None = None,
    on_crash: Callable[[Case, BaseException], None] | None = None,
) -> tuple[int, Counter[str]]:
    """Run up to ``count`` cases (or until ``seconds`` have passed); returns (cases tried, crashes by kind and
    place)."""
    import warnings

    crashes: Counter[str] = Counter()
    start = time.perf_counter()
    tried = 0
    with tempfile.TemporaryDirectory(prefix="nnspec-fuzz-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_workdir(folder)
        rng = random.Random(seed)
        for tried in range(1, count + 1):
            case = generate_case(rng) if rng.random() < 0.8 else generate_override_case(rng)
            try:
                run_case(case, folder)
            except Crash as crash:
                cause = crash.__cause__ or crash
                crashes[_where(cause)] += 1
                if on_crash:
                    on_crash(case, cause)
            if seconds is not None and time.perf_counter() - start > seconds:
                break
    return tried, crashes


def main(argv: list[str] | None = None) -> int:
    """Command line: ``-n N`` cases (default 100000), ``--seed``, ``--seconds``; exit 1 when anything crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="number of cases (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--show", type=int, default=3, help="print this many crashing cases in full")
    args = parser.parse_args(argv)
    shown = [0]

    def show(case: Case, exc: BaseException) -> None:
        if shown[0] < args.show:
            shown[0] += 1
            print(f"crash: {case!r}", file=sys.stderr)
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)

    start = time.perf_counter()
    tried, crashes = fuzz(args.n, args.seed, args.seconds, show)
    elapsed = time.perf_counter() - start
    print(f"cases tried: {tried}")
    print(f"crashes: {sum(crashes.values())}")
    for where, n in crashes.most_common():
        print(f"  {n:6d}  {where}")
    print(f"seconds: {elapsed:.1f} ({tried / elapsed:.0f} cases/s)")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
