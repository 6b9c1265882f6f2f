"""The synthetic shop and the demo that tours reengage on it."""
