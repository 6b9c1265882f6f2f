"""Campaigns: one-off and scheduled sends to a segment, with the relational rules of journeys
(style-adapted copy, the same contact policy, a holdout), subject and content tests with a
winner, send-time optimisation and throttling. See docs/campaigns.md."""
