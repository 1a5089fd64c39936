"""Alembic revision scripts, applied in order by ``sync_engine.store.db.upgrade_database``."""
