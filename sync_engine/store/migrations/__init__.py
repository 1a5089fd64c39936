"""Alembic migrations of the state store (a package so that every kind of install ships them)."""
