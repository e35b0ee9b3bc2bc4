"""Fault injection for raft clusters of real ``aether up`` processes (tests and soak).

Nothing here is imported by the plugin: only tests and ``bench/raft_soak.py`` use it.
"""
