"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a server on a
free loopback port (and a Unix socket in the folder), trust authentication, stopped and
removed at the end. As root, the cluster runs as the ``postgres`` user (PostgreSQL refuses
root). ``PRICEGRID_TEST_POSTGRES`` (a postgresql:// URL) uses a server you run instead."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from typing import Iterator, Optional


def _binaries() -> Optional[str]:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    return None


def available() -> Optional[str]:
    """Why no cluster can be had here, or None."""
    if os.environ.get("PRICEGRID_TEST_POSTGRES"):
        return None
    if _binaries() is None:
        return "no PostgreSQL server binaries (initdb) on this machine and PRICEGRID_TEST_POSTGRES unset"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the cluster as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def cluster() -> Iterator[str]:
    """The URL of a fresh cluster's ``postgres`` database (superuser ``pricegrid``)."""
    given = os.environ.get("PRICEGRID_TEST_POSTGRES")
    if given:
        yield given
        return
    bindir = _binaries()
    base = tempfile.mkdtemp(prefix="pricegrid-pg-")
    data = os.path.join(base, "data")
    as_user: list[str] = []
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(base, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = dict(check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    subprocess.run([*as_user, os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "pricegrid",
                    "-E", "UTF8", "--no-sync"], **run)
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=100")
    subprocess.run([*as_user, os.path.join(bindir, "pg_ctl"), "-D", data, "-o", options, "-l",
                    os.path.join(base, "log"), "-w", "-t", "60", "start"], **run)
    try:
        yield f"postgresql://pricegrid@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(url: str) -> str:
    """A new empty database on the cluster of ``url``; its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name
