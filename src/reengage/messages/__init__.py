"""How reengage speaks: intents, copy in each style and language, rendering, offers."""
