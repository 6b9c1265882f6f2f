"""Signed link tokens: what one link can do, no other link, key or edit can."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reengage.messages.tokens import BadToken, sign, verify

KEY = b"k" * 32


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(st.integers(), st.text(max_size=40), st.none()),
        max_size=5,
    )
)
def test_a_token_gives_back_its_payload(payload: dict) -> None:
    assert verify(KEY, "click", sign(KEY, "click", payload)) == payload


def test_a_token_is_bound_to_its_purpose_and_key() -> None:
    token = sign(KEY, "open", {"m": 7})
    with pytest.raises(BadToken):
        verify(KEY, "unsubscribe", token)
    with pytest.raises(BadToken):
        verify(b"x" * 32, "open", token)


@given(st.integers(min_value=0, max_value=200), st.characters(codec="ascii"))
def test_any_edit_is_refused(position: int, char: str) -> None:
    token = sign(KEY, "unsubscribe", {"m": 12345, "c": 99})
    i = position % len(token)
    edited = token[:i] + char + token[i + 1 :]
    if edited == token:
        return
    with pytest.raises(BadToken):
        verify(KEY, "unsubscribe", edited)
