"""Closing the vhost-user connections of one socket inside SPDK.

SPDK v25.09 has no RPC that ends a vhost-user session, and refuses to
delete a controller that has one; a vhost-blk controller whose bdev was
hot-removed (bdev_nvme gave up on the storage target) can never be given a
new one. So that a guest resumes on a rebuilt chain, the agent ends the
session the way the guest's side would: the socket is shut down, SPDK's
vhost-user library sees the peer gone and stops the session, and QEMU
(its chardev has ``reconnect``) connects again to the controller made
anew on the same path, resubmitting its in-flight requests.

The socket is reached with ``pidfd_getfd(2)`` (Linux 5.6), which needs
ptrace access to SPDK (CAP_SYS_PTRACE); ``shutdown(2)`` acts on the socket
itself, so the copy's shutdown is SPDK's.
"""

import ctypes
import errno
import os
import socket

from spdk_common import exception as spdk_exc
from spdk_common import naming
from vhost_target import privileged
from vhost_target.privileged import procfs

# x86_64 and aarch64 share the number (it is in the common table).
_SYS_PIDFD_GETFD = 438


def _shutdown_in(pidfd, fd):
    libc = ctypes.CDLL(None, use_errno=True)
    copy = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
    if copy < 0:
        err = ctypes.get_errno()
        if err == errno.EBADF:
            return False   # SPDK closed it meanwhile
        raise OSError(err, 'pidfd_getfd: %s' % os.strerror(err))
    conn = socket.socket(fileno=copy)
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
    finally:
        conn.close()
    return True


def check_socket_path(path):
    """The path of one of the agent's vhost-user sockets, or ValueError."""
    if (not isinstance(path, str) or not os.path.isabs(path)
            or os.path.normpath(path) != path
            or not naming.VHOST_CONTROLLER.fullmatch(os.path.basename(path))):
        raise ValueError('socket_path %r is not a vhost-user socket path '
                         '(absolute, normalised, named vhost-<volume uuid>)'
                         % (path,))
    return path


@privileged.default.entrypoint
def disconnect_sessions(pid, socket_path):
    """Shut down the vhost-user connections process ``pid`` accepted on
    ``socket_path``; return how many.

    Refused (SessionsError) unless ``pid`` is the process listening on
    that path: only the server of a socket has its sessions ended.
    """
    check_socket_path(socket_path)
    procfs.check_pid(pid)
    listening, connected = procfs.unix_sockets(socket_path)
    held = procfs.socket_fds(pid)
    if not listening & set(held):
        raise spdk_exc.SessionsError('process %d does not listen on %s'
                                     % (pid, socket_path))
    pidfd = os.pidfd_open(pid)
    try:
        return sum(_shutdown_in(pidfd, held[inode])
                   for inode in sorted(connected & set(held)))
    finally:
        os.close(pidfd)
