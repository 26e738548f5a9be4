"""Check modules, imported explicitly in this order. To add a check: write one module here,
add it to this list, and add its test under ``tests/audit/checks/``."""

CHECK_MODULES = (
    "audit.checks.performance",
    "audit.checks.corruption",
    "audit.checks.adversarial",
    "audit.checks.explanations",
    "audit.checks.attention",
    "audit.checks.ood",
    "audit.checks.drift",
    "audit.checks.privacy",
    "audit.checks.poisoning",
    "audit.checks.extraction",
    "audit.checks.efficiency",
    "audit.checks.fairness",
    "audit.checks.counterfactual",
)
