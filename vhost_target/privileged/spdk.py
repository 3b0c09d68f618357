"""Starting and stopping SPDK's vhost application, which runs as root.

SPDK is started here, in the privsep daemon, not by the agent: it maps
hugepages, locks its CPU cores and makes the vhost-user sockets QEMU opens.
The daemon's own capabilities are only those of the context; SPDK, exec'd
by uid 0, has root's (the kernel gives a root exec the bounding set).

The command line is built here from checked arguments, never taken whole:
the agent's process may pass anything. SPDK runs in a session of its own
and a thread of the daemon reaps it, so a dead SPDK stays nobody's zombie;
once the daemon ends (with the agent), init is its parent. The agent
watches it by pid and start time, as any SPDK it did not start itself.

SPDK's RPC socket is where the agent drives SPDK; SPDK makes it root's,
and secure_rpc_socket gives it to the agent's user, 0600, in a directory
(files.set_up_rpc_dir) only the agent's group may enter. Whoever holds that
socket can ask SPDK for anything an RPC does, SPDK running as root: the
socket is the agent's alone.
"""

import errno
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import threading

from spdk_common import binaries
from spdk_common import exception as spdk_exc
from vhost_target import privileged
from vhost_target.privileged import files
from vhost_target.privileged import procfs

# Only SPDK's vhost application (spdk_common.binaries.find('vhost')).
BINARY_NAME = 'vhost'
_CPUMASK = re.compile(r'0x[0-9a-f]+')
# planner._env_context(): DPDK's --socket-mem and --socket-limit, one
# value per NUMA node.
_ENV_CONTEXT = re.compile(r'--socket-mem=\d+(,\d+)* --socket-limit=\d+(,\d+)*')
_HUGE_DIRS = {2048: None, 1048576: '/dev/hugepages1G'}


def _check_secure_file(path, what):
    """Refuse ``path`` unless it and every directory above it are root's
    and writable by root only (a sticky directory such as /tmp may be
    writable by all: nobody else can rename root's entry in it); SPDK
    runs as root, whatever the file is.
    """
    real = os.path.realpath(path)
    current = real
    while True:
        st = os.stat(current)
        shared = (current != real and stat.S_ISDIR(st.st_mode)
                  and st.st_mode & stat.S_ISVTX)
        if st.st_uid != 0 or (st.st_mode & 0o022 and not shared):
            raise spdk_exc.UnsafePath(
                '%s %s: %s is not owned by root and writable by root only'
                % (what, path, current))
        if current == '/':
            break
        current = os.path.dirname(current)
    return real


def check_binary(binary):
    """The real path of SPDK's vhost binary ``binary``, checked."""
    files.check_path(binary, 'binary')
    if os.path.basename(binary) != BINARY_NAME:
        raise ValueError('binary %r is not SPDK\'s %s application'
                         % (binary, BINARY_NAME))
    real = _check_secure_file(binary, 'binary')
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IXUSR:
        raise spdk_exc.UnsafePath('binary %s is not an executable file'
                                  % binary)
    return real


def _open_log(path):
    """Open SPDK's log ``path`` for appending as root, refusing a symlink
    and a hard link (the agent's user owns the directory: a link there
    could name any file).
    """
    files.check_path(path, 'log_path')
    directory, name = os.path.split(path)
    dir_fd = files.open_dir(directory)
    try:
        # Readable by the agent's user, which quotes SPDK's errors; others
        # cannot enter state_dir (0700) anyway.
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise spdk_exc.UnsafePath('log_path %s is a symlink' % path)
        raise
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise spdk_exc.UnsafePath('log_path %s is not a regular file with one '
                                  'link' % path)
    return fd


def _check_json_config(path):
    files.check_path(path, 'json_config')
    if not path.endswith('.json'):
        raise ValueError('json_config %r is not a .json file' % path)
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise spdk_exc.UnsafePath('json_config %s is not a regular file'
                                  % path)
    return path


def vhost_command(binary, cpumask, rpc_socket, socket_dir, json_config,
                  env_context, memory_mib, page_size_kib, share_cpus=False):
    """SPDK vhost's command line, from checked arguments."""
    if not isinstance(cpumask, str) or not _CPUMASK.fullmatch(cpumask):
        raise ValueError('cpumask %r is not a hex CPU mask' % (cpumask,))
    files.check_rpc_socket(rpc_socket)
    files.check_path(socket_dir, 'socket_dir')
    if page_size_kib not in _HUGE_DIRS:
        raise ValueError('page_size_kib %r is not 2048 or 1048576'
                         % (page_size_kib,))
    # --no-pci: the compute-side SPDK only speaks NVMe/TCP and vhost-user;
    # it must not take the host's PCI devices.
    cmd = [binary, '--no-pci', '-m', cpumask, '-r', rpc_socket,
           '-S', socket_dir, '--json', json_config]
    if env_context:
        if (not isinstance(env_context, str)
                or not _ENV_CONTEXT.fullmatch(env_context)):
            raise ValueError('env_context %r is not --socket-mem and '
                             '--socket-limit' % (env_context,))
        cmd += ['--env-context', env_context]
    else:
        if (not isinstance(memory_mib, int) or isinstance(memory_mib, bool)
                or memory_mib <= 0):
            raise ValueError('memory_mib %r is not a size in MiB'
                             % (memory_mib,))
        cmd += ['-s', str(memory_mib)]
    if _HUGE_DIRS[page_size_kib]:
        cmd += ['--huge-dir', _HUGE_DIRS[page_size_kib]]
    if share_cpus is True:
        cmd.append('--disable-cpumask-locks')
    return cmd


def _reap(proc):
    # The daemon is SPDK's parent while it lives: without a wait() a dead
    # SPDK would stay its zombie.
    proc.wait()


@privileged.default.entrypoint
def start_vhost(binary, cpumask, rpc_socket, socket_dir, json_config,
                env_context, memory_mib, page_size_kib, share_cpus,
                log_path):
    """Start SPDK's vhost application, its output appended to
    ``log_path``; return its pid.
    """
    real = check_binary(binary)
    cmd = vhost_command(real, cpumask, rpc_socket, socket_dir,
                        json_config, env_context, memory_mib, page_size_kib,
                        share_cpus)
    _check_json_config(json_config)
    log = _open_log(log_path)
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=binaries.environment(real),
            # Its own session: signals to the agent's group (a ^C, a
            # systemd stop with KillMode=process) leave it serving.
            start_new_session=True)
    finally:
        os.close(log)
    threading.Thread(target=_reap, args=(proc,), daemon=True,
                     name='reap-spdk-%d' % proc.pid).start()
    return proc.pid


def _is_vhost_of(pid, rpc_socket):
    """Whether process ``pid``'s command line is an SPDK vhost one (as
    vhost_command makes it) serving ``rpc_socket``.
    """
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            args = f.read().split(b'\0')
    except (FileNotFoundError, ProcessLookupError):
        return False
    wanted = os.fsencode(rpc_socket)
    return b'--no-pci' in args and any(
        args[i] == b'-r' and args[i + 1] == wanted
        for i in range(len(args) - 1))


@privileged.default.entrypoint
def secure_rpc_socket(pid, rpc_socket, uid):
    """Give SPDK's RPC socket to user ``uid`` (the agent's), 0600.

    Only the socket SPDK vhost process ``pid`` listens on, started with
    ``-r rpc_socket``; False while it does not listen yet.
    """
    procfs.check_pid(pid)
    files.check_rpc_socket(rpc_socket)
    files.check_id(uid, 'uid')
    try:
        pwd.getpwuid(uid)
    except KeyError:
        raise ValueError('uid %d does not exist on this host' % uid)
    if not _is_vhost_of(pid, rpc_socket):
        raise spdk_exc.NotSPDK('process %d is not SPDK vhost serving %s'
                               % (pid, rpc_socket))
    if not procfs.listens_on(pid, rpc_socket):
        return False
    directory, name = os.path.split(rpc_socket)
    fd = files.open_dir(directory)
    try:
        files.check_root_dir(fd, directory)
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISSOCK(st.st_mode):
            raise spdk_exc.UnsafePath('%s is not a socket' % rpc_socket)
        os.chown(name, uid, -1, dir_fd=fd, follow_symlinks=False)
        os.chmod(name, 0o600, dir_fd=fd)
    finally:
        os.close(fd)
    return True


@privileged.default.entrypoint
def remove_stale_rpc_socket(rpc_socket):
    """Remove ``rpc_socket`` and its lock file when nobody listens on it
    (SPDK refuses to start on a socket that is there); raise
    FileExistsError when somebody does.
    """
    files.check_rpc_socket(rpc_socket)
    directory, name = os.path.split(rpc_socket)
    fd = files.open_dir(directory)
    try:
        files.check_root_dir(fd, directory)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(rpc_socket)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        except OSError as exc:
            if exc.errno != errno.ENOTSOCK:
                raise FileExistsError(errno.EEXIST, 'somebody listens',
                                      rpc_socket)
        else:
            raise FileExistsError(errno.EEXIST, 'somebody listens',
                                  rpc_socket)
        finally:
            probe.close()
        for stale in (name, name + '.lock'):
            try:
                os.unlink(stale, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)


@privileged.default.entrypoint
def stop_vhost(pid, started, rpc_socket, force=False):
    """SIGTERM (SIGKILL with ``force``) SPDK vhost process ``pid`` that
    started at ``started`` and serves ``rpc_socket``; False when it is
    gone already.
    """
    procfs.check_pid(pid)
    if not isinstance(started, int) or isinstance(started, bool):
        raise ValueError('started %r is not a start time' % (started,))
    files.check_rpc_socket(rpc_socket)
    if not isinstance(force, bool):
        raise ValueError('force %r is not a bool' % (force,))
    if procfs.start_time(pid) != started:
        return False   # gone, or the pid is another process' now
    if not _is_vhost_of(pid, rpc_socket):
        raise spdk_exc.NotSPDK('process %d is not SPDK vhost serving %s'
                               % (pid, rpc_socket))
    try:
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
