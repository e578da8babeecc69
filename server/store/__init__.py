"""Persistence behind the protocols the domain defines (DESIGN.md, "The layers").

``sqlite`` is the embedded default (one file, nothing to start); ``postgres`` is the store
that replicas share. Both keep snapshots, portfolios and named scenario sets with the same
meaning; :func:`open_store` picks one from the server's ``store`` setting.
"""


def open_store(store: str):
    """A PostgresStore for a ``postgresql://`` (or ``postgres://``) URL, else the SQLite
    file at that path (``:memory:`` keeps nothing)."""
    from pricegrid.server.store.postgres import PostgresStore, is_postgres

    if is_postgres(store):
        return PostgresStore(store)
    from pricegrid.server.store.sqlite import SqliteSnapshotStore

    return SqliteSnapshotStore(store)


def describe(store: str) -> str:
    """The setting as logs and ServerInfo show it (a URL without its password)."""
    from pricegrid.server.store.postgres import is_postgres, redacted

    return redacted(store) if is_postgres(store) else store
