"""Retargeting and advocacy: product feeds for dynamic ads (`feeds`), the product sets of a
segment (`product_sets`) and referral codes with their share links (`referrals`).
See docs/retargeting.md."""
