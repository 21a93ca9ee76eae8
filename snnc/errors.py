"""What snnc raises for input it refuses: one base class, so a caller (and the CLI) can tell a
refusal from a bug.

Every error a user can cause -- a file that cannot be read, a model or graph snnc cannot compile,
a limit of the target that is broken, an option out of range, a dataset that does not fit the
model -- is an :class:`SnncError`. Its message is one line that says where (file, node, option),
what was found and what is allowed or what to do. The CLI prints it as ``snnc: error: <message>``
and exits 1; any other exception is a bug in snnc (exit 70, "please report").

:class:`SnncError` derives from ``ValueError`` so that code written against snnc's earlier
``ValueError``\\ s keeps working; new code should catch :class:`SnncError`.
"""
from __future__ import annotations


class SnncError(ValueError):
    """Input snnc refuses (one-line message: where, what was found, what is allowed)."""


class UsageError(SnncError):
    """Options or arguments that do not go together or are out of range."""
