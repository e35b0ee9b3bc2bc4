"""Aether storage on PostgreSQL (``[storage] use = "postgres"``).

Several stateless Aether nodes share one database: it orders their writes (one row lock
assigns revisions), checks compare-and-set inside each commit's transaction, and tells
every node about every change through LISTEN/NOTIFY with catch-up from the records table.
"""

from aether_postgres.settings import PostgresSettings
from aether_postgres.storage import PostgresStorage

__all__ = ["PostgresSettings", "PostgresStorage"]
