"""What /proc says of this process' own sockets."""

import os
import socket

import fixtures

from tests import base
from vhost_target.privileged import procfs


class TestProcfs(base.TestCase):
    def test_listener_and_its_accepted_connection(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 's')
        listener = socket.socket(socket.AF_UNIX)
        self.addCleanup(listener.close)
        listener.bind(path)
        listener.listen(1)
        client = socket.socket(socket.AF_UNIX)
        self.addCleanup(client.close)
        client.connect(path)
        accepted, _ = listener.accept()
        self.addCleanup(accepted.close)
        listening, connected = procfs.unix_sockets(path)
        held = procfs.socket_fds(os.getpid())
        self.assertEqual({os.fstat(listener.fileno()).st_ino}, listening)
        self.assertIn(os.fstat(accepted.fileno()).st_ino, connected)
        self.assertEqual(accepted.fileno(),
                         held[os.fstat(accepted.fileno()).st_ino])
        self.assertTrue(procfs.listens_on(os.getpid(), path))
        self.assertFalse(procfs.listens_on(os.getpid(), path + 'x'))

    def test_pid_and_start_time(self):
        self.assertIsNotNone(procfs.start_time(os.getpid()))
        for bad in (1, 0, -5, True, '12'):
            self.assertRaises(ValueError, procfs.check_pid, bad)
