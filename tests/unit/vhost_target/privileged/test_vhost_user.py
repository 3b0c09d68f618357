"""Ending the vhost-user sessions of one socket: what the entrypoint
refuses, and a session of this process' own ended for real.
"""

import os
import socket

from spdk_common import exception as spdk_exc
from tests.unit.vhost_target import privileged as base
from vhost_target.privileged import vhost_user


class TestArguments(base.InProcessTestCase):
    def test_socket_paths(self):
        good = '/var/lib/spdk-vhost-target/sockets/vhost-' + base.VOLUME
        self.assertEqual(good, vhost_user.check_socket_path(good))
        for path in ('sockets/vhost-' + base.VOLUME,
                     '/s/../vhost-' + base.VOLUME,
                     '/s/./vhost-' + base.VOLUME,
                     '/s//vhost-' + base.VOLUME,
                     '/s/vhost-' + base.VOLUME.upper(),
                     '/s/vhost-' + base.VOLUME + '/',
                     '/s/vhost-' + base.VOLUME[:-1],
                     '/s/spdk.sock', '/etc/shadow', '', None,
                     os.fsencode('/s/vhost-' + base.VOLUME)):
            self.assertRaises(ValueError, vhost_user.check_socket_path, path)

    def test_pids(self):
        path = os.path.join(self.dir, 'vhost-' + base.VOLUME)
        for pid in (0, 1, -5, True, '123', 12.0, None):
            self.assertRaises(ValueError, vhost_user.disconnect_sessions,
                              pid, path)
        self.assertRaises(ValueError, vhost_user.disconnect_sessions,
                          os.getpid(), os.path.join(self.dir, 'spdk.sock'))


class TestSessions(base.InProcessTestCase):
    def setUp(self):
        super().setUp()
        self.path = os.path.join(self.dir, 'vhost-' + base.VOLUME)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(2)
        self.addCleanup(self.listener.close)

    def test_sessions_of_the_listener_are_shut_down(self):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.connect(self.path)
        accepted, _ = self.listener.accept()
        self.addCleanup(accepted.close)
        self.assertEqual(1, vhost_user.disconnect_sessions(os.getpid(),
                                                           self.path))
        # The guest's side sees the end, as QEMU does.
        self.assertEqual(b'', client.recv(1))
        # Once the server closed it, the session is no longer counted.
        accepted.close()
        self.assertEqual(0, vhost_user.disconnect_sessions(os.getpid(),
                                                           self.path))

    def test_refused_for_a_process_that_does_not_listen(self):
        self.assertRaises(spdk_exc.SessionsError,
                          vhost_user.disconnect_sessions, os.getppid(),
                          self.path)
