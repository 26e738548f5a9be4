"""Fairness helpers used by ``audit.checks.fairness``: mitigations."""
