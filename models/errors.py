"""Errors of the model package. ``models`` imports nothing of ours, so it has its own."""

from __future__ import annotations


class ModelInputError(ValueError):
    """The model file, its format or its arguments are unusable. The CLI exits 2.

    The message is one line that names the problem and the fix.
    """
