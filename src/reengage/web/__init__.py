"""reengage's web app: the links in messages now; the collector, API and dashboard later."""
