"""What the privsep daemon and the agent read of processes in /proc: a
process' start time, the unix sockets bound to a path and the sockets a
process holds. Nothing here needs privileges of its own; reading another
user's /proc/<pid>/fd does (ptrace access), which the daemon has.
"""

import os

_UNIX_CONNECTED = '03'
_UNIX_LISTENING = '01'


def check_pid(pid):
    """``pid`` if it is a process id other than init's, else ValueError."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise ValueError('pid %r is not a process id' % (pid,))
    return pid


def start_time(pid):
    """When ``pid`` started (clock ticks after boot), or None.

    None for a process that does not exist or is a zombie: either way it
    serves nothing. The start time tells a reused pid from the process
    recorded under it.
    """
    try:
        with open('/proc/%d/stat' % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: the fields that
    # follow it start after the last ')'. Field 3 is the state, 22 the
    # start time.
    fields = data.rsplit(')', 1)[1].split()
    if fields[0] in ('Z', 'X'):
        return None
    return int(fields[19])


def unix_sockets(path):
    """Inodes of the unix sockets bound to ``path``: (listening,
    connected). An accepted connection carries its listener's path in
    /proc/net/unix.
    """
    listening, connected = set(), set()
    with open('/proc/net/unix') as table:
        next(table)
        for line in table:
            fields = line.split(None, 7)
            if len(fields) < 8 or fields[7].rstrip('\n') != path:
                continue
            if fields[5] == _UNIX_LISTENING:
                listening.add(int(fields[6]))
            elif fields[5] == _UNIX_CONNECTED:
                connected.add(int(fields[6]))
    return listening, connected


def socket_fds(pid):
    """{inode: fd number} of the sockets process ``pid`` holds."""
    fds = {}
    fd_dir = '/proc/%d/fd' % pid
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except FileNotFoundError:
            continue   # closed meanwhile
        if target.startswith('socket:['):
            fds[int(target[len('socket:['):-1])] = int(name)
    return fds


def listens_on(pid, path):
    """Whether process ``pid`` holds the socket listening on ``path``."""
    listening, _connected = unix_sockets(path)
    return bool(listening & set(socket_fds(pid)))
