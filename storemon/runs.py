"""The ingest log: the `ingest_runs` table's SQL, and `Refresh`, the one shape of an ingest run.

A run is a CLI ingest or a service refresh. `ingest` returns a `Refresh`; the refresher keeps the last one (even one
that failed before the database could record it); the API, the CLI's `--history` and the console read the same
type back from the table, and `Refresh.to_dict` is the one place it becomes JSON.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field

import sqlite_utils

from storemon.db import now_iso

RUNNING, OK, PARTIAL, FAILED, INTERRUPTED = "running", "ok", "partial", "failed", "interrupted"
ROLLED_BACK = "rolled back"


@dataclass
class FileResult:
    """What one run did with one file."""

    name: str
    kind: str
    action: str = "unchanged"  # read | appended | unchanged | failed
    rows_read: int = 0
    rows_loaded: int = 0
    rows_skipped: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Refresh:
    """One run: when, how it ended (`status`), the data version it left, and what it did with each file.

    `id` is None for a run that failed before the database could record it (locked, say): the refresher records
    it once the database answers. `seconds` is known only to the process that ran it.
    """

    id: int | None
    started: str
    finished: str | None
    status: str
    data_version: int | None = None
    files: list[FileResult] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def rolled_back(self) -> bool:
        return self.status == ROLLED_BACK

    @property
    def changed(self) -> bool:
        """Whether this run stored anything: a file was read or appended, and the run was not undone."""
        return self.status in (OK, PARTIAL) and any(f.action in ("read", "appended") for f in self.files)

    @property
    def errors(self) -> list[str]:
        """Each failing file's error, or the run's own error when no file failed."""
        failing = [f.error for f in self.files if f.error]
        return failing or ([self.error] if self.error else [])

    def to_dict(self) -> dict:
        """The run as the API serves it."""
        return {**asdict(self), "ok": self.ok, "changed": self.changed}

    @classmethod
    def failed(cls, started: str, reason: str, status: str = FAILED) -> Refresh:
        """A run that ended at once with `reason`, not (yet) recorded."""
        return cls(None, started, now_iso(), status, error=reason)


def start(db: sqlite_utils.Database) -> Refresh:
    """Record a run starting now, owned by this process."""
    started = now_iso()
    run_id = db.execute("INSERT INTO ingest_runs (started, status, owner) VALUES (?, ?, ?)",
                        [started, RUNNING, run_owner()]).lastrowid
    return Refresh(run_id, started, None, RUNNING)


def finish(db: sqlite_utils.Database, run: Refresh) -> None:
    """Record how `run` ended (its own row)."""
    db.execute(
        "UPDATE ingest_runs SET finished = ?, status = ?, data_version = ?, files = ?, error = ? WHERE id = ?",
        [run.finished or now_iso(), run.status, run.data_version, json.dumps([asdict(f) for f in run.files]),
         run.error, run.id],
    )


def record_failed(db: sqlite_utils.Database, run: Refresh) -> None:
    """Record a run that failed: its own row marked failed, or a new failed row if it never got one (sets `id`)."""
    if run.id is not None:
        db.execute("UPDATE ingest_runs SET finished = ?, status = ?, error = ? WHERE id = ?",
                   [run.finished, run.status, run.error, run.id])
        return
    run.id = db.execute(
        "INSERT INTO ingest_runs (started, finished, status, files, error, owner) VALUES (?, ?, ?, '[]', ?, ?)",
        [run.started, run.finished, run.status, run.error, run_owner()],
    ).lastrowid


def recent(db: sqlite_utils.Database, limit: int = 20) -> list[Refresh]:
    """The last `limit` runs, newest first."""
    rows = db.execute("SELECT id, started, finished, status, data_version, files, error FROM ingest_runs "
                      "ORDER BY id DESC LIMIT ?", [limit]).fetchall()
    return [Refresh(run_id, started, finished, status, version,
                    [FileResult(**f) for f in json.loads(files or "[]")], error)
            for run_id, started, finished, status, version, files, error in rows]


def mark_interrupted(db: sqlite_utils.Database) -> int:
    """Runs left 'running' by a process of this host that is gone (killed, say) are recorded as interrupted;
    a live process's run, or another host's, is left alone. Returns how many."""
    gone = [run_id for run_id, owner in db.execute("SELECT id, owner FROM ingest_runs WHERE status = ?", [RUNNING])
            if not _owner_alive(owner)]
    for run_id in gone:
        db.execute("UPDATE ingest_runs SET status = ?, error = 'the process stopped during this ingest' "
                   "WHERE id = ? AND status = ?", [INTERRUPTED, run_id, RUNNING])
    return len(gone)


def run_owner() -> str:
    """This process, as the ingest log names the owner of a run: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    """Whether the process that started a run (host:pid) may still be running it."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
