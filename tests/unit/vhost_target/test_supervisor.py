"""How the supervisor tells its own SPDK from anything else: pid files
with start times, the RPC socket's listener, and never deleting a socket
someone listens on.
"""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from unittest import mock

import fixtures

from spdk_common import exception as spdk_exc
from spdk_common import memory
from spdk_common import rpc
from tests import base
from tests.fixtures import fake_spdk
from tests.unit import vhost_target as helpers
from vhost_target.privileged import spdk as privileged_spdk
from vhost_target import supervisor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


class TestIdentity(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def test_start_time_of_a_live_and_a_gone_process(self):
        with open('/proc/self/stat') as f:
            expected = int(f.read().rsplit(')', 1)[1].split()[19])
        self.assertEqual(expected, supervisor.process_start_time(os.getpid()))
        child = subprocess.Popen(['true'])
        child.wait()
        self.assertIsNone(supervisor.process_start_time(child.pid))

    def test_a_zombie_is_not_alive(self):
        child = subprocess.Popen(['true'])
        self.addCleanup(child.wait)
        supervisor.wait_for_exit(child.pid, supervisor.process_start_time(
            child.pid) or 0, 5)
        self.assertIsNone(supervisor.process_start_time(child.pid))

    def test_pid_file_names_only_the_process_it_recorded(self):
        path = os.path.join(self.dir, 'spdk.pid')
        supervisor.write_pid_file(path, os.getpid())
        self.assertEqual(0o600, os.stat(path).st_mode & 0o777)
        self.assertEqual(os.getpid(), supervisor.read_live_pid(path))
        # The same pid with another start time: the pid was reused.
        with open(path) as f:
            record = json.load(f)
        record['start_time'] += 1
        with open(path, 'w') as f:
            json.dump(record, f)
        self.assertIsNone(supervisor.read_live_pid(path))
        for text in ('', 'garbage', '{"pid": "x"}', '[]'):
            with open(path, 'w') as f:
                f.write(text)
            self.assertIsNone(supervisor.read_live_pid(path), text)
        os.unlink(path)
        self.assertIsNone(supervisor.read_live_pid(path))

    def test_socket_owner(self):
        path = os.path.join(self.dir, 'spdk.sock')
        self.assertEqual(('absent', None), supervisor.socket_owner(path))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        self.assertEqual(('live', os.getpid()),
                         supervisor.socket_owner(path))
        listener.close()
        # The file stays when its listener is gone: stale.
        self.assertEqual(('stale', None), supervisor.socket_owner(path))
        os.unlink(path)
        open(path, 'w').close()
        self.assertEqual(('stale', None), supervisor.socket_owner(path))

    def test_wait_for_exit(self):
        child = subprocess.Popen(['sleep', '30'])
        started = supervisor.process_start_time(child.pid)
        self.assertFalse(supervisor.wait_for_exit(child.pid, started, 0.2))
        child.kill()
        self.assertTrue(supervisor.wait_for_exit(child.pid, started, 5))
        child.wait()
        # A pid that now names another process (or none) is gone too.
        self.assertTrue(supervisor.wait_for_exit(os.getpid(), started, 5))


class TestStart(base.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.conf = helpers.make_conf(
            self, rpc_socket=os.path.join(self.dir, 'rpc', 'spdk.sock'),
            socket_dir=os.path.join(self.dir, 'sockets'),
            state_dir=os.path.join(self.dir, 'state'), socket_group='root',
            spdk_vhost_binary='/bin/true')
        os.makedirs(os.path.join(self.dir, 'rpc'))
        self.spawn = subprocess.Popen
        # SPDK is started by the privsep daemon; not here.
        self.popen = self.useFixture(fixtures.MockPatchObject(
            privileged_spdk, 'start_vhost')).mock
        self.plan = mock.Mock(startup_config={})

    def keeper(self):
        return supervisor.Supervisor(self.conf, self.plan, on_ready=None)

    def test_a_live_socket_of_another_process_is_never_deleted(self):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.conf.rpc_socket)
        listener.listen(1)
        self.addCleanup(listener.close)
        exc = self.assertRaises(spdk_exc.SupervisorError,
                                self.keeper().start)
        self.assertIn('is served by process %d, which this agent did not '
                      'start' % os.getpid(), str(exc))
        self.assertTrue(os.path.exists(self.conf.rpc_socket))
        self.popen.assert_not_called()

    def test_a_stale_socket_is_removed_before_spdk_starts(self):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.conf.rpc_socket)
        listener.close()
        open(self.conf.rpc_socket + '.lock', 'w').close()
        self.popen.return_value = os.getpid()
        keeper = self.keeper()
        with mock.patch.object(keeper, '_wait_for_rpc',
                               side_effect=RuntimeError('stop here')):
            self.assertRaises(RuntimeError, keeper.start)
        self.assertFalse(os.path.exists(self.conf.rpc_socket))
        self.assertFalse(os.path.exists(self.conf.rpc_socket + '.lock'))
        self.popen.assert_called_once()
        # The SPDK started is recorded at once, with its start time.
        self.assertEqual(os.getpid(), supervisor.read_live_pid(
            supervisor.pid_file_path(self.conf)))

    def test_a_pid_file_of_a_gone_process_is_not_taken_over(self):
        child = self.spawn(['true'])
        started = supervisor.process_start_time(child.pid)
        child.wait()
        os.makedirs(self.conf.state_dir)
        with open(supervisor.pid_file_path(self.conf), 'w') as f:
            json.dump({'pid': child.pid, 'start_time': started}, f)
        self.assertFalse(self.keeper()._take_over())

    def test_stop_leaves_spdk_running_unless_asked(self):
        child = helpers.spawn_fake_spdk(self.conf.rpc_socket)
        self.addCleanup(lambda: child.kill() or child.wait())
        os.makedirs(self.conf.state_dir)
        supervisor.write_pid_file(supervisor.pid_file_path(self.conf),
                                  child.pid)
        keeper = self.keeper()
        keeper.stop(with_spdk=False)
        self.assertIsNone(child.poll())
        keeper.stop()
        self.assertEqual(-15, child.wait(5))
        self.assertFalse(os.path.exists(supervisor.pid_file_path(self.conf)))


class TestPrivileged(base.TestCase):
    """What the supervisor asks of the privsep daemon, and when."""

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.conf = helpers.make_conf(
            self, rpc_socket=os.path.join(self.dir, 'spdk.sock'),
            state_dir=os.path.join(self.dir, 'state'))
        self.secure = self.useFixture(fixtures.MockPatchObject(
            privileged_spdk, 'secure_rpc_socket')).mock

    def keeper(self):
        keeper = supervisor.Supervisor(self.conf, mock.Mock(), on_ready=None)
        keeper._pid = os.getpid()
        keeper._started = supervisor.process_start_time(os.getpid())
        return keeper

    def test_rpc_socket_secured_once_spdk_made_it(self):
        keeper = self.keeper()
        keeper._secure_rpc_socket()   # not there yet
        self.secure.assert_not_called()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.conf.rpc_socket)
        self.addCleanup(listener.close)
        os.chmod(self.conf.rpc_socket, 0o755)
        keeper._secure_rpc_socket()
        self.secure.assert_called_once_with(
            os.getpid(), self.conf.rpc_socket, os.geteuid())
        self.secure.reset_mock()
        # This user's, 0600 already: nothing to ask.
        os.chmod(self.conf.rpc_socket, 0o600)
        keeper._secure_rpc_socket()
        self.secure.assert_not_called()

    def test_an_adopted_spdk_socket_is_left_alone(self):
        self.conf = helpers.make_conf(
            self, rpc_socket=self.conf.rpc_socket, adopt=True)
        open(self.conf.rpc_socket, 'w').close()
        self.keeper()._secure_rpc_socket()
        self.secure.assert_not_called()

    def test_not_spdk_is_a_supervisor_error_while_it_lives(self):
        open(self.conf.rpc_socket, 'w').close()
        self.secure.side_effect = spdk_exc.NotSPDK('not SPDK')
        keeper = self.keeper()
        self.assertRaises(spdk_exc.SupervisorError,
                          keeper._secure_rpc_socket)
        # Gone meanwhile: the wait's next look tells it, not this.
        keeper._started += 1
        keeper._secure_rpc_socket()

    def test_a_socket_this_process_cannot_probe_is_left_to_the_daemon(self):
        remove = self.useFixture(fixtures.MockPatchObject(
            privileged_spdk, 'remove_stale_rpc_socket')).mock
        keeper = self.keeper()
        with mock.patch.object(supervisor, 'socket_owner',
                               return_value=('live', None)):
            keeper._remove_stale_socket()
            remove.assert_called_once_with(self.conf.rpc_socket)
            remove.side_effect = FileExistsError()
            exc = self.assertRaises(spdk_exc.SupervisorError,
                                    keeper._remove_stale_socket)
        self.assertIn('which this agent did not start', str(exc))


class TestHealthPolls(base.TestCase):
    """The watcher that waits for SPDK's exit also runs the agent's health
    checks, and a failing one does not end it.
    """

    def test_polls_while_spdk_runs_and_notices_its_exit(self):
        conf = helpers.make_conf(self, health_check_interval_sec=0.5)
        child = subprocess.Popen(['sleep', '30'])
        self.addCleanup(lambda: child.poll() is None and (
            child.kill() or child.wait()))
        polls = []

        def poll():
            polls.append(1)
            if len(polls) == 1:
                raise RuntimeError('SPDK did not answer')
            if len(polls) == 3:
                child.kill()
        keeper = supervisor.Supervisor(conf, mock.Mock(), on_ready=None,
                                       on_poll=poll)
        keeper._pid = child.pid
        keeper._started = supervisor.process_start_time(child.pid)
        self.assertTrue(keeper._wait_gone())
        self.assertEqual(3, len(polls))
        child.wait()


def fake_vhost_binary(test):
    """A ``vhost`` program running FakeSPDK's vhost app as a process
    (tests.fixtures.fake_spdk.process): root's, in a directory only root
    may change, as the privsep daemon requires of what it starts.
    """
    directory = test.useFixture(fixtures.TempDir()).path
    path = os.path.join(directory, 'vhost')
    with open(path, 'w') as f:
        f.write('#!%s\nimport sys\nsys.path.insert(0, %r)\n'
                'from tests.fixtures.fake_spdk import process\n'
                'sys.exit(process.main())\n' % (sys.executable, REPO))
    os.chmod(path, 0o755)
    return path


def eventually(look, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not look() and time.monotonic() < deadline:
        time.sleep(0.05)
    return look()


class TestWithFakeSPDK(base.TestCase):
    """The supervisor as the agent runs it, the privsep daemon included,
    with FakeSPDK's vhost app standing in for SPDK's: started, secured,
    watched, restarted after kill -9, taken over, stopped.
    """

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('the privsep daemon starts SPDK as root')
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.conf = self.make_conf()
        self.plan = mock.Mock(
            cpumask='0x1', env_context=None, memory_mib_by_node={0: 64},
            page_size_kib=2048, startup_config=memory.startup_config(
                memory.buffer_pools(256, 1)))
        self.ready = []

    def make_conf(self, **overrides):
        return helpers.make_conf(
            self, rpc_socket=os.path.join(self.dir, 'rpc', 'spdk.sock'),
            socket_dir=os.path.join(self.dir, 'sockets'),
            state_dir=os.path.join(self.dir, 'state'), socket_group='root',
            spdk_vhost_binary=fake_vhost_binary(self), **overrides)

    def keeper(self, **kwargs):
        keeper = supervisor.Supervisor(
            self.conf, self.plan, on_ready=lambda: self.ready.append(1),
            **kwargs)
        self.addCleanup(keeper.stop)
        return keeper

    def version(self):
        client = rpc.SPDKClient(self.conf.rpc_socket, timeout=5)
        try:
            return client.call('spdk_get_version')['version']
        finally:
            client.close()

    def test_starts_restarts_after_kill_9_and_stops(self):
        keeper = self.keeper()
        keeper.start()
        first = keeper.pid
        self.assertEqual(([1], False), (self.ready, keeper.took_over))
        self.assertEqual(first, supervisor.read_live_pid(
            supervisor.pid_file_path(self.conf)))
        self.assertEqual('SPDK v25.09', self.version())
        # Given to the agent's user, for the agent's user only.
        st = os.stat(self.conf.rpc_socket)
        self.assertEqual((os.geteuid(), 0o600),
                         (st.st_uid, stat.S_IMODE(st.st_mode)))
        os.kill(first, signal.SIGKILL)
        self.assertTrue(eventually(lambda: keeper.restarts == 1))
        self.assertNotEqual(first, keeper.pid)
        self.assertEqual([1, 1], self.ready)
        self.assertEqual('SPDK v25.09', self.version())
        second = keeper.pid
        keeper.stop()
        self.assertTrue(supervisor.wait_for_exit(
            second, supervisor.process_start_time(second) or 0, 5))
        self.assertFalse(os.path.exists(supervisor.pid_file_path(self.conf)))
        # SPDK removes its socket when stopped.
        self.assertFalse(os.path.exists(self.conf.rpc_socket))

    def test_a_restarted_agent_takes_its_spdk_over(self):
        first = self.keeper()
        first.start()
        first.stop(with_spdk=False)
        again = self.keeper()
        again.start()
        self.assertEqual((True, first.pid), (again.took_over, again.pid))
        self.assertEqual([1, 1], self.ready)
        self.assertEqual('SPDK v25.09', self.version())

    def test_spdk_failing_its_startup_config_is_reported(self):
        self.plan.startup_config = {'subsystems': [{
            'subsystem': 'bdev', 'config': [{'method': 'no_such_method'}]}]}
        exc = self.assertRaises(spdk_exc.SupervisorError,
                                self.keeper().start)
        self.assertIn('exited with status unknown during start-up', str(exc))
        self.assertIn('Method not found', str(exc))
        self.assertEqual([], self.ready)

    def test_an_adopted_spdk_restarting_is_replayed(self):
        # Someone else's SPDK: here served by this process.
        os.makedirs(os.path.dirname(self.conf.rpc_socket))
        spdk = fake_spdk.FakeSPDK(self.conf.rpc_socket, app='vhost',
                                  vhost_socket_dir=self.conf.socket_dir)
        spdk.start()
        self.addCleanup(spdk.stop)
        self.conf = self.make_conf(adopt=True)
        keeper = self.keeper()
        keeper.start()
        self.assertEqual((None, [1]), (keeper.pid, self.ready))
        spdk.restart()
        self.assertTrue(eventually(lambda: keeper.restarts == 1))
        self.assertEqual([1, 1], self.ready)
        keeper.stop()
        self.assertEqual('SPDK v25.09', self.version())   # left running
