"""Measurement: which message each order is owed to (attribution), the links' utm tags that
let the shop's web analytics agree, and the KPIs built on them."""
