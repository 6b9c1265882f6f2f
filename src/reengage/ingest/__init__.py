"""Ingest: files and webhooks in, validated, into state and facts."""
