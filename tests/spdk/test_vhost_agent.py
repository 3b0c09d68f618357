"""SPDK tier: the compute-node agent with a real SPDK vhost it supervises,
attaching volumes that the Cinder driver exports from a real nvmf_tgt."""

import base64
import grp
import json
import os
import signal
import stat
import subprocess
import threading
import time
import uuid
import zlib

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import oslo_messaging as messaging

from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import rpc
from tests.fixtures import compute_host
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import net
from tests.fixtures import rabbitmq
from tests.fixtures import service_venv
from tests.fixtures import spdk as spdk_fixtures
from tests.functional.cinder_driver import scenarios
from tests.functional.vhost_target import agent_contract
from tests.spdk import base as spdk_base
from vhost_target import agent as vhost_agent
from vhost_target import config
from vhost_target import rpcapi
from vhost_target import state
from vhost_target import supervisor
from vhost_target import topology

RECOVERY_TIMEOUT = 30.0


class AgentTestBase(spdk_base.OnRealSPDK, scenarios.DriverTestBase,
                    scenarios.CinderTestCase):
    # The group the vhost-user sockets get; None: this process' group.
    socket_group = None
    # Whether the supervisor runs the agent's health checks, as ``run``
    # does (health_check_interval_sec).
    health_checks = False
    agent_notifier = None

    def target_port(self):
        return 4530

    def setUp(self):
        super().setUp()
        if not spdk_fixtures.spdk_available('vhost'):
            self.skipTest(spdk_fixtures.SKIP_MESSAGE)
        top = self.top = self.useFixture(fixtures.TempDir()).path
        libvirt_fixtures.make_traversable(top)
        compute = self.useFixture(compute_host.ComputeHost(
            top, scenarios.HOST_NQN, socket_group=self.socket_group,
            health_checks=self.health_checks,
            notifier=self.agent_notifier))
        self.conf = compute.conf
        self.group = compute.group
        self.host = compute.host
        self.plan = compute.plan
        self.desired = compute.desired
        self.vhost_client = compute.client
        self.vhost = compute.vhost
        self.agent = compute.agent
        self.keeper = compute.keeper

    def serve_rpc(self, host='compute1'):
        """The agent's RPC server on a private RabbitMQ, as ``run`` starts
        it; returns the transport, and keeps the broker's URL in
        ``transport_url``.
        """
        broker = self.useFixture(rabbitmq.RabbitMQ())
        self.transport_url = broker.url
        conf = self.useFixture(config_fixture.Config(cfg.CONF)).conf
        rpcapi.get_transport(conf).cleanup()  # registers its options
        conf.set_override('transport_url', broker.url)
        transport = rpcapi.get_transport(conf)
        self.addCleanup(transport.cleanup)
        server = rpcapi.get_server(transport, host, self.agent)
        server.start()
        self.addCleanup(server.wait)
        self.addCleanup(server.stop)
        return transport

    def make_client(self):
        client = rpc.SPDKClient(self.conf.spdk_vhost_target.rpc_socket,
                                timeout=30)
        self.addCleanup(client.close)
        return client

    def spdk_objects(self):
        return (self.vhost_client.call('vhost_get_controllers'),
                self.vhost_client.call('bdev_nvme_get_controllers'))


class TestVhostAgent(AgentTestBase):

    def test_attach_and_detach_leave_nothing_behind(self):
        volume, info = self.exported_vhost_volume()
        path = self.agent.attach_volume(volume.id, info, numa_nodes=[0])
        mode = os.stat(path)
        self.assertTrue(stat.S_ISSOCK(mode.st_mode))
        self.assertEqual(0o660, stat.S_IMODE(mode.st_mode))
        self.assertEqual(os.getgid(), mode.st_gid)
        vhost_ctrlrs, nvme_ctrlrs = self.spdk_objects()
        self.assertEqual([naming.vhost_controller_name(volume.id)],
                         [c['ctrlr'] for c in vhost_ctrlrs])
        self.assertEqual(self.plan.cpumask, vhost_ctrlrs[0]['cpumask'])
        self.assertEqual([naming.nvme_controller_name(volume.id)],
                         [c['name'] for c in nvme_ctrlrs])
        self.assertEqual(1024 ** 3, self.agent.extend_volume(volume.id))
        # Idempotent: a second attach changes nothing.
        self.assertEqual(path, self.agent.attach_volume(volume.id, info,
                                                        numa_nodes=[0]))
        self.assertEqual(1, len(self.spdk_objects()[0]))
        self.agent.detach_volume(volume.id)
        self.assertEqual(([], []), self.spdk_objects())
        self.assertFalse(os.path.exists(path))
        self.assertEqual([], self.desired.all())
        self.agent.detach_volume(volume.id)  # again: fine

    def test_concurrent_attaches_and_detaches(self):
        volumes = [self.exported_vhost_volume() for _ in range(4)]
        errors = []

        def cycle(volume, info):
            try:
                for _ in range(2):
                    self.agent.attach_volume(volume.id, info)
                    self.agent.attach_volume(volume.id, info)
                    self.agent.detach_volume(volume.id)
                self.agent.attach_volume(volume.id, info)
            except Exception as exc:   # reported below, with its volume
                errors.append((volume.id, exc))
        threads = [threading.Thread(target=cycle, args=pair)
                   for pair in volumes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([], errors)
        vhost_ctrlrs, nvme_ctrlrs = self.spdk_objects()
        self.assertEqual(4, len(vhost_ctrlrs))
        self.assertEqual(4, len(nvme_ctrlrs))
        self.assertEqual(4, len(self.desired.all()))

    def test_extend_reaches_the_compute_node(self):
        volume, info = self.exported_vhost_volume()
        self.agent.attach_volume(volume.id, info)
        self.driver.extend_volume(volume, 2)
        deadline = time.monotonic() + 10
        while (self.agent.extend_volume(volume.id) != 2 * 1024 ** 3
               and time.monotonic() < deadline):
            time.sleep(0.1)
        self.assertEqual(2 * 1024 ** 3, self.agent.extend_volume(volume.id))

    def test_host_not_on_the_acl_is_refused_cleanly(self):
        volume, info = self.exported_vhost_volume()
        self.driver.terminate_connection(volume, self.connector())
        exc = self.assertRaises(spdk_exc.AttachError, self.agent.attach_volume,
                                volume.id, info)
        self.assertIn('host %s is not allowed on it' % scenarios.HOST_NQN,
                      str(exc))
        self.assertEqual(([], []), self.spdk_objects())
        self.assertEqual([], self.desired.all())

    def test_bad_requests(self):
        volume, info = self.exported_vhost_volume()
        bad = [
            ('not a dict', 'not a dict'),
            (dict(info, driver_volume_type='nvmeof'), 'spdk_vhost'),
            (dict(info, data=dict(info['data'], target_nqn='x')),
             'target_nqn'),
            (dict(info, data=dict(info['data'], portals=[('a', 'b')])),
             'portals'),
        ]
        for connection_info, words in bad:
            exc = self.assertRaises(spdk_exc.InvalidAttachRequest,
                                    self.agent.attach_volume, volume.id,
                                    connection_info)
            self.assertIn(words, str(exc))
        exc = self.assertRaises(spdk_exc.InvalidAttachRequest,
                                self.agent.attach_volume, volume.id, info,
                                numa_nodes=[7])
        self.assertIn('NUMA node', str(exc))
        self.assertRaises(spdk_exc.UnknownVolume,
                          self.agent.extend_volume, str(uuid.uuid4()))
        self.assertEqual(([], []), self.spdk_objects())

    def test_kill_9_of_spdk_is_replayed(self):
        volume, info = self.exported_vhost_volume()
        path = self.agent.attach_volume(volume.id, info, numa_nodes=[0])
        os.kill(self.keeper.pid, signal.SIGKILL)
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while self.keeper.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(1, self.keeper.restarts)
        vhost_ctrlrs, nvme_ctrlrs = self.spdk_objects()
        self.assertEqual([naming.vhost_controller_name(volume.id)],
                         [c['ctrlr'] for c in vhost_ctrlrs])
        self.assertEqual(1, len(nvme_ctrlrs))
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))

    def test_agent_restart_replays_its_state_file(self):
        volume, info = self.exported_vhost_volume()
        self.agent.attach_volume(volume.id, info)
        self.keeper.stop()
        desired = state.DesiredState(self.group.state_dir)
        self.assertEqual([volume.id], [a.volume_id for a in desired.load()])
        agent = vhost_agent.VhostAgent(self.vhost, desired, self.plan,
                                       self.host)
        keeper = supervisor.Supervisor(self.group, self.plan,
                                       on_ready=agent.replay)
        self.addCleanup(keeper.stop)
        keeper.start()
        self.assertEqual(1, len(self.spdk_objects()[0]))


class LeftoversMixin:
    def leftovers(self):
        """Everything an attach may create, as SPDK and the disk show it."""
        call = self.vhost_client.call
        keys_dir = os.path.join(self.group.state_dir, 'keys')
        state_file = os.path.join(self.group.state_dir, 'attachments.json')
        try:
            with open(state_file) as f:
                state_text = json.load(f)
        except FileNotFoundError:
            state_text = None
        return {
            'nvme': sorted(c['name'] for c in
                           call('bdev_nvme_get_controllers')),
            'vhost': sorted((c['ctrlr'], c['cpumask']) for c in
                            call('vhost_get_controllers')),
            'keyring': sorted(k['name'] for k in call('keyring_get_keys')),
            'bdevs': sorted((b['name'], json.dumps(
                b.get('assigned_rate_limits'), sort_keys=True))
                for b in call('bdev_get_bdevs')),
            'sockets': sorted(os.listdir(self.group.socket_dir)),
            'key files': (sorted(os.listdir(keys_dir))
                          if os.path.isdir(keys_dir) else []),
            'state': state_text,
        }

    def assert_refused_leaving_nothing(self, label, cls, words, call):
        before = self.leftovers()
        try:
            call()
        except cls as exc:
            self.assertIn(words, str(exc), label)
            error = str(exc)
        else:
            self.fail('%s: no %s' % (label, cls.__name__))
        self.assertEqual(before, self.leftovers(), label)
        return error


class TestBadRequests(LeftoversMixin, AgentTestBase):
    """Requests an attacker (or a bug) could put on the RPC bus: each is
    refused with an error naming its cause, and SPDK (NVMe controllers,
    vhost controllers, keyring, QoS), the socket and key directories and
    the state file are exactly as before.
    """

    def test_bad_requests_leave_everything_as_before(self):
        volume_a, info_a = self.exported_vhost_volume()
        va = volume_a.id
        self.agent.attach_volume(va, info_a, numa_nodes=[0],
                                 qos={'rw_ios_per_sec': 1000})
        volume_b, info_b = self.exported_vhost_volume()
        vb = volume_b.id
        # C's export no longer lets this host in.
        volume_c, info_c = self.exported_vhost_volume()
        vc = volume_c.id
        self.driver.terminate_connection(volume_c, self.connector())
        attach = self.agent.attach_volume

        def data(**changes):
            return dict(info_b, data=dict(info_b['data'], **changes))
        good = dhchap.make_secret()
        raw = base64.b64decode(good.split(':')[2])
        bad_crc = 'DHHC-1:00:%s:' % base64.b64encode(
            raw[:-4] + (zlib.crc32(raw[:-4]) ^ 1).to_bytes(4, 'little')
        ).decode()
        invalid = spdk_exc.InvalidRequest
        cases = [
            ('newline in volume_id', invalid, 'volume_id',
             lambda: attach(vb + '\n', info_b)),
            ('300-character volume_id', invalid, 'volume_id',
             lambda: attach('a' * 300, info_b)),
            ('path volume_id', invalid, "volume_id '../../etc/passwd'",
             lambda: attach('../../etc/passwd', info_b)),
            ('slash volume_id', invalid, "volume_id 'a/b'",
             lambda: attach('a/b', info_b)),
            ('upper-case volume_id', invalid, 'lower-case UUID',
             lambda: attach(vb.upper(), info_b)),
            ('volume_id None', invalid, 'volume_id None',
             lambda: attach(None, info_b)),
            ('portal not an IP', invalid, "'not-an-ip' is not an IPv4",
             lambda: attach(vb, data(portals=[['not-an-ip', 4420, 'tcp']]))),
            ('port 70000', invalid, 'port 70000 is not a port number',
             lambda: attach(vb, data(portals=[['127.0.0.1', 70000, 'tcp']]))),
            ('rdma', invalid, "'rdma' is not tcp",
             lambda: attach(vb, data(portals=[['127.0.0.1', 1, 'rdma']]))),
            ('portals dict', invalid, 'portals', lambda: attach(
                vb, data(portals={'address': '127.0.0.1'}))),
            ('NQN with newline', invalid, 'target_nqn', lambda: attach(
                vb, data(target_nqn=info_b['data']['target_nqn'] + '\n'))),
            ('host NQN int', invalid, 'host_nqn 42',
             lambda: attach(vb, data(host_nqn=42))),
            ('secret format', invalid, 'DHHC-1:0[0-3]',
             lambda: attach(vb, data(dhchap_secret='hunter2'))),
            ('secret CRC', invalid, 'CRC-32',
             lambda: attach(vb, data(dhchap_secret=bad_crc))),
            ('secret type', invalid, 'dhchap_secret',
             lambda: attach(vb, data(dhchap_secret=['x']))),
            ('NUMA bool', invalid, 'numa_nodes[0] True',
             lambda: attach(vb, info_b, numa_nodes=[True])),
            ('NUMA unknown', invalid, 'does not have',
             lambda: attach(vb, info_b, numa_nodes=[7])),
            ('NUMA dict', invalid, 'numa_nodes',
             lambda: attach(vb, info_b, numa_nodes={'0': 0})),
            ('QoS unknown key', invalid, 'bogus',
             lambda: attach(vb, info_b, qos={'bogus': 1})),
            ('QoS negative', invalid, 'qos.rw_ios_per_sec -1000',
             lambda: attach(vb, info_b, qos={'rw_ios_per_sec': -1000})),
            ('QoS huge', invalid, 'beyond',
             lambda: attach(vb, info_b, qos={'rw_mbytes_per_sec': 2 ** 64})),
            ('QoS not a dict', invalid, 'qos',
             lambda: attach(vb, info_b, qos='fast')),
            ('connection_info None', invalid, 'connection_info None',
             lambda: attach(vb, None)),
            ('data a list', invalid, 'connection_info.data',
             lambda: attach(vb, dict(info_b, data=[]))),
            ("another volume's connection_info", invalid, 'vol_uuid',
             lambda: attach(vb, info_a)),
            ('re-attach to another portal', invalid,
             'detach the volume first', lambda: attach(va, dict(
                 info_a, data=dict(info_a['data'], portals=[
                     ['127.0.0.2', self.target_port(), 'tcp']])))),
            ('set_qos unknown key', invalid, 'bogus',
             lambda: self.agent.set_qos(va, {'bogus': 1})),
            ('set_qos float', invalid, 'not an integer',
             lambda: self.agent.set_qos(va, {'rw_ios_per_sec': 1.5})),
            ('set_qos bad id', invalid, 'volume_id',
             lambda: self.agent.set_qos('../x', {})),
            ('extend bad id', invalid, 'volume_id',
             lambda: self.agent.extend_volume('a/b')),
            ('extend unknown', spdk_exc.UnknownVolume, 'not attached',
             lambda: self.agent.extend_volume(str(uuid.uuid4()))),
            ('detach bad id', invalid, 'volume_id',
             lambda: self.agent.detach_volume('../../etc/passwd')),
            # These reach SPDK, which must be left as it was.
            ('nothing listening', spdk_exc.AttachError, 'Connection refused',
             lambda: attach(vb, data(portals=[
                 ['127.0.0.1', net.closed_port(), 'tcp']]))),
            ("another host's NQN", invalid, "is not this host's NQN",
             lambda: attach(vb, data(host_nqn=scenarios.OTHER_NQN))),
            ('host not on the ACL', spdk_exc.AttachError,
             'host %s is not allowed on it' % scenarios.HOST_NQN,
             lambda: attach(vc, info_c)),
            ('unknown subsystem', spdk_exc.AttachError, 'does not exist there',
             lambda: attach(vb, data(
                 target_nqn='nqn.2010-10.org.openstack:volume-%s'
                 % uuid.uuid4()))),
        ]
        for label, cls, words, call in cases:
            error = self.assert_refused_leaving_nothing(label, cls, words,
                                                        call)
            if label == 'nothing listening':
                self.assertNotIn('allowed', error)
                self.assertNotIn('DH-HMAC-CHAP', error)
        # The socket's group and mode are set inside attach's rollback.
        self.conf.set_override('socket_group', 'no-such-group-here',
                               group=config.GROUP)
        self.assert_refused_leaving_nothing(
            'socket group', spdk_exc.AttachError, 'no-such-group-here',
            lambda: attach(vb, info_b))
        self.conf.clear_override('socket_group', group=config.GROUP)
        # An NVMe controller under B's name connected to A's subsystem (an
        # agent that died before it recorded an attach, or an operator's
        # hand) is refused, not taken over; detach removes it.
        # (SPDK allows one controller per subsystem, address and host NQN,
        # so it connects as another host.)
        self.driver.initialize_connection(
            volume_a, self.connector(scenarios.OTHER_NQN))
        self.vhost_client.call('bdev_nvme_attach_controller', {
            'name': vb, 'trtype': 'tcp', 'adrfam': 'ipv4',
            'traddr': '127.0.0.1', 'trsvcid': str(self.target_port()),
            'subnqn': info_a['data']['target_nqn'],
            'hostnqn': scenarios.OTHER_NQN})
        self.assert_refused_leaving_nothing(
            'stale controller', spdk_exc.AttachError,
            'already has an NVMe controller %s connected to %s' % (
                vb, info_a['data']['target_nqn']),
            lambda: attach(vb, info_b))
        self.agent.detach_volume(vb)
        # Detaching a volume this host never had is no error, and changes
        # nothing.
        before = self.leftovers()
        self.agent.detach_volume(str(uuid.uuid4()))
        self.assertEqual(before, self.leftovers())
        # Nothing stale stands in the way of the good requests.
        self.agent.attach_volume(vb, info_b)
        self.assertEqual(1024 ** 3, self.agent.extend_volume(va))
        self.agent.detach_volume(va)
        self.agent.detach_volume(vb)
        self.assertEqual(([], []), self.spdk_objects())


class TestSPDKReplies(AgentTestBase):
    """SPDK v25.09 vhost's replies that VhostTarget relies on (the unit
    tier's double of them is pinned by tests/spdk/test_contract_vhost.py).
    """

    def assert_error(self, code, text, method, params):
        exc = self.assertRaises(spdk_exc.SPDKRPCError,
                                self.vhost_client.call, method, params)
        self.assertEqual((code, text), (exc.code, exc.error), method)

    def test_replies(self):
        volume, info = self.exported_vhost_volume()
        data = info['data']
        params = {'name': volume.id, 'trtype': 'tcp', 'adrfam': 'ipv4',
                  'traddr': '127.0.0.1', 'trsvcid': str(self.target_port()),
                  'subnqn': data['target_nqn'], 'hostnqn': data['host_nqn']}
        eio = 'Input/output error'
        # Every failed connect is the same -EIO: refused TCP connection,
        # unknown subsystem, host not on the ACL (and, in
        # TestAgentDHHMACCHAP, failed authentication).
        self.assert_error(-5, eio, 'bdev_nvme_attach_controller', dict(
            params, trsvcid=str(net.closed_port())))
        self.assert_error(-5, eio, 'bdev_nvme_attach_controller', dict(
            params, subnqn='nqn.2016-06.io.spdk:nope'))
        self.assert_error(-5, eio, 'bdev_nvme_attach_controller', dict(
            params, hostnqn=scenarios.OTHER_NQN))
        # What the agent's validation keeps from SPDK: -ENODEV for them.
        self.assert_error(-19, 'No such device',
                          'bdev_nvme_attach_controller',
                          dict(params, traddr='not-an-ip'))
        self.assert_error(-19, 'No such device',
                          'bdev_nvme_attach_controller',
                          dict(params, trsvcid='70000'))
        self.assert_error(-126, 'Required key not available',
                          'bdev_nvme_attach_controller',
                          dict(params, dhchap_key='no-such-key'))
        self.assertEqual([], self.vhost_client.call(
            'bdev_nvme_get_controllers'))
        # Missing and existing objects.
        self.assert_error(-19, 'No such device',
                          'bdev_nvme_detach_controller', {'name': 'nope'})
        self.assert_error(-32603, 'No such device', 'vhost_get_controllers',
                          {'name': 'nope'})
        self.assert_error(-32602, 'No such device', 'vhost_delete_controller',
                          {'ctrlr': 'nope'})
        self.assert_error(-126, 'Required key not available',
                          'keyring_file_remove_key', {'name': 'nope'})
        key_file = os.path.join(self.top, 'key')
        with open(key_file, 'w') as f:
            f.write(dhchap.make_secret())
        os.chmod(key_file, 0o600)
        self.vhost_client.call('keyring_file_add_key',
                               {'name': 'k', 'path': key_file})
        self.assert_error(-17, 'File exists', 'keyring_file_add_key',
                          {'name': 'k', 'path': key_file})
        self.vhost_client.call('keyring_file_remove_key', {'name': 'k'})
        self.assertEqual([volume.id + 'n1'], self.vhost_client.call(
            'bdev_nvme_attach_controller', params))
        # What VhostTarget checks before it takes over an existing one.
        listed, = self.vhost_client.call('bdev_nvme_get_controllers')
        self.assertEqual(volume.id, listed['name'])
        path, = listed['ctrlrs']
        self.assertEqual(data['target_nqn'], path['trid']['subnqn'])
        self.assertEqual(data['host_nqn'], path['host']['nqn'])
        # The same name again: -EALREADY (the agent then finds it listed).
        self.assert_error(
            -114, 'A controller named %s already exists with the specified '
            'network path' % volume.id, 'bdev_nvme_attach_controller',
            params)
        ctrlr = {'ctrlr': 'vhost-' + volume.id, 'dev_name': volume.id + 'n1'}
        self.vhost_client.call('vhost_create_blk_controller', ctrlr)
        socket_path = os.path.join(self.group.socket_dir, ctrlr['ctrlr'])
        self.assertTrue(stat.S_ISSOCK(os.stat(socket_path).st_mode))
        self.assert_error(-32602, 'File exists',
                          'vhost_create_blk_controller', ctrlr)
        # Deleting the controller unlinks its socket.
        self.vhost_client.call('vhost_delete_controller',
                               {'ctrlr': ctrlr['ctrlr']})
        self.assertFalse(os.path.exists(socket_path))
        self.vhost_client.call('bdev_nvme_detach_controller',
                               {'name': volume.id})


class TestAgentContract(agent_contract.AgentContract, AgentTestBase):
    """The contract the functional tier's stand-in also keeps."""

    def served_volume(self):
        volume, info = self.exported_vhost_volume()
        return volume.id, info


class TestAgentOverRabbitMQ(AgentTestBase):
    """Nova's view: the RPC client on the topic, server=host."""

    def test_attach_and_detach_through_rpc(self):
        transport = self.serve_rpc()
        client = rpcapi.VhostTargetClient(transport, 'compute1', timeout=60)
        volume, info = self.exported_vhost_volume()
        path = client.attach_volume(volume.id, info, numa_nodes=[0])
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        status = client.get_status()
        self.assertEqual([volume.id],
                         [a['volume_id'] for a in status['attachments']])
        self.assertEqual(1, status['spdk']['vhost_controllers'])
        other = str(uuid.uuid4())
        info['data'].update(
            target_nqn='nqn.2010-10.org.openstack:volume-%s' % other,
            vol_uuid=other)
        self.assertRaises(spdk_exc.AttachError, client.attach_volume, other,
                          info)
        info['data']['host_nqn'] = scenarios.OTHER_NQN
        self.assertRaises(spdk_exc.InvalidRequest, client.attach_volume,
                          other, info)
        client.detach_volume(volume.id)
        self.assertEqual(([], []), self.spdk_objects())


class TestGuestSurvivesSPDKCrash(AgentTestBase):
    """A TCG guest on shared hugepages writes through vhost-user; SPDK vhost
    is killed with SIGKILL; the agent restarts and replays it, QEMU
    reconnects, and the guest reads back what it wrote.
    """

    socket_group = 'libvirt-qemu'

    def setUp(self):
        self.guest = self.useFixture(guest_fixtures.Guest())
        self.libvirt = self.useFixture(libvirt_fixtures.Libvirtd())
        super().setUp()

    def guest_console(self, vhost_socket):
        return libvirt_fixtures.boot_vhost_user_guest(
            self, self.libvirt, self.guest, self.top, vhost_socket)[1]

    def guest_run(self, console, command):
        status, output = console.run(command)
        self.assertEqual(0, status, output)
        return output

    def test_guest_sees_an_online_extend(self):
        volume, info = self.exported_vhost_volume()
        path = self.agent.attach_volume(volume.id, info, numa_nodes=[0])
        console = self.guest_console(path)
        self.assertEqual('2097152', self.guest_run(
            console, 'cat /sys/block/vda/size').strip())
        self.driver.extend_volume(volume, 2)
        # NVMe namespace-change notice to SPDK's initiator, then a virtio
        # config change from SPDK vhost to the guest.
        self.guest_run(console, 'i=0; until [ "$(cat /sys/block/vda/size)" '
                       '= 4194304 ]; do i=$((i+1)); [ $i -gt 100 ] && exit 1;'
                       ' sleep 0.2; done')
        self.assertEqual(2 * 1024 ** 3, self.agent.extend_volume(volume.id))

    def test_write_kill_9_replay_read(self):
        volume, info = self.exported_vhost_volume()
        path = self.agent.attach_volume(volume.id, info, numa_nodes=[0])
        console = self.guest_console(path)
        self.assertIn('1073741824', self.guest_run(
            console, 'blockdev --getsize64 /dev/vda'))
        written = self.guest_run(
            console, 'dd if=/dev/urandom of=/p bs=1M count=4 2>/dev/null && '
            'dd if=/p of=/dev/vda bs=1M count=4 conv=fsync 2>/dev/null && '
            'sha256sum /p').split()[0]
        crashed = time.monotonic()
        os.kill(self.keeper.pid, signal.SIGKILL)
        deadline = crashed + RECOVERY_TIMEOUT
        while self.keeper.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(1, self.keeper.restarts)
        # The guest's next I/O goes through the replayed controller.
        self.guest_run(console, 'dd if=/dev/urandom of=/dev/vda bs=1M '
                       'count=1 seek=8 conv=fsync 2>/dev/null')
        read = self.guest_run(
            console, 'echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda '
            'bs=1M count=4 2>/dev/null | sha256sum').split()[0]
        self.assertEqual(written, read)


class TestAgentDHHMACCHAP(LeftoversMixin, AgentTestBase):
    """The storage side requires a key; the agent connects with it."""

    def target_port(self):
        return 4531

    def driver_flags(self):
        return {'spdk_dhchap': True,
                'spdk_keyring_dir': os.path.join(
                    self.useFixture(fixtures.TempDir()).path, 'keys')}

    def test_attach_with_key_and_without(self):
        volume, info = self.exported_vhost_volume()
        secret = info['data']['dhchap_secret']
        without = dict(info, data=dict(info['data'], dhchap_secret=None))
        self.assertRaises(spdk_exc.AttachError, self.agent.attach_volume,
                          volume.id, without)
        self.assertEqual(([], []), self.spdk_objects())
        self.agent.attach_volume(volume.id, info)
        key_file = os.path.join(self.group.state_dir, 'keys',
                                'dhchap-%s' % volume.id)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(key_file).st_mode))
        with open(key_file) as f:
            self.assertEqual(secret, f.read())
        with open(os.path.join(self.group.state_dir,
                               'attachments.json')) as f:
            self.assertIn(secret, f.read())
        self.assertEqual(0o600, stat.S_IMODE(os.stat(os.path.join(
            self.group.state_dir, 'attachments.json')).st_mode))
        self.agent.detach_volume(volume.id)
        self.assertFalse(os.path.exists(key_file))
        self.assertEqual([], self.vhost_client.call('keyring_get_keys'))

    def test_wrong_or_missing_secret_is_named(self):
        volume, info = self.exported_vhost_volume()
        wrong = dhchap.make_secret()
        error = self.assert_refused_leaving_nothing(
            'wrong secret', spdk_exc.AttachError,
            'DH-HMAC-CHAP authentication failed',
            lambda: self.agent.attach_volume(volume.id, dict(
                info, data=dict(info['data'], dhchap_secret=wrong))))
        # SPDK's whole answer to a failed authentication.
        self.assertIn('SPDK: Input/output error', error)
        self.assertNotIn(wrong, error)
        self.assert_refused_leaving_nothing(
            'no secret', spdk_exc.AttachError,
            'requires DH-HMAC-CHAP and the request carried no secret',
            lambda: self.agent.attach_volume(volume.id, dict(
                info, data=dict(info['data'], dhchap_secret=None))))
        self.assert_refused_leaving_nothing(
            'malformed secret', spdk_exc.InvalidRequest,
            'dhchap_secret (withheld',
            lambda: self.agent.attach_volume(volume.id, dict(
                info, data=dict(info['data'], dhchap_secret=wrong[:-2]))))


class TestAdoptedSPDK(AgentTestBase):
    """adopt=True: SPDK runs under someone else (here the base class'
    supervisor plays systemd's Restart=always); the agent only watches it
    and replays when it comes back.
    """

    def test_replays_into_an_spdk_restarted_by_someone_else(self):
        systemd = self.keeper
        self.conf.set_override('adopt', True, group=config.GROUP)
        adopted = supervisor.Supervisor(self.group, self.plan,
                                        on_ready=self.agent.replay)
        self.addCleanup(adopted.stop)
        adopted.start()
        self.assertIsNone(adopted.pid)   # it started nothing
        volume, info = self.exported_vhost_volume()
        self.agent.attach_volume(volume.id, info)
        os.kill(systemd.pid, signal.SIGKILL)
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while adopted.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(1, adopted.restarts)
        self.assertEqual(1, len(self.spdk_objects()[0]))
        adopted.stop()
        self.assertIsNotNone(systemd.pid)
        os.kill(systemd.pid, 0)   # stopping the agent leaves SPDK running


class TestDaemon(spdk_base.OnRealSPDK, scenarios.DriverTestBase,
                 scenarios.CinderTestCase):
    """``spdk-vhost-target run`` as operators start it: a process with a
    config file, serving RPC until SIGTERM, which leaves its SPDK serving;
    ``stop --with-spdk`` stops that. It runs from a compute node's
    environment: ``pip install .`` without Cinder or Nova.
    """

    def target_port(self):
        return 4532

    def test_run_serve_and_stop(self):
        if not spdk_fixtures.spdk_available('vhost'):
            self.skipTest(spdk_fixtures.SKIP_MESSAGE)
        broker = self.useFixture(rabbitmq.RabbitMQ())
        top = self.useFixture(fixtures.TempDir()).path
        rpc_socket = os.path.join(top, 'rpc', 'spdk.sock')
        config_file = os.path.join(top, 'agent.conf')
        cpus = sorted(topology.read_topology().online)
        with open(config_file, 'w') as f:
            f.write('[DEFAULT]\nhost = compute-test\ntransport_url = %s\n'
                    'log_file = %s\n'
                    '[spdk_vhost_target]\nrpc_socket = %s\n'
                    'socket_dir = %s\nstate_dir = %s\nsocket_group = %s\n'
                    'reactor_cpus = %d\nhugepage_mib_per_node = 256\n'
                    # The NQN the volume's ACL names (the agent connects
                    # only as its own).
                    'host_nqn = %s\n' % (
                        broker.url, os.path.join(top, 'agent.log'),
                        rpc_socket, os.path.join(top, 'sockets'),
                        os.path.join(top, 'state'),
                        grp.getgrgid(os.getgid()).gr_name, cpus[-1],
                        scenarios.HOST_NQN))
        output = os.path.join(top, 'daemon.out')
        agent = os.path.join(service_venv.bin_dir(), 'spdk-vhost-target')
        with open(output, 'wb') as out:
            daemon = subprocess.Popen(
                [agent, '--config-file', config_file, 'run'], stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

        def stop():
            # SPDK runs in its own session: stop the daemon politely so
            # that it stops SPDK, and kill whatever is left by PID.
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
                    daemon.wait()
            for pid in spdk_fixtures.pids_serving(rpc_socket):
                os.kill(pid, signal.SIGKILL)
        self.addCleanup(stop)
        conf = self.useFixture(config_fixture.Config(cfg.CONF)).conf
        rpcapi.get_transport(conf).cleanup()  # registers its options
        conf.set_override('transport_url', broker.url)
        transport = rpcapi.get_transport(conf)
        self.addCleanup(transport.cleanup)
        client = rpcapi.VhostTargetClient(transport, 'compute-test',
                                          timeout=60)
        # A request sent before the daemon's queue exists is dropped by the
        # broker: ask again until the daemon answers.
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                status = client.get_status(timeout=3)
            except messaging.MessagingTimeout:
                pass
        if status is None:
            logs = []
            for name in ('daemon.out', 'agent.log'):
                path = os.path.join(top, name)
                if os.path.exists(path):
                    with open(path, errors='replace') as f:
                        logs.append(f.read()[-3000:])
            self.fail('the agent did not answer:\n' + '\n'.join(logs))
        self.assertEqual(vhost_agent.AGENT_VERSION, status['version'])
        volume, info = self.exported_vhost_volume()
        path = client.attach_volume(volume.id, info)
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        client.detach_volume(volume.id)
        daemon.send_signal(signal.SIGTERM)
        self.assertEqual(0, daemon.wait(60))
        # SPDK keeps serving guests when the agent stops; the operator's
        # stop --with-spdk stops it too.
        probe = rpc.SPDKClient(rpc_socket, timeout=2)
        self.addCleanup(probe.close)
        probe.call('spdk_get_version')
        probe.close()
        stopped = subprocess.run(
            [agent, '--config-file', config_file, 'stop', '--with-spdk'],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(0, stopped.returncode, stopped.stderr)
        self.assertIn('The agent is not running', stopped.stdout)
        self.assertIn('Stopped SPDK vhost, pid', stopped.stdout)
        self.assertRaises(spdk_exc.SPDKUnavailable, probe.call,
                          'spdk_get_version')
