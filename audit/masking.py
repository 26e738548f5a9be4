"""The safeguards against false robustness (gradient masking) of Athalye et al. (2018), as pure
functions of measured accuracies, so each can be tested on its own.

A robustness estimate from a white-box attack is only an upper bound; when the model's gradients
are masked, obfuscated or shattered, the attack fails and the bound is meaningless. Five symptoms
give it away, each evaluated here on what the ``adversarial`` check measured:

1. accuracy does not fall as ε grows (a larger ball contains every smaller one);
2. the iterative attack (PGD) is weaker than the single-step one (FGSM), which it contains;
3. an ε spanning the whole input range does not drive accuracy near zero (any input is reachable);
4. a black-box attack, which needs no gradients, beats the white-box one;
5. the gradient attack leaves inputs where they were: their loss gradient is exactly zero (a
   saturated softmax, rounding, a quantiser, a model whose outputs are decisions), so every gradient
   attack is blind on them — and on a model that is blind everywhere the first four symptoms can
   all stay silent, since no white-box number moves (Carlini et al. 2019, "verify that gradients
   are non-zero").

Each function returns table rows ``[safeguard, "pass" | "TRIPPED", detail]``.

References
----------
Athalye, Carlini, Wagner. "Obfuscated Gradients Give a False Sense of Security", ICML 2018.
Carlini et al. "On Evaluating Adversarial Robustness", arXiv:1902.06705, 2019 (section 5).
"""

from __future__ import annotations

from typing import Any

Curve = dict[tuple[str, str], list[tuple[float, float]]]
"""Accuracy against ε per (attack, norm), e.g. ``{("pgd", "linf"): [(0.03, 0.61), (0.1, 0.12)]}``."""

PASS, TRIPPED = "pass", "TRIPPED"


def accuracy_falls_with_eps(curve: Curve, tol: float) -> list[list[Any]]:
    """One row per (attack, norm): tripped when accuracy at a larger ε exceeds the accuracy at the
    next smaller ε by more than ``tol``."""
    rows = []
    for (kind, norm), points in curve.items():
        ordered = sorted(points)
        accs = [a for _, a in ordered]
        ok = all(b <= a + tol for a, b in zip(accs, accs[1:]))
        rows.append([f"{kind.upper()} {norm}: accuracy falls as ε grows", PASS if ok else TRIPPED,
                     ", ".join(f"{e:g}:{a:.3f}" for e, a in ordered)])
    return rows


def pgd_at_least_fgsm(curve: Curve, tol: float) -> list[list[Any]]:
    """One row per norm: tripped when PGD leaves a higher accuracy than FGSM at the same ε (by more than ``tol``)."""
    rows = []
    for norm in sorted({nm for _, nm in curve}):
        f = dict(curve.get(("fgsm", norm), []))
        p = dict(curve.get(("pgd", norm), []))
        bad = sorted(e for e in p if e in f and p[e] > f[e] + tol)
        rows.append([f"PGD at least as strong as FGSM ({norm})", PASS if not bad else TRIPPED,
                     "all ε" if not bad else f"PGD weaker at ε={bad}"])
    return rows


def unbounded_reaches_zero(accuracy: float, width: float, bound: float) -> list[Any]:
    """Tripped when PGD with an ε spanning the input range (``width``) leaves accuracy above ``bound``."""
    return [f"ε spanning the input range ({width:g}) drives accuracy near zero", PASS if accuracy <= bound else TRIPPED,
            f"accuracy {accuracy:.3f} (must be ≤ {bound})"]


def black_box_not_stronger(name: str, black_box: float, white_box: float, margin: float) -> list[Any]:
    """Tripped when the black-box attack's accuracy is below the white-box (PGD) accuracy by more than ``margin``."""
    ok = black_box >= white_box - margin
    return ["black-box does not beat white-box", PASS if ok else TRIPPED,
            f"{name} {black_box:.3f} vs PGD {white_box:.3f} (margin {margin})"]


MAX_UNMOVED = 0.1
"""Share of the attacked samples FGSM may leave exactly unperturbed before the gradients count as masked."""


def gradients_move_inputs(unmoved: dict[str, tuple[float, float]], bound: float = MAX_UNMOVED) -> list[list[Any]]:
    """One row per norm, from ``{norm: (largest ε, share of samples FGSM left exactly where they were)}``:
    tripped when that share exceeds ``bound``."""
    return [[f"FGSM {norm}: input gradients move the inputs", PASS if share <= bound else TRIPPED,
             f"{share:.1%} of samples unmoved at ε={eps:g} (must be ≤ {bound:.0%})"]
            for norm, (eps, share) in sorted(unmoved.items())]


def tripped(rows: list[list[Any]]) -> list[list[Any]]:
    """The rows whose safeguard tripped."""
    return [r for r in rows if r[1] == TRIPPED]
