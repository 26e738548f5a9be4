"""Exceptions the library raises. Only ``cli.py`` turns them into messages and exit codes."""

from __future__ import annotations


class DeepAuditError(Exception):
    """Base class of every error deepaudit raises on purpose."""


class InputError(DeepAuditError):
    """Bad input or usage: a file, a config key, a column, a shape. The CLI exits 2.

    The message is one line that names the problem and, where there is one, the fix.
    """


class ConfigError(InputError):
    """The config file (or a flag overriding it) is invalid."""


class SkipCheck(DeepAuditError):
    """Raised inside ``Check.run`` when the check does not apply; the reason is recorded."""
