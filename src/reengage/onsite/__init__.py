"""On-site messages shown by the tracking snippet: product recommendations, exit intent and
welcome back (reengage.onsite.decide; docs/retargeting.md)."""
