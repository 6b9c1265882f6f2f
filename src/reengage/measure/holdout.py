"""The global holdout: a fixed random share of contacts who get no marketing message from
any journey or campaign, so the whole of reengage can be measured against doing nothing.

Membership is drawn by a hash of the contact id alone (SplitMix64, `campaigns.groups`), so a
contact is in or out for good, in every journey and campaign alike, and a replay draws the
same. Service messages (order thanks, the delivery check-in) still go: they are not what is
being measured, and a customer is owed them. Raising the share later adds contacts to the
holdout without taking any out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reengage.campaigns.groups import uniform

REASON = "global holdout"


def global_holdout(contact_ids: Sequence[int] | np.ndarray, share: float) -> np.ndarray:
    """Per contact, whether it is in a global holdout of `share` (0 to 1)."""
    ids = np.asarray(contact_ids, dtype=np.int64)
    if share <= 0 or len(ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    return uniform(ids, "global", "holdout") < share
