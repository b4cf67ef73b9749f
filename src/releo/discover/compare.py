"""Scoring a discovered equation against a planted one: structure and coefficients."""

from __future__ import annotations

from collections.abc import Mapping


def structure_scores(found: Mapping[str, float], planted: Mapping[str, float]) -> dict:
    """Precision, recall and F1 of the selected terms against the planted terms.

    Also the relative error of every planted coefficient (1.0 for a missing term).
    """
    chosen = {k for k, v in found.items() if v != 0}
    true = set(planted)
    hits = chosen & true
    precision = len(hits) / len(chosen) if chosen else 0.0
    recall = len(hits) / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    errors = {
        term: abs(found.get(term, 0.0) - c) / abs(c) if c else abs(found.get(term, 0.0))
        for term, c in planted.items()
    }
    return {
        "structure_precision": precision,
        "structure_recall": recall,
        "structure_f1": f1,
        "max_coef_rel_error": max(errors.values()) if errors else None,
        "coef_rel_error": errors,
        "missing_terms": sorted(true - chosen),
        "extra_terms": sorted(chosen - true),
    }
