"""State: the small, mutable, transactional store (SQLite by default, PostgreSQL in production)."""
