"""``kms``: an Aether key provider whose key-encryption keys live in AWS KMS."""

from aether_kms.provider import KmsKeyProvider
from aether_kms.settings import KmsSettings

__all__ = ["KmsKeyProvider", "KmsSettings"]
