"""The state tables of segments (defined with the rest of the state in reengage.state.schema,
migration 0004): `segments` remembers each one's last refresh, `segment_members` its current
members, `segment_transitions` every entry and exit."""

from __future__ import annotations

from reengage.state.schema import SEGMENT_NAME_LENGTH as NAME_LENGTH
from reengage.state.schema import segment_members, segment_transitions, segments

TRANSITION_KINDS = ("enter", "exit")

__all__ = ["NAME_LENGTH", "TRANSITION_KINDS", "segment_members", "segment_transitions", "segments"]
