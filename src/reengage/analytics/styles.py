"""Behavioural styles: infer each customer's from behaviour, honour explicit answers, learn.

Every message adapts to the person's behavioural style (DISC as marketers use it):
- go_getter: fast and decisive; wants the point and a deadline;
- promoter: social and enthusiastic; novelty, sharing, community;
- nurturer: steady and relational; loyalty, family and values;
- examiner: reflective and analytical; reads specs and reviews, compares.

The pipeline, and why each step is there:
1. `style_signals` (in style_features.py) measures habits per customer as of a date with Ibis.
2. `infer_styles` ranks each signal across customers and turns ranks into normal scores, so a
   weight means the same for minutes, shares and counts; multiplies them by the weights table
   (style_signals.toml: marketing knowledge written down, one commented row per signal);
   expresses each style's score in standard deviations across the customers; shrinks it by
   the amount of evidence, so a one-visit customer stays near uniform; and turns it into four
   probabilities with a softmax. The style is the most probable one when its probability
   reaches a threshold, else "unknown": a wrong style costs more than the neutral tone used
   for "unknown".
3. An explicit style wins over behaviour: a CRM value passed by the caller, else the latest
   answer to the style survey (a survey_answer event).
4. `update_with_response` refines the probabilities from how people answer messages written
   for a style, by Bayes' rule.

docs/styles.md explains the signals, weights, threshold and measured accuracy.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypedDict, TypeGuard

import numpy as np
import pyarrow as pa
from scipy.special import ndtri  # type: ignore[import-untyped, unused-ignore]
from scipy.stats import rankdata  # type: ignore[import-untyped, unused-ignore]

from reengage.analytics.style_features import SIGNALS, STYLES, style_signals

__all__ = [
    "DEFAULT_THRESHOLD",
    "SIGNALS",
    "STYLES",
    "UNKNOWN",
    "StyleReport",
    "StyleWeights",
    "infer_styles",
    "load_weights",
    "macro_f1",
    "style_report",
    "style_signals",
    "update_with_response",
]

UNKNOWN = "unknown"
#: A style is named when its probability is at least this: more likely right than wrong (the
#: other three styles together are less likely). Below it, messages use the neutral tone.
DEFAULT_THRESHOLD = 0.5
WEIGHTS_FILE = "style_signals.toml"
_SCORING_KEYS = ("scale", "evidence_half", "clip")
_N = len(STYLES)


@dataclass(frozen=True)
class StyleWeights:
    """The weights table: per signal, how much it pulls each style, plus scoring constants.

    rows maps a signal name to four weights in STYLES order. scale multiplies the style scores
    before the softmax; evidence_half is the number of visits that gives half the pull;
    clip bounds each normal score.
    """

    rows: Mapping[str, tuple[float, float, float, float]]
    scale: float
    evidence_half: float
    clip: float

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(self.rows)

    def matrix(self) -> np.ndarray:
        """(signals, 4) weights, rows in `signals` order."""
        if not self.rows:
            return np.zeros((0, _N))
        return np.array([self.rows[name] for name in self.rows], dtype=np.float64)


def load_weights(path: Path | None = None) -> StyleWeights:
    """The weights table: the one shipped with reengage, or a replacement file at `path`.

    A replacement must have the same layout: [weights] rows `signal = [go_getter, promoter,
    nurturer, examiner]` and a complete [scoring] table. Anything wrong raises ValueError
    naming the file and the row.
    """
    if path is None:
        where = f"the packaged {WEIGHTS_FILE}"
        text = resources.files("reengage.analytics").joinpath(WEIGHTS_FILE).read_text("utf-8")
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the style weights file {where}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where} is not valid TOML: {exc}") from None
    return _parse_weights(data, where)


def _parse_weights(data: Mapping[str, Any], where: str) -> StyleWeights:
    extra = sorted(set(data) - {"weights", "scoring"})
    if extra:
        raise ValueError(
            f"{where}: unknown section(s) {', '.join(extra)} (expected weights, scoring)"
        )
    table = data.get("weights")
    if not isinstance(table, dict):
        raise ValueError(f"{where}: a [weights] table is required")
    rows: dict[str, tuple[float, float, float, float]] = {}
    for name, value in table.items():
        if name not in SIGNALS:
            raise ValueError(
                f"{where}: weights row {name!r} is not a known signal (known: {', '.join(SIGNALS)})"
            )
        if not (
            isinstance(value, list)
            and len(value) == _N
            and all(_is_number(v) and math.isfinite(v) for v in value)
        ):
            raise ValueError(
                f"{where}: weights row {name!r} must be {_N} finite numbers "
                f"[{', '.join(STYLES)}], got {value!r}"
            )
        rows[name] = (float(value[0]), float(value[1]), float(value[2]), float(value[3]))
    scoring = data.get("scoring")
    if not isinstance(scoring, dict):
        raise ValueError(f"{where}: a [scoring] table is required ({', '.join(_SCORING_KEYS)})")
    unknown = sorted(set(scoring) - set(_SCORING_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown [scoring] key(s) {', '.join(unknown)}")
    values: dict[str, float] = {}
    for key in _SCORING_KEYS:
        value = scoring.get(key)
        zero_ok = key == "evidence_half"  # 0 switches the evidence shrinkage off
        number = float(value) if _is_number(value) else math.nan
        if not (math.isfinite(number) and (number >= 0 if zero_ok else number > 0)):
            bound = ">= 0" if zero_ok else "> 0"
            raise ValueError(f"{where}: [scoring] {key} must be a number {bound}, got {value!r}")
        values[key] = number
    return StyleWeights(rows=MappingProxyType(rows), **values)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def normal_scores(values: np.ndarray, clip: float) -> np.ndarray:
    """Each value's rank among the non-missing ones as a standard normal score, clipped.

    Ranks make the signals scale-free and immune to outliers; ties share their mean rank (so a
    signal everybody has at 0 scores 0 for all), and missing values score 0: no evidence
    either way.
    """
    out = np.zeros(len(values))
    # Rounded first: the same habit summed in another order must tie, not rank apart.
    values = np.round(values, 9)
    seen = ~np.isnan(values)
    m = int(seen.sum())
    if m:
        quantile = (rankdata(values[seen], method="average") - 0.5) / m
        out[seen] = np.clip(ndtri(quantile), -clip, clip)
    return out


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(
        table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )


def style_probabilities(signals: pa.Table, weights: StyleWeights) -> np.ndarray:
    """(customers, 4) probabilities from behaviour alone, rows in the table's order."""
    missing = [name for name in weights.signals if name not in signals.column_names]
    if missing:
        raise ValueError(f"the signals table lacks column(s) {', '.join(missing)}")
    n = signals.num_rows
    if n == 0:
        return np.zeros((0, _N))
    z = np.column_stack(
        [normal_scores(_column(signals, name), weights.clip) for name in weights.signals]
        or [np.zeros(n)]
    )
    w = weights.matrix() if weights.rows else np.zeros((1, _N))
    scores = z @ w
    # Each style's score in standard deviations from the shop's average customer: a style
    # described by many correlated habits (the examiner's research) would otherwise swamp one
    # described by a few (the nurturer's loyalty), and the typical customer would not be neutral.
    scores = scores - scores.mean(axis=0)
    spread = scores.std(axis=0)
    scores = scores / np.where(spread > 1e-12, spread, 1.0) * weights.scale
    # Evidence: the visits seen (or orders, for a shop that sends no web events).
    amount = np.zeros(n)
    for name in ("sessions", "orders"):
        if name in signals.column_names:
            amount = np.maximum(amount, np.nan_to_num(_column(signals, name)))
    if "sessions" not in signals.column_names and "orders" not in signals.column_names:
        amount = np.full(n, np.inf)  # no evidence counts given: trust the signals as they are
    with np.errstate(invalid="ignore"):
        pull = np.where(np.isinf(amount), 1.0, amount / (amount + weights.evidence_half))
    return _softmax(scores * np.nan_to_num(pull)[:, None])


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def normalise_style(value: object) -> str | None:
    """A style name from free text ("Go-Getter" → go_getter), or None if it is not one."""
    if not isinstance(value, str):
        return None
    name = re.sub(r"[\s-]+", "_", value.strip().lower())
    return name if name in STYLES else None


def infer_styles(
    signals: pa.Table,
    weights: StyleWeights | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    overrides: Mapping[str, str] | None = None,
) -> pa.Table:
    """Per customer: style probabilities, confidence, style and where the style comes from.

    Columns: customer_id, p_go_getter, p_promoter, p_nurturer, p_examiner, confidence, style,
    style_source.

    - p_*: from behaviour only (so a survey or CRM style that behaviour disagrees with stays
      visible, and learning starts from what behaviour says);
    - confidence: the largest probability, i.e. the chance the behavioural style is right if
      the probabilities are calibrated. Chosen over 1 − normalised entropy because the
      decision is about the top style: two styles at 0.5 each have a low entropy yet a
      coin-flip label;
    - style: the CRM value from `overrides` (source "crm"), else the latest survey answer in
      the signals' survey_style column ("survey"), else the most probable style if
      confidence >= threshold, else "unknown" (both "behaviour"). CRM wins over the survey
      because it is what the caller explicitly asks for now; leave a customer out of
      `overrides` to let their survey answer speak.

    Customers in `overrides` but not in `signals` get a row too, with uniform probabilities.
    An override value that is not a style raises ValueError (None or "" means no value).
    """
    weights = weights or load_weights()
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    crm: dict[str, str] = {}
    for customer, value in (overrides or {}).items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        style = normalise_style(value)
        if style is None:
            raise ValueError(
                f"CRM style {value!r} of customer {customer!r} is not one of {', '.join(STYLES)}"
            )
        crm[str(customer)] = style

    ids: list[str] = [str(c) for c in signals.column("customer_id").to_pylist()]
    probs = style_probabilities(signals, weights)
    survey: list[str | None] = (
        [normalise_style(v) for v in signals.column("survey_style").to_pylist()]
        if "survey_style" in signals.column_names
        else [None] * len(ids)
    )
    known = set(ids)
    extra = sorted(c for c in crm if c not in known)
    if extra:
        ids += extra
        probs = np.vstack([probs, np.full((len(extra), _N), 1.0 / _N)])
        survey += [None] * len(extra)

    confidence = probs.max(axis=1) if len(ids) else np.zeros(0)
    top = probs.argmax(axis=1) if len(ids) else np.zeros(0, dtype=np.int64)
    styles: list[str] = []
    sources: list[str] = []
    for i, customer in enumerate(ids):
        if customer in crm:
            styles.append(crm[customer])
            sources.append("crm")
        elif survey[i] is not None:
            styles.append(str(survey[i]))
            sources.append("survey")
        else:
            styles.append(STYLES[top[i]] if confidence[i] >= threshold else UNKNOWN)
            sources.append("behaviour")
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.string()),
            **{f"p_{s}": pa.array(probs[:, k], pa.float64()) for k, s in enumerate(STYLES)},
            "confidence": pa.array(confidence, pa.float64()),
            "style": pa.array(styles, pa.string()),
            "style_source": pa.array(sources, pa.string()),
        }
    )


def update_with_response(
    probs: np.ndarray,
    variant_style: Sequence[str | None] | np.ndarray,
    responded: Sequence[bool] | np.ndarray,
    strength: float = 1.0,
    *,
    base_rate: float = 0.05,
) -> np.ndarray:
    """Posterior style probabilities after each person saw one message variant.

    The model: a person answers (clicks, buys) a message written for style S with probability
    base_rate × (1 + strength) when S is their style, and base_rate otherwise. By Bayes' rule
    an answer multiplies the odds of S by (1 + strength) — with the default, a click on the
    promoter variant doubles the odds of promoter — while silence multiplies them by
    (1 − base_rate·(1 + strength)) / (1 − base_rate), a mild decrease (0.947 by default),
    because most people ignore most messages whatever their style. A variant of None, "" or
    "unknown" (the neutral tone) tells nothing and leaves the row as it was.

    probs: (n, 4) rows in STYLES order; returns a new (n, 4) array whose rows sum to 1.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != _N:
        raise ValueError(f"probs must have shape (n, {_N}), got {p.shape}")
    if np.any(~np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and non-negative")
    variants = list(variant_style)
    answered = np.asarray(responded, dtype=bool)
    if len(variants) != len(p) or answered.shape != (len(p),):
        raise ValueError("probs, variant_style and responded must have one entry per person")
    if not (strength >= 0 and math.isfinite(strength)):
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    if not 0 < base_rate * (1 + strength) < 1:
        raise ValueError("base_rate × (1 + strength) must be within (0, 1)")

    column = np.full(len(p), -1)
    for i, variant in enumerate(variants):
        if variant is None or variant in ("", UNKNOWN):
            continue
        style = normalise_style(variant)
        if style is None:
            raise ValueError(f"variant style {variant!r} is not one of {', '.join(STYLES)}")
        column[i] = STYLES.index(style)

    hit = base_rate * (1 + strength)
    matched = np.where(answered, hit / base_rate, (1 - hit) / (1 - base_rate))
    likelihood = np.ones_like(p)
    rows = np.flatnonzero(column >= 0)
    likelihood[rows, column[rows]] = matched[rows]
    posterior = p * likelihood
    total = posterior.sum(axis=1, keepdims=True)
    # A row of zeros (no belief at all) stays uniform rather than dividing by zero.
    return np.where(total > 0, posterior / np.where(total > 0, total, 1), 1.0 / _N)


class StyleScores(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int


class StyleReport(TypedDict):
    customers: int
    coverage: float
    macro_f1: float
    macro_f1_covered: float
    per_style: dict[str, StyleScores]


def style_report(truth: Mapping[str, str], predicted: Mapping[str, str]) -> StyleReport:
    """How well predicted styles match the true ones, over the customers in `truth`.

    A customer predicted "unknown" (or missing from `predicted`) counts as wrong: a miss for
    their true style, a false alarm for none. Returns the customers counted, coverage (share
    with a predicted style), macro_f1 over everyone, macro_f1_covered over the customers with
    a predicted style, and per style precision, recall, f1 and support.
    """
    true: list[int] = []
    pred: list[int] = []
    for customer, style in truth.items():
        t = normalise_style(style)
        if t is None:
            raise ValueError(f"true style {style!r} of {customer!r} is not one of {STYLES}")
        true.append(STYLES.index(t))
        p = normalise_style(predicted.get(customer))
        pred.append(-1 if p is None else STYLES.index(p))
    t_arr, p_arr = np.array(true, dtype=np.int64), np.array(pred, dtype=np.int64)
    covered = p_arr >= 0
    per_style, f1_all = _per_style(t_arr, p_arr)
    _, f1_covered = _per_style(t_arr[covered], p_arr[covered])
    return {
        "customers": len(t_arr),
        "coverage": float(covered.mean()) if len(t_arr) else 0.0,
        "macro_f1": f1_all,
        "macro_f1_covered": f1_covered,
        "per_style": per_style,
    }


def _per_style(true: np.ndarray, pred: np.ndarray) -> tuple[dict[str, StyleScores], float]:
    out: dict[str, StyleScores] = {}
    f1s = []
    for k, style in enumerate(STYLES):
        tp = int(np.sum((true == k) & (pred == k)))
        fp = int(np.sum((true != k) & (pred == k)))
        fn = int(np.sum((true == k) & (pred != k)))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        out[style] = {
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": f1,
            "support": int(np.sum(true == k)),
        }
        if tp + fp + fn:  # a style nobody has and nobody is given does not count
            f1s.append(f1)
    return out, float(np.mean(f1s)) if f1s else 0.0


def macro_f1(truth: Mapping[str, str], predicted: Mapping[str, str]) -> float:
    """Mean F1 over the four styles, for the customers in `truth`.

    "unknown" (or no prediction) counts as wrong: it lowers the recall of the customer's true
    style and nobody's precision. See `style_report` for coverage and the covered-only score.
    """
    return style_report(truth, predicted)["macro_f1"]
