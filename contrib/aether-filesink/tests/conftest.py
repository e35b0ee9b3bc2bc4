from filesink_helpers import manager

__all__ = ["manager"]
