"""Audiences: segments of contacts defined by rules over their profile, scores, consents and
behaviour, kept up to date with the transitions in and out.

The public surface: `parse` (rule text to a checked Rule), `refresh_segments`, `members`,
`create_segment`, `load_segments`, and `RuleError`.
"""

from reengage.audience.conditions import Rule
from reengage.audience.rules import Origin, RuleError, parse
from reengage.audience.segments import (
    RefreshSummary,
    Segment,
    create_segment,
    load_segments,
    members,
    refresh_segments,
)

__all__ = [
    "Origin",
    "RefreshSummary",
    "Rule",
    "RuleError",
    "Segment",
    "create_segment",
    "load_segments",
    "members",
    "parse",
    "refresh_segments",
]
