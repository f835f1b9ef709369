"""The ``train`` section of an imported spec, from a ``.keras`` file's compile config: the loss, the optimiser
and its hyper-parameters, a learning-rate schedule and weight decay. What nnspec has no equivalent for is
left out with a note (the spec then uses nnspec's default); a malformed value is a
:class:`~nnspec.interop.errors.KerasImportError` naming its place in the config.
"""

from __future__ import annotations

from typing import Any

from .errors import KerasImportError, short
from .keras_mapping import clean_float

_OPTIMIZERS = {"adam": "adam", "sgd": "sgd", "rmsprop": "rmsprop"}
_OPTIMIZER_KEYS = {
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon"),
}
_IGNORED_OPTIMIZER_FLAGS = (
    "amsgrad",
    "centered",
    "use_ema",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "gradient_accumulation_steps",
    "loss_scale_factor",
)
_LOSSES = {
    "sparse_categorical_crossentropy": "cross_entropy",
    "sparsecategoricalcrossentropy": "cross_entropy",
    "mse": "mse",
    "mean_squared_error": "mse",
    "meansquarederror": "mse",
}


def train_section(compile_config: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """``train`` keys from a ``.keras`` file's compile config (optimiser, schedule, weight decay, loss)."""
    if not compile_config:
        return {}
    train: dict[str, Any] = {}
    loss = compile_config.get("loss")
    loss_name = loss.get("class_name") if isinstance(loss, dict) else loss
    if isinstance(loss_name, str) and loss_name.lower() in _LOSSES:
        train["loss"] = _LOSSES[loss_name.lower()]
        if isinstance(loss, dict) and (loss.get("config") or {}).get("from_logits"):
            notes.append(
                "the Keras loss takes logits; nnspec computes cross-entropy from the logits of a final softmax itself"
            )
    elif loss is not None:
        notes.append(f"Keras loss {short(loss_name)} has no nnspec equivalent; the spec uses nnspec's default loss")
    optimizer = compile_config.get("optimizer")
    if optimizer is not None:
        train.update(_optimizer(optimizer, notes))
    return train


def _optimizer(optimizer: Any, notes: list[str]) -> dict[str, Any]:
    cls = optimizer.get("class_name") if isinstance(optimizer, dict) else optimizer
    cfg = (optimizer.get("config") or {}) if isinstance(optimizer, dict) else {}
    if not isinstance(cfg, dict):
        raise KerasImportError(
            f"the optimizer's config is {short(cfg)}, not an object", where="compile_config.optimizer.config"
        )
    name = _OPTIMIZERS.get(cls.lower()) if isinstance(cls, str) else None
    if name is None:
        notes.append(f"Keras optimizer {short(cls)} has no nnspec equivalent; the spec uses nnspec's default optimizer")
        return {}
    out: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key in _OPTIMIZER_KEYS[name]:
        value = cfg.get(key)
        if key == "learning_rate" and isinstance(value, dict):
            value = _schedule(value, out, notes)
        if isinstance(value, bool):
            params[key] = value
        elif isinstance(value, (int, float)):
            params[key] = clean_float(value)
    for flag in _IGNORED_OPTIMIZER_FLAGS:
        if cfg.get(flag) not in (None, False, 0, 0.0):
            notes.append(f"Keras optimizer option {flag}={short(cfg[flag])} has no nnspec equivalent and is left out")
    if cfg.get("weight_decay"):
        out["weight_decay"] = clean_float(cfg["weight_decay"])
    out["optimizer"] = {name: params}
    return out


def _schedule(schedule: dict[str, Any], out: dict[str, Any], notes: list[str]) -> float | None:
    cls, cfg = schedule.get("class_name"), schedule.get("config") or {}
    if not isinstance(cfg, dict):
        raise KerasImportError(
            f"the learning-rate schedule's config is {short(cfg)}, not an object",
            where="compile_config.optimizer.config.learning_rate.config",
        )
    lr = cfg.get("initial_learning_rate")
    if cls == "ExponentialDecay":
        out["schedule"] = {
            "exponential": {
                "decay_steps": int(cfg["decay_steps"]),
                "decay_rate": clean_float(cfg["decay_rate"]),
                "staircase": bool(cfg.get("staircase", False)),
            }
        }
    elif cls == "CosineDecay" and not cfg.get("warmup_steps"):
        out["schedule"] = {
            "cosine": {"decay_steps": int(cfg["decay_steps"]), "alpha": clean_float(cfg.get("alpha", 0.0))}
        }
    else:
        notes.append(
            f"Keras learning-rate schedule {short(cls)} has no nnspec equivalent; the spec uses a constant rate"
        )
    return lr
