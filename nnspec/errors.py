"""Errors and diagnostics shared by every part of nnspec.

A :class:`Diagnostic` is one problem in a spec, with its source position; a :class:`SpecError`
carries all the diagnostics of one check. Other user-facing failures (a missing data file, a backend
that cannot run a layer) raise :class:`DataError` or :class:`BackendError`. The CLI prints any
:class:`NnspecError` as a plain message and exits non-zero, never with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

#: Exit codes of the ``nnspec`` command (docs/cli.md). 130 and 143 (signals) are in nnspec.runtime.interrupts.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SPEC = 2
EXIT_DIVERGED = 3
EXIT_OUTPUT = 4


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec, in the compiler style ``file:line:col: error[CODE]: message``."""

    code: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str = ""
    hint: str | None = None
    severity: str = "error"

    def location(self) -> str:
        """Return ``file:line:col`` (as much of it as is known)."""
        parts = [self.file or "<spec>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def format(self) -> str:
        """Render the diagnostic as printed by the CLI (one line, plus a hint line when there is one)."""
        text = f"{self.location()}: {self.severity}[{self.code}]: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def sort_key(self) -> tuple:
        """Key that orders diagnostics by file, then position, then code."""
        return (self.file or "", self.line or 0, self.column or 0, self.code)

    def __str__(self) -> str:
        return self.format()


class NnspecError(Exception):
    """Base class of every error nnspec reports to a user. ``exit_code``, when set, is the command line's exit
    code for it (else 1, or the code of its class: :class:`OutputError` 4, :class:`TrainingDiverged` 3)."""

    exit_code: int | None = None


class SpecError(NnspecError, ValueError):
    """A spec has one or more problems; ``diagnostics`` lists them all, sorted by position."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics: list[Diagnostic] = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__("\n".join(d.format() for d in self.diagnostics) or "invalid spec")


class SpecWarning(UserWarning):
    """A warning about a valid spec (for example a layer whose output reaches nothing); ``diagnostic`` holds it."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(
            f"{diagnostic.severity}[{diagnostic.code}]: {diagnostic.message}"
            + (f" (hint: {diagnostic.hint})" if diagnostic.hint else "")
        )
        self.diagnostic = diagnostic


class BackendError(NnspecError, RuntimeError):
    """A backend is unavailable, or cannot run what a spec asks for (names the layer and the backend)."""


class DataError(NnspecError, ValueError):
    """A data file is missing or malformed, or the data does not fit the spec (names the path)."""


class WeightsError(NnspecError, ValueError):
    """A weights file does not match the spec (lists the differences)."""


class OutputError(NnspecError, OSError):
    """Training finished but its results could not be written where asked; ``rescue`` names where the weights went."""

    def __init__(self, message: str, rescue: str | None = None):
        self.rescue = rescue
        super().__init__(message)


class TrainingDiverged(NnspecError, ArithmeticError):
    """The training loss became NaN or infinite (``train.on_divergence: stop``).

    ``epoch`` (from 1) and ``step`` (from 1, within the epoch) locate the first bad step and
    ``global_step`` counts optimiser steps from 0; the model holds the weights from before that step.
    """

    def __init__(self, epoch: int, step: int, global_step: int, loss: float, checkpoint: str | None = None):
        self.epoch, self.step, self.global_step, self.loss, self.checkpoint = epoch, step, global_step, loss, checkpoint
        where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written before it"
        super().__init__(
            f"training diverged: the loss became {loss} at epoch {epoch}, step {step} (optimiser step {global_step}); "
            f"{where}. Lower the learning rate, or set train.on_divergence: continue to train on regardless"
        )
