"""Understanding customers: features, RFM, lifecycle, BTYD, styles, recommendations."""
