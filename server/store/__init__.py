"""Persistence behind the protocols the domain defines (DESIGN.md, "The layers").

``sqlite`` is the embedded default (one file, nothing to start); a PostgreSQL store for
replicas that share data follows the same protocol.
"""
