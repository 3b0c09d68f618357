"""The cloud's process table: every process it starts, stopped by PID.

Each process is started in a session of its own, so its process group
holds what it forks (uwsgi workers, privsep daemons, SPDK's vhost under
the agent) and is stopped as one. The table is a TSV file, written as each
process starts, so ``down`` and ``status`` work from another invocation.
Nothing is ever found or stopped by name: other engineers' tests run
RabbitMQ, libvirtd and QEMU on the same host.
"""

import collections
import os
import signal
import subprocess
import time

FIELDS = ('name', 'pid', 'pgid', 'port', 'log', 'started_at', 'stop_timeout')

Entry = collections.namedtuple('Entry', FIELDS)


def _stat(pid):
    """(state, parent PID, process group) of a process; None when gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _living():
    """(pid, (state, ppid, pgrp)) of every process but zombies: a zombie
    is dead for every purpose here.
    """
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] != 'Z':
                yield int(entry), stat


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _stat(pid)
    return stat is not None and stat[0] != 'Z'


def group_members(pgid):
    return [pid for pid, (_state, _ppid, pgrp) in _living() if pgrp == pgid]


def children(parent):
    return [pid for pid, (_state, ppid, _pgrp) in _living() if ppid == parent]


def group_alive(pgid):
    return bool(group_members(pgid))


def group_rss_mib(pgid):
    """Resident memory of a process group (shared pages counted in each
    process, as ``ps`` does).
    """
    pages = 0
    for pid in group_members(pgid):
        try:
            with open('/proc/%d/statm' % pid) as f:
                pages += int(f.read().split()[1])
        except OSError:
            continue
    return pages * os.sysconf('SC_PAGE_SIZE') / (1 << 20)


def stop_order(entries, first=()):
    """The names in ``first`` in that order, then the newest first."""
    return sorted(entries, key=lambda e: (
        first.index(e.name) if e.name in first else len(first),
        -e.started_at))


class ProcessTable:

    def __init__(self, path):
        self.path = path

    def entries(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            rows = [line.rstrip('\n').split('\t') for line in f
                    if line.strip()]
        return [Entry(r[0], int(r[1]), int(r[2]), int(r[3]) if r[3] else None,
                      r[4], float(r[5]), float(r[6])) for r in rows]

    def get(self, name):
        for entry in self.entries():
            if entry.name == name:
                return entry
        return None

    def record(self, name, pid, pgid, port=None, log='', stop_timeout=15.0):
        with open(self.path, 'a') as f:
            f.write('\t'.join(str(v) for v in (
                name, pid, pgid, '' if port is None else port, log,
                time.time(), stop_timeout)) + '\n')

    def start(self, name, argv, log, env=None, port=None, cwd=None,
              stop_timeout=15.0):
        """Start ``argv`` in a new session, output to ``log``; returns the
        Popen (the caller checks readiness).
        """
        with open(log, 'ab') as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd, start_new_session=True)
        self.record(name, proc.pid, proc.pid, port, log, stop_timeout)
        return proc

    def stop(self, entry):
        """TERM the entry's process group, KILL it after its timeout;
        returns whether it is gone.
        """
        if not group_alive(entry.pgid) and not alive(entry.pid):
            return True
        self._signal(entry, signal.SIGTERM)
        deadline = time.monotonic() + entry.stop_timeout
        while time.monotonic() < deadline:
            if not group_alive(entry.pgid) and not alive(entry.pid):
                return True
            time.sleep(0.2)
        self._signal(entry, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not group_alive(entry.pgid) and not alive(entry.pid):
                return True
            time.sleep(0.2)
        return False

    @staticmethod
    def _signal(entry, signum):
        for kill, target in ((os.killpg, entry.pgid), (os.kill, entry.pid)):
            try:
                kill(target, signum)
            except ProcessLookupError:
                pass

    def running(self):
        return [e for e in self.entries()
                if alive(e.pid) or group_alive(e.pgid)]
