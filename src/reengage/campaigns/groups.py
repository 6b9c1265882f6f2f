"""Who of a frozen audience is held out, tested (on which arm) or in the rest: drawn by a
hash of the campaign and the contact, so a restart or a replay draws the same.

Journeys draw one contact at a time with SHA-256 (`journeys.definition.bucket`); a campaign
draws a million at once, so here the hash is SplitMix64 over numpy arrays, seeded by a
SHA-256 of the campaign's name and the purpose of the draw: uniform enough for shares and
arms, and independent between the holdout, the test share and the arm.
"""

from __future__ import annotations

import hashlib

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _seed(*parts: str) -> np.uint64:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return np.uint64(int.from_bytes(digest[:8], "big"))


def uniform(contact_ids: np.ndarray, *parts: str) -> np.ndarray:
    """A number in [0, 1) per contact, fixed by the parts (campaign name, purpose)."""
    with np.errstate(over="ignore"):
        z = contact_ids.astype(np.uint64) + _seed(*parts)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def draw(
    contact_ids: np.ndarray, campaign: str, *, holdout: float, test_share: float, arms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(group, arm) per contact: group 0 rest, 1 test, 2 holdout; arm an index among the test
    arms (-1 outside the test). The test share is of the whole audience, as the holdout."""
    held = uniform(contact_ids, campaign, "holdout") < holdout
    # the test share is drawn among those not held out, scaled so it is a share of everyone
    tested = ~held & (uniform(contact_ids, campaign, "test") * (1 - holdout) < test_share)
    group = np.where(held, 2, np.where(tested, 1, 0)).astype(np.int8)
    arm = np.where(
        tested, (uniform(contact_ids, campaign, "arm") * max(arms, 1)).astype(np.int64), -1
    )
    return group, arm


GROUPS = ("rest", "test", "holdout")
