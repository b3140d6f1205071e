"""The one shared database of radcds before issue #12, and how each service's own migration chain adopts it.

Until issue #12 every service ran one shared Alembic chain (version table ``alembic_version``, revisions
``0001``…``0009``) that created every service's tables in every service's database; the Helm chart pointed all
services at one database. Each service now has its own chain and version table (``alembic_version_<service>``)
that, in a fresh database, creates only that service's tables and the kernel's (:data:`.tables.KERNEL_TABLES`).

In a database the shared chain brought to its last revision, the tables already exist with their rows: a
service's first own revision then *adopts* them (creates nothing, drops nothing) and records its own version;
later revisions of the service's chain apply as usual. A database the shared chain left at an older revision is
refused with :class:`LegacySchemaError`: finish that upgrade first with the release that still ships the shared
chain. Nothing removes the legacy version table or another service's tables: splitting one shared database into
one database per service is the runbook's copy step (docs/operations.md, "One database per
service"), after which the old one is retired.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect, text

#: The shared chain's version table and its last revision (the schema every service's first revision adopts).
LEGACY_VERSION_TABLE = "alembic_version"
LEGACY_HEAD = "0009"


class LegacySchemaError(RuntimeError):
    """The database holds the shared chain at a revision older than :data:`LEGACY_HEAD`."""


def adopts_legacy_shared_schema(conn: Connection) -> bool:
    """True when ``conn``'s database was migrated by the shared chain to :data:`LEGACY_HEAD`: a service's first
    own revision then keeps the tables (and rows) it finds instead of creating them. False for a database the
    shared chain never touched. Raises :class:`LegacySchemaError` for a shared chain left at an older revision."""
    if not inspect(conn).has_table(LEGACY_VERSION_TABLE):
        return False
    version = conn.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalar_one_or_none()  # noqa: S608
    if version == LEGACY_HEAD:
        return True
    raise LegacySchemaError(
        f"this database holds radcds's shared migration chain at revision {version!r}, not {LEGACY_HEAD!r}: "
        "upgrade it with the last release that ships the shared chain before starting this one"
    )
