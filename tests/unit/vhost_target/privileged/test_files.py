"""The directories and vhost-user sockets only root may set up: what the
entrypoints refuse, and what they do to real files.
"""

import grp
import os
import socket
import stat

from spdk_common import exception as spdk_exc
from tests.unit.vhost_target import privileged as base
from vhost_target.privileged import files

ROOT_GROUP = grp.getgrgid(0).gr_name
# A group that is not root's, to see a chown happen.
OTHER_GROUP = next(g for g in grp.getgrall() if g.gr_gid != 0)


def make_socket(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()   # the file stays
    return path


class TestArguments(base.InProcessTestCase):
    def test_paths_must_be_absolute_and_normalised(self):
        for path in ('relative/dir', '/a/../etc', '/a/./b', '/a/b/', '//a',
                     '/', '', None, b'/a', '/a\0b', 7):
            self.assertRaises(ValueError, files.check_path, path)
        self.assertEqual('/a/b', files.check_path('/a/b'))

    def test_modes_beyond_what_the_agent_needs_are_refused(self):
        for mode in (0o666, 0o664, 0o4660, 0o1660, 0o760, 0o670, -1, True,
                     '0660', 1.5):
            self.assertRaises(ValueError, files.check_mode, mode,
                              files.SOCKET_MODE_BITS)
        for mode in (0, 0o600, 0o640, 0o660):
            self.assertEqual(mode, files.check_mode(
                mode, files.SOCKET_MODE_BITS))

    def test_groups(self):
        self.assertEqual(0, files.group_id(ROOT_GROUP))
        for name in ('no-such-group-x', 'bad name', '-x', '', None, 0):
            self.assertRaises(ValueError, files.group_id, name)

    def test_vhost_socket_paths(self):
        good = os.path.join(self.dir, 'vhost-' + base.VOLUME)
        make_socket(good)
        for path in (os.path.join(self.dir, 'spdk.sock'),
                     os.path.join(self.dir, 'vhost-' + base.VOLUME.upper()),
                     os.path.join(self.dir, 'vhost-' + base.VOLUME + 'x'),
                     os.path.join(self.dir, 'sub', '..',
                                  'vhost-' + base.VOLUME),
                     'vhost-' + base.VOLUME):
            self.assertRaises(ValueError, files.set_vhost_socket_mode,
                              path, 0o600)
            self.assertRaises(ValueError, files.remove_vhost_socket, path)
            self.assertRaises(ValueError, files.secure_vhost_socket, path,
                              ROOT_GROUP, 0o660)
        self.assertTrue(os.path.exists(good))

    def test_rpc_socket_names(self):
        for path in (os.path.join(self.dir, 'spdk'), 'spdk.sock',
                     os.path.join(self.dir, '.sock')):
            self.assertRaises(ValueError, files.set_up_rpc_dir, path, 0)
        for gid in (-1, True, '0', None):
            self.assertRaises(ValueError, files.set_up_rpc_dir,
                              os.path.join(self.dir, 'rpc', 'spdk.sock'),
                              gid)
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'rpc')))


class TestDirectories(base.InProcessTestCase):
    def test_socket_dir_is_made_with_its_parents(self):
        path = os.path.join(self.dir, 'a', 'sockets')
        files.set_up_socket_dir(path, OTHER_GROUP.gr_name)
        st = os.stat(path)
        self.assertEqual((0, OTHER_GROUP.gr_gid, 0o750),
                         (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))

    def test_an_existing_socket_dir_is_set_up_again(self):
        path = os.path.join(self.dir, 'sockets')
        os.mkdir(path, 0o777)
        make_socket(os.path.join(path, 'vhost-' + base.VOLUME))
        files.set_up_socket_dir(path, OTHER_GROUP.gr_name)
        st = os.stat(path)
        self.assertEqual((OTHER_GROUP.gr_gid, 0o750),
                         (st.st_gid, stat.S_IMODE(st.st_mode)))

    def test_a_directory_with_strangers_is_left_alone(self):
        path = os.path.join(self.dir, 'etc')
        os.mkdir(path, 0o755)
        open(os.path.join(path, 'passwd'), 'w').close()
        exc = self.assertRaises(spdk_exc.UnsafePath, files.set_up_socket_dir,
                                path, OTHER_GROUP.gr_name)
        self.assertIn('passwd', str(exc))
        rpc_socket = os.path.join(path, 'spdk.sock')
        self.assertRaises(spdk_exc.UnsafePath, files.set_up_rpc_dir,
                          rpc_socket, OTHER_GROUP.gr_gid)
        st = os.stat(path)
        self.assertEqual((0, 0o755), (st.st_gid, stat.S_IMODE(st.st_mode)))

    def test_a_directory_set_up_already_may_hold_other_sockets(self):
        # Nothing changes: an operator's own vhost controller may have its
        # socket there.
        path = os.path.join(self.dir, 'sockets')
        files.set_up_socket_dir(path, OTHER_GROUP.gr_name)
        make_socket(os.path.join(path, 'operator-disk'))
        files.set_up_socket_dir(path, OTHER_GROUP.gr_name)
        # A change is refused while it does.
        self.assertRaises(spdk_exc.UnsafePath, files.set_up_socket_dir, path,
                          ROOT_GROUP)
        self.assertEqual(OTHER_GROUP.gr_gid, os.stat(path).st_gid)

    def test_a_symlink_on_the_way_is_not_followed(self):
        target = os.path.join(self.dir, 'target')
        os.mkdir(target, 0o755)
        os.symlink(target, os.path.join(self.dir, 'link'))
        for path in (os.path.join(self.dir, 'link'),
                     os.path.join(self.dir, 'link', 'sockets')):
            self.assertRaises(spdk_exc.UnsafePath, files.set_up_socket_dir,
                              path, OTHER_GROUP.gr_name)
        self.assertEqual([], os.listdir(target))
        self.assertEqual(0o755, stat.S_IMODE(os.stat(target).st_mode))

    def test_rpc_dir_may_hold_its_socket_and_lock(self):
        rpc = os.path.join(self.dir, 'rpc')
        os.mkdir(rpc)
        make_socket(os.path.join(rpc, 'spdk.sock'))
        open(os.path.join(rpc, 'spdk.sock.lock'), 'w').close()
        files.set_up_rpc_dir(os.path.join(rpc, 'spdk.sock'),
                             OTHER_GROUP.gr_gid)
        st = os.stat(rpc)
        self.assertEqual((0, OTHER_GROUP.gr_gid, 0o750),
                         (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
        # Another socket's directory is not this one's.
        self.assertRaises(spdk_exc.UnsafePath, files.set_up_rpc_dir,
                          os.path.join(rpc, 'other.sock'), 0)


class TestVhostSockets(base.InProcessTestCase):
    def setUp(self):
        super().setUp()
        self.sockets = os.path.join(self.dir, 'sockets')
        os.mkdir(self.sockets, 0o750)
        self.path = os.path.join(self.sockets, 'vhost-' + base.VOLUME)

    def test_secure_sets_group_and_mode(self):
        make_socket(self.path)
        files.secure_vhost_socket(self.path, OTHER_GROUP.gr_name, 0o660)
        st = os.stat(self.path)
        self.assertEqual((0, OTHER_GROUP.gr_gid, 0o660),
                         (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))

    def test_mode_and_removal(self):
        self.assertFalse(files.set_vhost_socket_mode(self.path, 0))
        self.assertFalse(files.remove_vhost_socket(self.path))
        make_socket(self.path)
        self.assertTrue(files.set_vhost_socket_mode(self.path, 0))
        self.assertEqual(0, stat.S_IMODE(os.stat(self.path).st_mode))
        self.assertTrue(files.remove_vhost_socket(self.path))
        self.assertFalse(os.path.exists(self.path))

    def test_a_symlink_or_file_of_the_name_is_not_touched(self):
        victim = os.path.join(self.dir, 'victim')
        with open(victim, 'w') as f:
            f.write('x')
        os.chmod(victim, 0o644)
        os.symlink(victim, self.path)
        self.assertRaises(spdk_exc.UnsafePath, files.secure_vhost_socket,
                          self.path, OTHER_GROUP.gr_name, 0o660)
        self.assertRaises(spdk_exc.UnsafePath, files.set_vhost_socket_mode,
                          self.path, 0)
        st = os.stat(victim)
        self.assertEqual((0, 0o644), (st.st_gid, stat.S_IMODE(st.st_mode)))
        os.unlink(self.path)
        os.link(victim, self.path)
        self.assertRaises(spdk_exc.UnsafePath, files.secure_vhost_socket,
                          self.path, OTHER_GROUP.gr_name, 0o660)
        self.assertEqual(0o644, stat.S_IMODE(os.stat(victim).st_mode))

    def test_a_directory_of_the_name_is_not_removed(self):
        os.mkdir(self.path)
        self.assertRaises(spdk_exc.UnsafePath, files.remove_vhost_socket,
                          self.path)
        self.assertTrue(os.path.isdir(self.path))

    def test_a_directory_others_may_change_is_refused(self):
        make_socket(self.path)
        os.chmod(self.sockets, 0o770)
        self.assertRaises(spdk_exc.UnsafePath, files.secure_vhost_socket,
                          self.path, OTHER_GROUP.gr_name, 0o660)
        os.chmod(self.sockets, 0o750)
        os.chown(self.sockets, 65534, -1)
        self.assertRaises(spdk_exc.UnsafePath, files.remove_vhost_socket,
                          self.path)
        self.assertTrue(os.path.exists(self.path))


class TestInTheDaemon(base.UnprivilegedDaemonTestCase):
    """Through a daemon without capabilities: the checks run there."""

    def test_refusals_cross_the_channel(self):
        self.assertRaises(ValueError, files.set_up_socket_dir, 'relative',
                          ROOT_GROUP)
        self.assertRaises(ValueError, files.set_vhost_socket_mode,
                          '/etc/shadow', 0)
        path = os.path.join(self.dir, 'vhost-' + base.VOLUME)
        os.symlink('/etc/passwd', path)
        self.assertRaises(spdk_exc.UnsafePath, files.set_vhost_socket_mode,
                          path, 0)
        self.assertNotEqual(0, stat.S_IMODE(os.stat('/etc/passwd').st_mode))

    def test_a_socket_mode_is_set_by_the_daemon(self):
        # The daemon's uid owns the file: no capability is needed.
        path = make_socket(os.path.join(self.dir, 'vhost-' + base.VOLUME))
        self.assertTrue(files.set_vhost_socket_mode(path, 0o600))
        self.assertEqual(0o600, stat.S_IMODE(os.stat(path).st_mode))
        self.assertTrue(files.remove_vhost_socket(path))
        self.assertFalse(os.path.exists(path))
