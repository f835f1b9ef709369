"""Turn measurements into the results table, the ratio table, the target checks, machine info and markdown."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from typing import Any, Iterable

import pandas as pd

#: Distributions whose versions the report lists.
PACKAGES: tuple[str, ...] = (
    "nnspec",
    "numpy",
    "jax",
    "jaxlib",
    "tensorflow-cpu",
    "tensorflow",
    "pytensor",
    "numba",
    "keras",
    "pandas",
)

#: The figures the issues ask for, at float32: (label, model, engine, numerator, denominator, limit, device).
#: ``numerator``/``denominator`` name an implementation: ``nnspec``, ``best hand``, ``keras fit``,
#: ``fastest nnspec`` (nnspec's fastest engine for that model), ``nnspec on ENGINE`` (nnspec on another
#: engine), or an exact implementation name.
TARGETS: tuple[tuple[str, str, str, str, str, float, str], ...] = (
    ("nnspec JAX vs hand-written JAX (MLP)", "mlp", "jax", "nnspec", "best hand", 1.1, "cpu"),
    ("nnspec JAX vs hand-written JAX (convnet)", "cnn", "jax", "nnspec", "best hand", 1.1, "cpu"),
    ("nnspec TF vs hand-written TF (MLP)", "mlp", "tensorflow", "nnspec", "best hand", 1.1, "cpu"),
    ("nnspec TF vs hand-written TF (convnet)", "cnn", "tensorflow", "nnspec", "best hand", 1.1, "cpu"),
    ("nnspec TF vs Keras 3 fit on TF (MLP)", "mlp", "tensorflow", "nnspec", "keras fit", 1.0, "cpu"),
    ("nnspec TF vs Keras 3 fit on TF (convnet)", "cnn", "tensorflow", "nnspec", "keras fit", 1.0, "cpu"),
    ("nnspec theano vs nnspec's fastest backend (MLP)", "mlp", "theano", "nnspec", "fastest nnspec", 1.5, "cpu"),
    ("nnspec theano vs nnspec's fastest backend (convnet)", "cnn", "theano", "nnspec", "fastest nnspec", 2.0, "cpu"),
    ("nnspec JAX vs nnspec TF (convnet)", "cnn", "jax", "nnspec", "nnspec on tensorflow", 1.5, "cpu"),
    ("nnspec theano vs hand-written PyTensor (MLP)", "mlp", "theano", "nnspec", "best hand", 1.1, "cpu"),
    ("nnspec theano vs hand-written PyTensor (convnet)", "cnn", "theano", "nnspec", "best hand", 1.1, "cpu"),
    ("nnspec JAX vs hand-written scan-fused JAX (MLP)", "mlp", "jax", "nnspec", "hand: scan epoch", 1.1, "gpu"),
    ("nnspec JAX vs Keras 3 fit on JAX (MLP): >= 40x faster", "mlp", "jax", "nnspec", "keras fit", 1 / 40, "gpu"),
    ("nnspec JAX vs Keras 3 fit on JAX (convnet): >= 10x faster", "cnn", "jax", "nnspec", "keras fit", 0.1, "gpu"),
)


#: ``best_hand`` of a model that has no hand-written baselines.
NO_HAND = "(none for this model)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """CPU model, core count, load, OS, Python and package versions, and the date."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    for name in PACKAGES:
        version = _version(name)
        if version:
            info[name] = version
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS", "PYTENSOR_FLAGS", "KERAS_BACKEND"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    info.update(extra or {})
    return info


def results_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The results table, one row per (model, engine, implementation)."""
    return pd.DataFrame(list(rows))


def _median(
    frame: pd.DataFrame, model: str, engine: str | None, implementation: str, precision: str = "float32"
) -> tuple[str, float] | None:
    """(implementation, median epoch) for a name of :data:`TARGETS` at ``precision``, or None when it was not
    measured."""
    ok = frame[(frame["model"] == model) & frame["median_epoch_s"].notna()]
    if "precision" in ok.columns:
        ok = ok[ok["precision"] == precision]
    if implementation == "fastest nnspec":
        rows = ok[ok["implementation"] == "nnspec"]
    elif implementation.startswith("nnspec on "):
        rows = ok[(ok["implementation"] == "nnspec") & (ok["engine"] == implementation.removeprefix("nnspec on "))]
    else:
        rows = ok[ok["engine"] == engine]
        if implementation == "best hand":
            rows = rows[rows["implementation"].str.startswith("hand: ")]
        else:
            rows = rows[rows["implementation"] == implementation]
    if rows.empty:
        return None
    best = rows.loc[rows["median_epoch_s"].astype(float).idxmin()]
    label = (
        f"nnspec on {best['engine']}"
        if implementation == "fastest nnspec"
        else (implementation if implementation.startswith("nnspec on ") else best["implementation"])
    )
    return str(label), float(best["median_epoch_s"])


def _baseline(
    frame: pd.DataFrame, model: str, engine: str, implementation: str, precision: str
) -> tuple[str, float] | None:
    """A baseline at ``precision``, else at float32 (the baselines run fewer precisions than nnspec), its label
    then naming the precision it ran at."""
    found = _median(frame, model, engine, implementation, precision)
    if found is None and precision != "float32":
        fallback = _median(frame, model, engine, implementation, "float32")
        if fallback is not None:
            return f"{fallback[0]} (float32)", fallback[1]
    return found


def ratios_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, engine, precision): nnspec's median epoch against the best hand-written one, Keras ``fit``
    and nnspec's fastest engine on that model at that precision (named in ``fastest_nnspec``).

    Baselines are taken at the same precision where they ran at it, else at float32 (their name then says
    ``(float32)``). Models without hand-written baselines (the resnet) say so in ``best_hand`` and leave
    ``nnspec/hand`` empty.
    """
    from .settings import HAND_MODELS

    out = []
    if frame.empty:
        return pd.DataFrame(out)
    nnspec_rows = frame[frame["implementation"] == "nnspec"]
    if "precision" not in nnspec_rows.columns:
        nnspec_rows = nnspec_rows.assign(precision="float32")
    for (model, engine, precision), _ in nnspec_rows.groupby(["model", "engine", "precision"], sort=False):
        mine = _median(frame, model, engine, "nnspec", precision)
        hand = _baseline(frame, model, engine, "best hand", precision)
        fit = _baseline(frame, model, engine, "keras fit", precision)
        fastest = _median(frame, model, None, "fastest nnspec", precision)
        no_hand = NO_HAND if model not in HAND_MODELS else None
        out.append(
            {
                "model": model,
                "engine": engine,
                "precision": precision,
                "nnspec_s": mine[1] if mine else None,
                "best_hand": hand[0] if hand else no_hand,
                "best_hand_s": hand[1] if hand else None,
                "nnspec/hand": round(mine[1] / hand[1], 3) if mine and hand else None,
                "keras_fit_s": fit[1] if fit else None,
                "nnspec/keras_fit": round(mine[1] / fit[1], 3) if mine and fit else None,
                "fastest_nnspec": fastest[0].removeprefix("nnspec on ") if fastest else None,
                "nnspec/fastest_nnspec": round(mine[1] / fastest[1], 3) if mine and fastest else None,
            }
        )
    return pd.DataFrame(out)


def targets_frame(frame: pd.DataFrame, device: str) -> pd.DataFrame:
    """The issues' figures, all float32: measured ratio, the limit, and whether it holds (only for this run's
    device)."""
    out = []
    for label, model, engine, num, den, limit, target_device in TARGETS:
        a = _median(frame, model, engine, num) if not frame.empty else None
        b = _median(frame, model, engine, den) if not frame.empty else None
        if target_device != device:
            status, ratio = f"not measured ({target_device.upper()} target)", None
        elif a is None or b is None:
            status, ratio = "not measured", None
        else:
            ratio = round(a[1] / b[1], 3)
            status = "ok" if ratio <= limit else "MISSED"
        out.append(
            {"figure": label, "device": target_device, "ratio": ratio, "limit": f"<= {limit:.3g}", "status": status}
        )
    return pd.DataFrame(out)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (nnspec's one table renderer; empty cells for None and NaN)."""
    from nnspec.tables import from_frame, markdown

    return markdown(from_frame(frame, numbers_right=False), level=0)


def markdown_report(info: dict[str, Any], results: pd.DataFrame, ratios: pd.DataFrame, targets: pd.DataFrame) -> str:
    """The whole report as markdown, for docs/benchmarks.md."""
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    return (
        f"### Machine\n\n{machine}\n\n"
        f"### Results\n\n{markdown_table(results)}\n\n"
        f"### Ratios (median epoch)\n\n{markdown_table(ratios)}\n\n"
        f"### Targets\n\n{markdown_table(targets)}\n"
    )
