"""A throwaway PostgreSQL cluster from Debian's server binaries, with one database per radcds service."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from radcds_devstack import processes


@dataclass(frozen=True)
class PostgresCluster:
    """One cluster under ``run_dir/postgres`` on ``host:port`` (trust authentication, fsync off), holding the
    databases ``radcds_<name>`` for each of ``databases``."""

    run_dir: Path
    host: str
    port: int
    databases: tuple[str, ...]
    name: str = "postgres"

    def database_url(self, database: str) -> str:
        """The SQLAlchemy URL of ``radcds_<database>`` in this cluster."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/radcds_{database}"

    def start(self) -> None:
        """Create the cluster once (``initdb``), then start the server.

        As root the cluster runs as ``postgres``, which must be able to enter every folder above its
        data folder; when the checkout is not reachable by that user (a 0700 home, a ``mktemp -d``
        folder), the data folder is made under the system temporary folder instead and
        ``<run folder>/postgres`` links to it."""
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries missing: `apt-get install postgresql` (make deps)")
        bindir = Path(bins[-1]).parent
        user = "postgres" if os.geteuid() == 0 else None
        data = self.data_dir(user)
        if not (data / "PG_VERSION").exists():
            done = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=False,
                capture_output=True,
                text=True,
                user=user,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"initdb failed on the data folder {data} (as user {user or pwd.getpwuid(os.geteuid()).pw_name}): "
                    f"{done.stderr.strip()[-500:]}"
                )
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(data), "-h", self.host]
        processes.start(
            self.name, [*argv, "-c", "fsync=off"], run_dir=self.run_dir, env=dict(os.environ), cwd=data, user=user
        )

    def data_dir(self, user: str | None) -> Path:
        """The cluster's data folder, created and owned by ``user``: ``<run folder>/postgres``, or a
        folder under the system temporary folder linked from there when ``user`` cannot reach the
        run folder."""
        link = self.run_dir / self.name
        if link.is_symlink():
            return link.resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if user is not None and not _reachable_by(user, self.run_dir):
            data = Path(tempfile.mkdtemp(prefix="radcds-postgres-"))
            link.symlink_to(data, target_is_directory=True)
        else:
            data = link
            data.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
            if not _reachable_by(user, data):
                raise RuntimeError(f"PostgreSQL data folder {data} is not reachable by the user {user}")
        return data

    def discard_data(self) -> None:
        """Remove the cluster's data folder (also when it lives outside the run folder)."""
        link = self.run_dir / self.name
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)
            link.unlink()
        else:
            shutil.rmtree(link, ignore_errors=True)

    def wait(self, timeout_s: float = 60.0) -> None:
        """Wait for connections, then create the databases that are missing."""
        import psycopg

        dsn = f"postgresql://postgres@{self.host}:{self.port}/postgres"

        def accepting() -> bool:
            psycopg.connect(dsn, connect_timeout=2).close()
            return True

        processes.wait_until(accepting, timeout_s=timeout_s, what="PostgreSQL", alive=(self.name, self.run_dir))
        with psycopg.connect(dsn, autocommit=True) as conn:
            for database in self.databases:
                name = f"radcds_{database}"
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                    conn.execute(f'CREATE DATABASE "{name}"')


def _reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can enter ``path`` (search permission on it and every folder above it)."""
    return subprocess.run(["test", "-x", str(path)], user=user, check=False).returncode == 0
