"""Collecting diagnostics while checking a spec: every problem is kept, none stops the check.

Errors make a spec invalid; warnings (severity ``"warning"``) are reported beside them but do not.
"""

from __future__ import annotations

from ..errors import Diagnostic, SpecError
from .loader import YNode
from .values import Invalid


class Report:
    """The diagnostics found so far in one check."""

    def __init__(self, default_file: str | None = None):
        self.default_file = default_file
        self.diagnostics: list[Diagnostic] = []

    def add(
        self,
        code: str,
        message: str,
        node: YNode | None,
        hint: str | None = None,
        path: str = "",
        severity: str = "error",
    ) -> None:
        """Record one problem positioned at ``node`` (or at the file when there is no node)."""
        if node is None:
            self.diagnostics.append(
                Diagnostic(code, message, self.default_file, path=path, hint=hint, severity=severity)
            )
        else:
            self.diagnostics.append(Diagnostic(code, message, node.file, node.line, node.column, path, hint, severity))

    def warn(self, code: str, message: str, node: YNode | None, hint: str | None = None) -> None:
        """Record a warning: reported, but the spec stays valid."""
        self.add(code, message, node, hint, severity="warning")

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics that make the spec invalid."""
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        """The diagnostics that do not make the spec invalid."""
        return [d for d in self.diagnostics if d.severity != "error"]

    def invalid(self, exc: Invalid, code: str, label: str, node: YNode | None, path: str = "") -> None:
        """Record an :class:`Invalid` value: ``<label> <exc.message>``, positioned at the offending node."""
        sep = " " if exc.message.startswith(("must ", "may ")) else ": "
        self.add(exc.code or code, f"{label}{sep}{exc.message}", exc.node or node, exc.hint, path)

    def raise_if_any(self) -> None:
        """Raise :class:`SpecError` with everything recorded (warnings too), when an error was recorded."""
        if self.errors:
            raise SpecError(self.diagnostics)

    def __bool__(self) -> bool:
        """True when an error was recorded (warnings alone leave a report false)."""
        return bool(self.errors)
