"""A cheap sign that a SQLite database in WAL mode has not changed: its WAL-index header.

Every commit, by any connection in any process, rewrites the header at the start of the
database's ``-shm`` file, which every connection maps: a change counter incremented by each
transaction, the last valid frame, the salts and a checksum (the unix VFS's WAL-index, described
in https://www.sqlite.org/walformat.html). Two equal copies of its first 48 bytes taken at two
moments mean that no transaction committed in between. The embedded default uses that to answer
a miss's second look-up, under the key's lock, without a statement when nothing was committed
since the first (issue 7, W2).

A writer writes the header's second copy first and its first copy last, so a first copy read
whole and new belongs to a commit that readers starting after it already see; a copy read torn
differs from the next whole one, which only costs a statement.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import struct

__all__ = ["HEADER", "open_mark"]

HEADER = 48  # bytes of one copy of the header; the file holds two, then the checkpoint info
_LAYOUT = struct.Struct("=IIIBBH")  # version, unused, change counter, is-init, big-endian, page
_VERSION = 3007000  # the WAL-index format, unchanged since SQLite 3.7.0


def open_mark(conn: sqlite3.Connection, path: str) -> mmap.mmap | None:
    """A read-only view of ``path``'s WAL-index header, for ``conn``, a connection that has read
    the database (so that it holds the ``-shm`` file open and mapped for as long as it lives, and
    no other process can truncate it): ``view[:HEADER]`` is the header now. None when it cannot
    be told here: not in WAL mode, not a POSIX system, no ``-shm`` file, or a header of another
    format."""
    if os.name != "posix":
        return None
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            return None
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        fd = os.open(f"{path}-shm", os.O_RDONLY)
        try:
            view = mmap.mmap(fd, 2 * HEADER, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
    except (OSError, ValueError, sqlite3.Error):
        return None
    version, _, _, ready, _, size = _LAYOUT.unpack_from(view)
    if version != _VERSION or ready != 1 or size != (1 if page_size == 65536 else page_size):
        view.close()
        return None
    return view
