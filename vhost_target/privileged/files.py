"""The directories and vhost-user sockets only root may set up.

SPDK (root) makes the vhost-user sockets in ``socket_dir``; they go to
QEMU's group with the configured mode, are closed (mode 0) while a detach
looks at their sessions, and are removed with their controller. The
directories are root's, so that nobody but root can put anything (a
symlink above all) where root acts.

Every entrypoint here checks its arguments and the files it acts on: the
agent's process, which takes input from the message bus, may pass
anything. A path must be absolute and normalised; directories are reached
one component at a time without following symlinks, and a file is acted on
only through a root-owned directory nobody else may write to, so that it
cannot be swapped between the check and the act.
"""

import errno
import grp
import os
import re
import stat

from spdk_common import exception as spdk_exc
from spdk_common import naming
from vhost_target import privileged

# The only names in socket_dir: the agent's vhost controllers.
VHOST_SOCKET_NAME = naming.VHOST_CONTROLLER
# The RPC socket SPDK makes, and its lock file next to it.
RPC_SOCKET_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]*\.sock')
_GROUP_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*\$?')
# Both directories: root's, the group may look in, nobody else.
DIR_MODE = 0o750
# What a vhost-user socket may be given: read/write for the owner (root)
# and the group (QEMU's), 0 while closed; never anything for others, who
# would reach a guest's disk.
SOCKET_MODE_BITS = 0o660


def check_path(path, what='path'):
    """``path`` if absolute, normalised and not ``/``; else ValueError."""
    if (not isinstance(path, str) or not path.startswith('/')
            or path.startswith('//') or os.path.normpath(path) != path
            or path == '/' or '\0' in path):
        raise ValueError('%s %r is not an absolute, normalised path'
                         % (what, path))
    return path


def check_mode(mode, allowed):
    """``mode`` if an int with no bits outside ``allowed``."""
    if (not isinstance(mode, int) or isinstance(mode, bool) or mode < 0
            or mode & ~allowed):
        raise ValueError('mode %r is not allowed (at most %04o)'
                         % (mode, allowed))
    return mode


def group_id(group):
    """The gid of group name ``group``; ValueError for a bad or unknown
    name.
    """
    if not isinstance(group, str) or not _GROUP_NAME.fullmatch(group):
        raise ValueError('group %r is not a group name' % (group,))
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError('group %r does not exist on this host' % group)


def check_id(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError('%s %r is not a user or group id' % (what, value))
    return value


def open_dir(path, create=False):
    """An O_DIRECTORY descriptor of ``path``, reached from ``/`` one
    component at a time without following symlinks; missing components
    are made (0755) with ``create``. The caller closes it.
    """
    fd = os.open('/', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        for name in path.split('/')[1:]:
            try:
                child = os.open(name, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass   # made meanwhile; opened below all the same
                child = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise spdk_exc.UnsafePath('%s is not a directory reached without '
                                      'symlinks' % path)
        raise
    return fd


def check_root_dir(fd, path):
    """Refuse a directory that someone but root could change: a name in it
    could be swapped between a check and the act on it.
    """
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise spdk_exc.UnsafePath(
            '%s is not owned by root and writable by root only (owner %d, '
            'mode %04o)' % (path, st.st_uid, stat.S_IMODE(st.st_mode)))


def _check_entries(fd, path, allowed):
    """Refuse to re-own a directory that holds anything but the agent's
    own files: a wrong path must not take a system directory.
    """
    strangers = sorted(name for name in os.listdir(fd) if not allowed(name))
    if strangers:
        raise spdk_exc.UnsafePath(
            '%s holds files that are not the agent\'s (%s); it is not set up'
            % (path, ', '.join(strangers[:3])))


def _set_up_dir(path, gid, allowed):
    fd = open_dir(path, create=True)
    try:
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
                os.geteuid(), gid, DIR_MODE):
            # Set up already (by an earlier start): nothing changes, so
            # what it holds (e.g. an operator's own controller's socket)
            # does not matter.
            return
        _check_entries(fd, path, allowed)
        os.fchown(fd, os.geteuid(), gid)
        os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)


@privileged.default.entrypoint
def set_up_socket_dir(path, group):
    """Make ``path`` (the vhost-user socket directory) root's, group
    ``group`` (QEMU's), 0750; created if missing.

    Refused for a directory holding anything but ``vhost-<uuid>`` names.
    """
    check_path(path, 'socket_dir')
    gid = group_id(group)
    _set_up_dir(path, gid, VHOST_SOCKET_NAME.fullmatch)


def check_rpc_socket(path):
    """``path`` if it may be SPDK's RPC socket: absolute, normalised, a
    ``*.sock`` name.
    """
    check_path(path, 'rpc_socket')
    if not RPC_SOCKET_NAME.fullmatch(os.path.basename(path)):
        raise ValueError('rpc_socket %r is not named *.sock' % path)
    return path


@privileged.default.entrypoint
def set_up_rpc_dir(rpc_socket, gid):
    """Make the directory of ``rpc_socket`` root's, group ``gid`` (the
    agent's), 0750; created if missing. The group may reach the socket in
    it, which secure_rpc_socket gives to the agent's user.

    Refused for a directory holding anything but that socket and its lock.
    """
    check_rpc_socket(rpc_socket)
    check_id(gid, 'gid')
    try:
        grp.getgrgid(gid)
    except KeyError:
        raise ValueError('gid %d does not exist on this host' % gid)
    name = os.path.basename(rpc_socket)
    _set_up_dir(os.path.dirname(rpc_socket), gid,
                {name, name + '.lock'}.__contains__)


def _vhost_socket(path):
    """(directory fd, name) of vhost-user socket ``path``; the caller
    closes the fd. The name may be missing.
    """
    check_path(path, 'socket_path')
    directory, name = os.path.split(path)
    if not VHOST_SOCKET_NAME.fullmatch(name):
        raise ValueError('socket_path %r is not named vhost-<volume uuid>'
                         % path)
    fd = open_dir(directory)
    try:
        check_root_dir(fd, directory)
    except Exception:
        os.close(fd)
        raise
    return fd, name


def _check_socket(fd, name, path):
    """FileNotFoundError when missing, UnsafePath unless a socket."""
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if not stat.S_ISSOCK(st.st_mode):
        raise spdk_exc.UnsafePath('%s is not a socket' % path)


@privileged.default.entrypoint
def secure_vhost_socket(path, group, mode):
    """Give vhost-user socket ``path`` to group ``group`` with ``mode``
    (no bits beyond 0660).
    """
    fd, name = _vhost_socket(path)
    try:
        gid = group_id(group)
        check_mode(mode, SOCKET_MODE_BITS)
        _check_socket(fd, name, path)
        os.chown(name, -1, gid, dir_fd=fd, follow_symlinks=False)
        # Linux cannot chmod a symlink itself; the name was a socket just
        # now and only root may change the directory.
        os.chmod(name, mode, dir_fd=fd)
    finally:
        os.close(fd)


@privileged.default.entrypoint
def set_vhost_socket_mode(path, mode):
    """chmod vhost-user socket ``path`` (no bits beyond 0660); False when
    it does not exist.
    """
    fd, name = _vhost_socket(path)
    try:
        check_mode(mode, SOCKET_MODE_BITS)
        try:
            _check_socket(fd, name, path)
            os.chmod(name, mode, dir_fd=fd)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)


@privileged.default.entrypoint
def remove_vhost_socket(path):
    """Unlink vhost-user socket ``path`` (whatever file has its name: one
    left behind must not block the next controller); False when missing.
    """
    fd, name = _vhost_socket(path)
    try:
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=fd,
                                    follow_symlinks=False).st_mode):
                raise spdk_exc.UnsafePath('%s is a directory' % path)
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)
