"""The cloud's process table: every process it starts, stopped by PID.

Each process is started in a session of its own, so its process group
holds what it forks (uwsgi workers, privsep daemons, SPDK's vhost under
the agent) and is stopped as one. The table is a TSV file, written as each
process starts, so ``down`` and ``status`` work from another invocation.
Nothing is ever found or stopped by name: other engineers' tests run
RabbitMQ, libvirtd and QEMU on the same host.
"""

import collections
import json
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


def hugetlb_mappings(pid, proc='/proc'):
    """{(device, inode): KiB} of the hugetlbfs mappings of a process."""
    found = {}
    key = None
    try:
        with open(os.path.join(proc, str(pid), 'smaps')) as f:
            for line in f:
                fields = line.split()
                if not fields[0].endswith(':'):  # a mapping's header
                    key = (fields[3], fields[4]) if len(fields) > 4 else None
                elif fields[0] in ('Private_Hugetlb:', 'Shared_Hugetlb:'):
                    if int(fields[1]) and key is not None:
                        found[key] = found.get(key, 0) + int(fields[1])
    except OSError:
        pass
    return found


def hugetlb_holders():
    """PIDs whose ``HugetlbPages`` is not 0."""
    pids = []
    for pid, _stat in _living():
        try:
            with open('/proc/%d/status' % pid) as f:
                for line in f:
                    if line.startswith('HugetlbPages:'):
                        if int(line.split()[1]):
                            pids.append(pid)
                        break
        except OSError:
            continue
    return pids


def group_hugetlb_mib(pgid, holders=None):
    """Hugepage memory a process group maps of its own: SPDK vhost also
    maps the RAM of every guest it serves (vhost-user shares it), which is
    the guest's, so a file another process outside the group maps too does
    not count.
    """
    holders = hugetlb_holders() if holders is None else holders
    members = set(group_members(pgid))
    own, others = {}, set()
    for pid in holders:
        mappings = hugetlb_mappings(pid)
        if pid in members:
            for key, kib in mappings.items():
                own[key] = max(own.get(key, 0), kib)
        else:
            others.update(mappings)
    return sum(kib for key, kib in own.items() if key not in others) / 1024


def base_name(name):
    """The service of a table name: ``nova-compute@compute2`` is a
    nova-compute (of node compute2).
    """
    return name.partition('@')[0]


def stop_order(entries, first=()):
    """The services in ``first`` in that order (every node's), then the
    newest first.
    """
    return sorted(entries, key=lambda e: (
        first.index(base_name(e.name)) if base_name(e.name) in first
        else len(first), -e.started_at))


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
        # For "tools/cloud restart": the same command again. 0600: the
        # environment is the caller's.
        spec = {'argv': argv, 'log': log, 'env': env, 'port': port,
                'cwd': cwd, 'stop_timeout': stop_timeout}
        os.makedirs(self._spec_dir, exist_ok=True)
        fd = os.open(os.path.join(self._spec_dir, name + '.json'),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(spec, f)
        return proc

    @property
    def _spec_dir(self):
        return os.path.join(os.path.dirname(self.path), 'commands')

    def spec(self, name):
        """How ``name`` was started (the arguments of :meth:`start`), or
        None for a process recorded, not started, here.
        """
        try:
            with open(os.path.join(self._spec_dir, name + '.json')) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def forget(self, names):
        """Drop the rows of ``names`` (stopped, to be started again)."""
        kept = [e for e in self.entries() if e.name not in names]
        tmp = self.path + '.new'
        with open(tmp, 'w') as f:
            for e in kept:
                f.write('\t'.join(str(v) for v in (
                    e.name, e.pid, e.pgid, '' if e.port is None else e.port,
                    e.log, e.started_at, e.stop_timeout)) + '\n')
        os.replace(tmp, self.path)

    def known_pids(self):
        """Every living process of the table's groups and below them."""
        entries = self.entries()
        pgids = {e.pgid for e in entries}
        roots = {e.pid for e in entries}
        roots.update(pid for pid, (_s, _p, pgrp) in _living()
                     if pgrp in pgids)
        return descendants(roots)

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


# A process whose name is one of these is a person's, not a service, even
# when it reads the cloud's files or sits in its directory.
INTERACTIVE = frozenset(('bash', 'sh', 'dash', 'zsh', 'fish', 'tmux',
                         'screen', 'less', 'more', 'tail', 'vi', 'vim',
                         'nano', 'view', 'grep', 'cat', 'sudo', 'su'))


def _under(path, root, ignored):
    path = path.split(' (deleted)')[0]
    if not (path == root or path.startswith(root + '/')):
        return False
    return not any(path == d or path.startswith(d + '/') for d in ignored)


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [a.decode(errors='replace')
                    for a in f.read().split(b'\0') if a]
    except OSError:
        return []


def _is_cloud_tool(argv):
    """tools/cloud and tools/run-main themselves (another one may be
    running, e.g. a status next to a down).
    """
    if any(a.endswith(('tools/cloud', 'tools/run-main')) for a in argv):
        return True
    return any(a == '-m' and b in ('tools.aio_cloud',
                                   'tools.aio_cloud.capacity')
               for a, b in zip(argv, argv[1:]))


def references(pid, root, ignored=()):
    """How a process refers to ``root``: 'argv', 'cwd', 'open file' or
    None. Paths under ``ignored`` (the logs ``down`` keeps) do not count.
    """
    for arg in _cmdline(pid):
        # --opt=/root/x, a:/root/x and plain paths alike.
        for part in arg.replace('=', ' ').replace(':', ' ').split():
            if _under(part, root, ignored):
                return 'argv'
    try:
        if _under(os.readlink('/proc/%d/cwd' % pid), root, ignored):
            return 'cwd'
        fd_dir = '/proc/%d/fd' % pid
        for fd in os.listdir(fd_dir):
            try:
                if _under(os.readlink(os.path.join(fd_dir, fd)), root,
                          ignored):
                    return 'open file'
            except OSError:
                continue
    except OSError:
        pass
    return None


def ancestors(pid):
    found = []
    while pid > 1:
        stat = _stat(pid)
        if stat is None:
            break
        found.append(pid)
        pid = stat[1]
    return found


def descendants(pids):
    """``pids`` and every process below them."""
    by_parent = collections.defaultdict(list)
    for pid, (_state, ppid, _pgrp) in _living():
        by_parent[ppid].append(pid)
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(by_parent.get(pid, ()))
    return found


def program(pid):
    """The program a process runs (its argv[0]), '' when gone."""
    argv = _cmdline(pid)
    return argv[0] if argv else ''


def command_name(pid):
    try:
        with open('/proc/%d/comm' % pid) as f:
            return f.read().strip()
    except OSError:
        return '?'


def find_strays(root, known=(), ignored=()):
    """[(pid, command, how)] of the processes that refer to ``root`` (in
    their argv, as their cwd or through an open file) and are neither in
    ``known`` nor this process or its ancestors, nor a person's shell or
    pager, nor the cloud's own tools.
    """
    root = os.path.abspath(root)
    mine = set(ancestors(os.getpid()))
    known = set(known)
    strays = []
    for pid, _stat in sorted(_living()):
        if pid in mine or pid in known:
            continue
        argv = _cmdline(pid)
        if not argv or _is_cloud_tool(argv):  # kernel threads have none
            continue
        name = command_name(pid)
        if name in INTERACTIVE:
            continue
        how = references(pid, root, ignored)
        if how:
            # SPDK renames its main thread reactor_0: the program's name
            # says more, unless it is an interpreter running a script.
            program = os.path.basename(argv[0])
            if not program.startswith(('python', 'perl', 'ruby', 'node')):
                name = program
            strays.append((pid, name, how))
    return strays


def stop_pids(pids, grace=10.0):
    """TERM each process, KILL those left after ``grace``; returns the
    PIDs still alive.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM
                                       else 5)
        while time.monotonic() < deadline:
            pids = [pid for pid in pids if alive(pid)]
            if not pids:
                return []
            time.sleep(0.2)
    return [pid for pid in pids if alive(pid)]
