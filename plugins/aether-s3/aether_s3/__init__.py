"""Aether storage on S3 (provider ``s3``): the shared-database shape over one bucket."""

from aether_s3.settings import S3Settings
from aether_s3.storage import S3Storage

__all__ = ["S3Settings", "S3Storage"]
