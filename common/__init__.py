"""Plumbing every wrapkit package shares: user errors, atomic file writes, argument checks,
build caches guarded by a file lock, and the one dataset reader.

Nothing here knows about integers, hardware or training; ``wrapkit.ref`` (integer semantics),
``wrapkit.hw``, ``wrapkit.sim``, ``wrapkit.models`` and ``wrapkit.flow`` all build on it, and it
imports none of them.
"""
