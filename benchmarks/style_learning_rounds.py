"""Style learning over many messages: how macro-F1 against a generated shop's hidden styles
grows as people answer (or ignore) messages written in one style's variant.

The shop is generated and imported as in `style_f1` (its behaviour gives each customer's
style probabilities: the baseline, round 0). Then, round after round, every customer gets one
message: the variant of their inferred style when it passed the threshold, else a variant
drawn from their probabilities (to learn, a person of unknown style must be shown styles);
they click as the relational simulation's response model says (`demo.responses`, a newsletter,
the congruent variant (1 + congruence) times as persuasive); and `update_with_response`
updates their probabilities with the same strength and base rate the model has. A
SIMULATION, of the learning rule, not of people; the full pipeline through the outbox is
`benchmarks/style_learning.py`.

    python -m benchmarks.style_learning_rounds [--customers 5000] [--rounds 24] [--seed 13]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import report, scratch
from benchmarks.style_f1 import CALIBRATION_SEEDS, shop_signals
from reengage.analytics.styles import (
    DEFAULT_THRESHOLD,
    STYLES,
    infer_styles,
    style_report,
    update_with_response,
)
from reengage.demo.responses import CONGRUENCE_EFFECT, ResponseModel, draw


def labels(probs: np.ndarray, threshold: float) -> list[str]:
    top = probs.argmax(axis=1)
    sure = probs.max(axis=1) >= threshold
    return [STYLES[t] if s else "unknown" for t, s in zip(top, sure, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--congruence", type=float, default=CONGRUENCE_EFFECT)
    args = parser.parse_args()
    if args.seed in CALIBRATION_SEEDS:
        parser.error(f"seeds {CALIBRATION_SEEDS} were used for calibration: pick another")
    truth, signals, _ = shop_signals(scratch("style_learning_rounds"), args.customers, args.seed)
    inferred = infer_styles(signals)

    ids = inferred.column("customer_id").to_pylist()
    probs = np.column_stack([inferred.column(f"p_{s}").to_numpy() for s in STYLES])
    true_style = [truth[c] for c in ids]
    model = ResponseModel(congruence_effect=args.congruence)
    click_rate, _ = model.rates("newsletter")
    rng = np.random.default_rng(args.seed)
    unclear = probs.max(axis=1) < DEFAULT_THRESHOLD  # behaviour alone named no style
    curve = []
    for done in range(args.rounds + 1):
        found = style_report(truth, dict(zip(ids, labels(probs, DEFAULT_THRESHOLD), strict=True)))
        argmax = style_report(
            truth, dict(zip(ids, [STYLES[i] for i in probs.argmax(axis=1)], strict=True))
        )
        curve.append(
            {
                "round": done,
                "macro_f1": round(found["macro_f1"], 4),
                "coverage": round(found["coverage"], 4),
                "macro_f1_top_style": round(argmax["macro_f1"], 4),
            }
        )
        if done == args.rounds:
            break
        named = probs.max(axis=1) >= DEFAULT_THRESHOLD
        explored = np.array([rng.choice(len(STYLES), p=p / p.sum()) for p in probs])
        variant = np.where(named, probs.argmax(axis=1), explored)
        shown = [STYLES[v] for v in variant]
        congruent = np.array([s == t for s, t in zip(shown, true_style, strict=True)])
        answers = draw(model, rng, ["newsletter"] * len(ids), [None] * len(ids), congruent)
        probs = update_with_response(
            probs,
            shown,
            answers.clicked,
            strength=args.congruence,
            base_rate=click_rate,
        )
    now_named = unclear & (probs.max(axis=1) >= DEFAULT_THRESHOLD)
    right = sum(STYLES[int(probs[i].argmax())] == true_style[i] for i in np.flatnonzero(now_named))
    report(
        "style_learning_rounds",
        {
            "customers": len(ids),
            "seed": args.seed,
            "congruence": args.congruence,
            "threshold": DEFAULT_THRESHOLD,
            "baseline_macro_f1": curve[0]["macro_f1"],
            "macro_f1_after": {
                str(c["round"]): c["macro_f1"] for c in curve[1:] if c["round"] % 6 == 0
            },
            "final": curve[-1],
            "ratio_to_baseline": round(curve[-1]["macro_f1"] / max(curve[0]["macro_f1"], 1e-9), 3),
            "unclear_by_behaviour": int(unclear.sum()),
            "unclear_named_after": int(now_named.sum()),
            "unclear_named_right": round(right / max(1, int(now_named.sum())), 3),
            "chance": 0.25,
        },
    )


if __name__ == "__main__":
    main()
