"""Experiments: the statistics of A/B/n tests and the rule that picks a winner.

`stats` holds per-arm rates and revenue per recipient with intervals and each arm against a
control; `winner.choose_winner` is the rule campaigns use; `calibration` checks the false
positive rate by simulation. See docs/experiments.md.

Nothing is imported here, so that the command line does not load SciPy until it is needed.
"""
