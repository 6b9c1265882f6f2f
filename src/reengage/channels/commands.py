"""Commands of the channels: push keys, ad audiences."""

from __future__ import annotations
