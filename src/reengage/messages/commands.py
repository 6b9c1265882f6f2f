"""Commands of messages: preview, offers."""

from __future__ import annotations
