"""SPDK tier: ``spdk-vhost-target run`` as operators run it, killed and
restarted: it takes over the SPDK vhost an earlier run started instead of
starting a second one, and a kill at any point of attach or detach
converges on the next start (SPDK objects, sockets, key files and
attachments.json agree, nothing is left over).
"""

import grp
import json
import os
import signal
import subprocess
import sys
import time

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import oslo_messaging as messaging

from spdk_common import exception as spdk_exc
from spdk_common import rpc
from tests.fixtures import hugepages
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import rabbitmq
from tests.fixtures import spdk as spdk_fixtures
from tests.functional.cinder_driver import scenarios
from tests.spdk import base as spdk_base
from vhost_target import rpcapi
from vhost_target import supervisor
from vhost_target import topology
from vhost_target import vhost

HOST = 'compute-test'
SPDK_MIB = 256


class DaemonMixin:
    """Runs the agent as a process of its own with a config file, against
    a private RabbitMQ; the test talks to it as nova-compute does.
    """

    socket_group = None

    def spdk_pids(self):
        return spdk_fixtures.pids_serving(self.rpc_socket)

    def setup_daemon(self):
        if not spdk_fixtures.spdk_available('vhost'):
            self.skipTest(spdk_fixtures.SKIP_MESSAGE)
        broker = self.useFixture(rabbitmq.RabbitMQ())
        top = self.top = self.useFixture(fixtures.TempDir()).path
        libvirt_fixtures.make_traversable(top)
        self.rpc_socket = os.path.join(top, 'rpc', 'spdk.sock')
        self.state_dir = os.path.join(top, 'state')
        self.socket_dir = os.path.join(top, 'sockets')
        self.config_file = os.path.join(top, 'agent.conf')
        cpus = sorted(topology.read_topology().online)
        hugepages.reserve(SPDK_MIB, 'SPDK vhost of the agent daemon')
        with open(self.config_file, 'w') as f:
            f.write('[DEFAULT]\nhost = %s\ntransport_url = %s\n'
                    'log_file = %s\ndebug = true\n'
                    '[spdk_vhost_target]\nrpc_socket = %s\n'
                    'socket_dir = %s\nstate_dir = %s\nsocket_group = %s\n'
                    'reactor_cpus = %d\nhugepage_mib_per_node = %d\n'
                    'reconnect_delay_sec = 1\nhost_nqn = %s\n' % (
                        HOST, broker.url, os.path.join(top, 'agent.log'),
                        self.rpc_socket, self.socket_dir, self.state_dir,
                        self.socket_group
                        or grp.getgrgid(os.getgid()).gr_name,
                        cpus[-1], SPDK_MIB, scenarios.HOST_NQN))
        self.daemons = []
        self.addCleanup(self.kill_everything)
        conf = self.useFixture(config_fixture.Config(cfg.CONF)).conf
        rpcapi.get_transport(conf).cleanup()  # registers its options
        conf.set_override('transport_url', broker.url)
        transport = rpcapi.get_transport(conf)
        self.addCleanup(transport.cleanup)
        self.client = rpcapi.VhostTargetClient(transport, HOST, timeout=60)
        # For calls that kill the agent: it never answers them.
        self.doomed_client = rpcapi.VhostTargetClient(transport, HOST,
                                                      timeout=3)
        self.spdk = rpc.SPDKClient(self.rpc_socket, timeout=30)
        self.addCleanup(self.spdk.close)

    def start_daemon(self, crash_at=None):
        # One agent per host: the one before stops first (SIGTERM, which
        # leaves SPDK running).
        for daemon in self.daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(60)
        env = dict(os.environ)
        env.pop(vhost.CRASH_AT_ENV, None)
        if crash_at:
            env[vhost.CRASH_AT_ENV] = crash_at
        with open(os.path.join(self.top, 'daemon.out'), 'ab') as out:
            daemon = subprocess.Popen(
                [sys.executable, '-m', 'vhost_target.cmd', '--config-file',
                 self.config_file, 'run'], stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.daemons.append(daemon)
        self.wait_for_agent(daemon)
        return daemon

    def wait_for_agent(self, daemon):
        # A request sent before the daemon's queue exists is dropped by the
        # broker: ask again until the daemon answers.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and daemon.poll() is None:
            try:
                return self.client.get_status(timeout=3)
            except messaging.MessagingTimeout:
                pass
        self.fail('the agent did not answer (exit status %s):\n%s' % (
            daemon.poll(), self.logs()))

    def logs(self):
        logs = []
        for name in ('daemon.out', 'agent.log'):
            path = os.path.join(self.top, name)
            if os.path.exists(path):
                with open(path, errors='replace') as f:
                    logs.append(f.read()[-4000:])
        return '\n'.join(logs)

    def command(self, *args):
        return subprocess.run(
            [sys.executable, '-m', 'vhost_target.cmd', '--config-file',
             self.config_file] + list(args), capture_output=True, text=True,
            timeout=120)

    def kill_everything(self):
        for daemon in self.daemons:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        for pid in self.spdk_pids():
            started = supervisor.process_start_time(pid)
            os.kill(pid, signal.SIGKILL)
            supervisor.wait_for_exit(pid, started, 30)

    def leftovers(self):
        """Everything an attach makes, as SPDK and the disk show it."""
        call = self.spdk.call
        keys_dir = os.path.join(self.state_dir, 'keys')
        try:
            with open(os.path.join(self.state_dir,
                                   'attachments.json')) as f:
                desired = sorted(a['volume_id']
                                 for a in json.load(f)['attachments'])
        except FileNotFoundError:
            desired = []
        return {
            'nvme': sorted(c['name'] for c in
                           call('bdev_nvme_get_controllers')),
            'vhost': sorted(c['ctrlr'] for c in
                            call('vhost_get_controllers')),
            'keyring': sorted(k['name'] for k in call('keyring_get_keys')),
            'sockets': sorted(os.listdir(self.socket_dir)),
            'key files': (sorted(os.listdir(keys_dir))
                          if os.path.isdir(keys_dir) else []),
            'state': desired,
        }

    def attached(self, volume_id):
        """What leftovers() shows for one whole attachment with a key."""
        return {'nvme': [volume_id], 'vhost': ['vhost-' + volume_id],
                'keyring': ['dhchap-' + volume_id],
                'sockets': ['vhost-' + volume_id],
                'key files': ['dhchap-' + volume_id], 'state': [volume_id]}


NOTHING = {'nvme': [], 'vhost': [], 'keyring': [], 'sockets': [],
           'key files': [], 'state': []}


class TestTakeover(DaemonMixin, spdk_base.OnRealSPDK,
                   scenarios.DriverTestBase, scenarios.CinderTestCase):
    """A restarted agent keeps the SPDK that serves the guests."""

    def target_port(self):
        return 4533

    def setUp(self):
        super().setUp()
        self.setup_daemon()

    def test_sigterm_leaves_spdk_serving_and_the_next_run_takes_it_over(self):
        daemon = self.start_daemon()
        spdk_pid, = self.spdk_pids()
        volume, info = self.exported_vhost_volume()
        path = self.client.attach_volume(volume.id, info)
        daemon.send_signal(signal.SIGTERM)
        self.assertEqual(0, daemon.wait(60))
        # SPDK kept serving: same process, the controller still there.
        self.assertEqual([spdk_pid], self.spdk_pids())
        self.assertEqual(['vhost-' + volume.id], [
            c['ctrlr'] for c in self.spdk.call('vhost_get_controllers')])
        socket_inode = os.stat(path).st_ino
        self.start_daemon()
        self.assertEqual([spdk_pid], self.spdk_pids())
        self.assertEqual(socket_inode, os.stat(path).st_ino)
        status = self.client.get_status()
        self.assertEqual([volume.id],
                         [a['volume_id'] for a in status['attachments']])
        self.assertEqual([], status['problems'])
        self.client.detach_volume(volume.id)
        # The operator's explicit stop takes SPDK with it.
        result = self.command('stop', '--with-spdk')
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.assertIn('Stopped SPDK vhost, pid %d' % spdk_pid, result.stdout)
        self.assertEqual([], self.spdk_pids())
        self.assertRaises(spdk_exc.SPDKUnavailable,
                          rpc.SPDKClient(self.rpc_socket, timeout=2).call,
                          'spdk_get_version')

    def test_kill_9_of_the_agent_then_start_takes_over(self):
        daemon = self.start_daemon()
        spdk_pid, = self.spdk_pids()
        volume, info = self.exported_vhost_volume()
        self.client.attach_volume(volume.id, info)
        daemon.kill()
        daemon.wait()
        self.start_daemon()
        # One SPDK, the same: no second one fighting over hugepages.
        self.assertEqual([spdk_pid], self.spdk_pids())
        self.assertEqual([volume.id], [
            a['volume_id'] for a in self.client.get_status()['attachments']])
        self.assertIn('Took over SPDK vhost pid %d' % spdk_pid, self.logs())
        # The supervisor watches the SPDK it took over: a crash of it is
        # noticed (it is not the new agent's child) and replayed.
        os.kill(spdk_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = self.spdk_pids()
            if pids and pids != [spdk_pid] and self.spdk_has(volume.id):
                break
            time.sleep(0.1)
        self.assertNotIn(spdk_pid, self.spdk_pids())
        self.assertEqual(1, len(self.spdk_pids()))
        self.assertTrue(self.spdk_has(volume.id))

    def spdk_has(self, volume_id):
        try:
            self.spdk.close()
            return ['vhost-' + volume_id] == [
                c['ctrlr'] for c in self.spdk.call('vhost_get_controllers')]
        except spdk_exc.SPDKException:
            return False

    def test_a_socket_another_process_serves_is_left_alone(self):
        # An SPDK the agent did not start (no pid file names it) serves
        # the RPC socket: the agent refuses to start and deletes nothing.
        daemon = self.start_daemon()
        spdk_pid, = self.spdk_pids()
        daemon.kill()
        daemon.wait()
        os.unlink(os.path.join(self.state_dir, 'spdk-vhost.pid'))
        result = subprocess.run(
            [sys.executable, '-m', 'vhost_target.cmd', '--config-file',
             self.config_file, 'run'], capture_output=True, text=True,
            timeout=120)
        self.assertNotEqual(0, result.returncode)
        self.assertIn('is served by process %d, which this agent did not '
                      'start' % spdk_pid, result.stderr + self.logs())
        self.assertEqual([spdk_pid], self.spdk_pids())
        self.assertIn('version', self.spdk.call('spdk_get_version'))


class TestCrashOnly(DaemonMixin, spdk_base.OnRealSPDK,
                    scenarios.DriverTestBase, scenarios.CinderTestCase):
    """The agent SIGKILLs itself at a point inside attach or detach (the
    crash points of vhost_target.vhost.crash_point); the next start
    converges: an attach that never answered leaves nothing, a detach that
    never answered leaves the attachment whole (the caller retries it).
    Volumes carry a DH-HMAC-CHAP key, so keyring entries and key files
    are part of what must agree.
    """

    def target_port(self):
        return 4534

    def driver_flags(self):
        return {'spdk_dhchap': True,
                'spdk_keyring_dir': os.path.join(
                    self.useFixture(fixtures.TempDir()).path, 'keys')}

    def setUp(self):
        super().setUp()
        self.setup_daemon()

    def crash(self, point, call):
        daemon = self.start_daemon(crash_at=point)
        self.assertRaises(messaging.MessagingTimeout, call)
        self.assertEqual(-signal.SIGKILL, daemon.wait(30), point)
        self.start_daemon()
        self.assertEqual([], self.client.get_status()['problems'], point)

    def test_kills_inside_attach_and_detach_converge(self):
        # Not the agent's: an operator's controller under another name,
        # which reconciling must leave alone.
        first = self.start_daemon()
        first.kill()
        first.wait()
        self.spdk.call('bdev_malloc_create', {
            'name': 'operator-bdev', 'num_blocks': 2048, 'block_size': 512})
        self.spdk.call('vhost_create_blk_controller', {
            'ctrlr': 'operator-disk', 'dev_name': 'operator-bdev'})
        spdk_pid, = self.spdk_pids()

        def agents():
            found = self.leftovers()
            found['vhost'].remove('operator-disk')
            found['sockets'].remove('operator-disk')
            return found
        for point in ('attach:nvme-connected', 'attach:vhost-created',
                      'attach:before-state-write'):
            volume, info = self.exported_vhost_volume()
            self.crash(point, lambda: self.doomed_client.attach_volume(
                volume.id, info))
            self.assertEqual(NOTHING, agents(), point)
        for point in ('detach:vhost-deleted', 'detach:nvme-detached',
                      'detach:before-state-write'):
            volume, info = self.exported_vhost_volume()
            self.start_daemon()
            self.client.attach_volume(volume.id, info)
            self.assertEqual(self.attached(volume.id), agents(), point)
            self.crash(point, lambda: self.doomed_client.detach_volume(
                volume.id))
            # Still attached as far as the caller knows (its detach
            # failed): the whole chain is back.
            self.assertEqual(self.attached(volume.id), agents(), point)
            self.client.detach_volume(volume.id)
            self.assertEqual(NOTHING, agents(), point)
        # All along one SPDK, taken over by each start.
        self.assertEqual([spdk_pid], self.spdk_pids())
        self.assertIn('operator-disk', [
            c['ctrlr'] for c in self.spdk.call('vhost_get_controllers')])
