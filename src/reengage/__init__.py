"""reengage: pick up the thread with the customers a shop is losing."""

__version__ = "0.1.0"
