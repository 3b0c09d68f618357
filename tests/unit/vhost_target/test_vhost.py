"""VhostTarget against FakeSPDK's vhost app: rollback and error causes.

The compute node's SPDK is FakeSPDK's ``vhost`` application; the storage
node's is its ``nvmf_tgt``, exporting the volume at the port of a TCP
listener the test holds (where a real target's transport listens). What
they answer (-5 for a refused TCP connection, an unknown subsystem, a host
not on the ACL or failed authentication; -126 for a key missing from the
keyring; the codes of missing and existing objects) is pinned against real
SPDK by tests/spdk/test_contract_vhost.py, which drives VhostTarget the
same way. ``fail`` scripts the few refusals SPDK gives the agent only on a
broken host.
"""

import errno
import grp
import os
import socket
import stat

import fixtures

from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from tests import base
from tests.fixtures import net
from tests.fixtures import spdk as spdk_fixtures
from tests.unit import vhost_target as helpers
from vhost_target import state
from vhost_target import vhost

V = '5e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
OTHER = '6e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
HOST2 = 'nqn.2014-08.org.nvmexpress:uuid:1f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
HOST3 = 'nqn.2014-08.org.nvmexpress:uuid:2f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
TARGET = 'nqn.2010-10.org.openstack:volume-%s' % V
ELSEWHERE = 'nqn.2016-06.io.spdk:other'


def _my_group():
    return grp.getgrgid(os.getgid()).gr_name


class TestVhostTarget(base.TestCase):
    def setUp(self):
        super().setUp()
        # A listener that accepts TCP connections, where the storage
        # target's NVMe/TCP transport listens.
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(8)
        self.addCleanup(self.listener.close)
        self.open_port = str(self.listener.getsockname()[1])
        self.storage = self.useFixture(spdk_fixtures.FakeSPDKTarget(
            size_mib=64))
        self.export(TARGET, V, HOST)
        self.compute = self.useFixture(spdk_fixtures.FakeSPDKTarget(
            app='vhost', size_mib=64))
        self.spdk = self.compute.fake
        self.socket_dir = self.compute.vhost_socket_dir
        self.state_dir = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state')
        self.target = self.vhost_target()

    def vhost_target(self, **overrides):
        settings = dict(socket_dir=self.socket_dir, state_dir=self.state_dir,
                        socket_group=_my_group(),
                        rpc_socket=self.compute.socket_path)
        settings.update(overrides)
        return vhost.VhostTarget(self.compute.client,
                                 helpers.make_conf(self, **settings))

    def export(self, nqn, volume_id, *hosts):
        """What the Cinder driver's export makes on the storage node."""
        call = self.storage.client.call
        if not call('nvmf_get_transports'):
            call('nvmf_create_transport', {'trtype': 'TCP'})
        lvol = call('bdev_lvol_create', {
            'lvs_name': self.storage.lvstore, 'lvol_name': volume_id,
            'size_in_mib': 8, 'thin_provision': True})
        call('nvmf_create_subsystem', {'nqn': nqn, 'max_namespaces': 1})
        call('nvmf_subsystem_add_ns', {'nqn': nqn, 'namespace': {
            'bdev_name': lvol, 'uuid': volume_id,
            'nguid': volume_id.replace('-', '')}})
        call('nvmf_subsystem_add_listener', {'nqn': nqn, 'listen_address': {
            'trtype': 'TCP', 'adrfam': 'IPv4', 'traddr': '127.0.0.1',
            'trsvcid': self.open_port}})
        for host in hosts:
            call('nvmf_subsystem_add_host', {'nqn': nqn, 'host': host})

    def connect_by_hand(self, name, nqn=TARGET, host=HOST):
        """An NVMe controller someone else attached (an operator, or an
        agent that died before it recorded the attach).
        """
        self.compute.client.call('bdev_nvme_attach_controller', {
            'name': name, 'trtype': 'tcp', 'adrfam': 'ipv4',
            'traddr': '127.0.0.1', 'trsvcid': self.open_port,
            'subnqn': nqn, 'hostnqn': host})

    def attachment(self, secret=None, portals=None, qos=None):
        return state.Attachment(
            volume_id=V, target_nqn=TARGET, host_nqn=HOST, cpu=0,
            portals=portals or [('127.0.0.1', self.open_port, 'tcp')],
            dhchap_secret=secret, qos=qos)

    # -- what the compute node's SPDK has ---------------------------------

    def nvme(self):
        return [c['name'] for c in
                self.compute.client.call('bdev_nvme_get_controllers')]

    def vhost_bdevs(self):
        return {c['ctrlr']: c['backend_specific']['block']['bdev'] for c in
                self.compute.client.call('vhost_get_controllers')}

    def keys(self):
        return [k['name'] for k in
                self.compute.client.call('keyring_get_keys')]

    def guest_connects(self, path):
        """QEMU opening the vhost-user socket: a session SPDK lists."""
        guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        guest.connect(path)
        self.addCleanup(guest.close)
        return guest

    def assert_nothing_left(self, socket_dir=None):
        self.assertEqual([], self.nvme())
        self.assertEqual({}, self.vhost_bdevs())
        self.assertEqual([], self.keys())
        for directory in {self.socket_dir, socket_dir or self.socket_dir}:
            self.assertEqual([], os.listdir(directory))
        keys = os.path.join(self.state_dir, 'keys')
        self.assertEqual([], os.listdir(keys) if os.path.isdir(keys) else [])

    def test_attach_secures_the_socket_and_detach_removes_all(self):
        path = self.target.attach(self.attachment(dhchap.make_secret()))
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))
        self.assertEqual([V], self.nvme())
        self.target.detach(V)
        self.assert_nothing_left()

    def lose_controller(self):
        """What SPDK does when ctrlr_loss_timeout_sec runs out: the NVMe
        controller and its bdev go, the vhost controller stays with none.
        """
        self.compute.client.call('bdev_nvme_detach_controller', {'name': V})
        self.assertEqual({naming.vhost_controller_name(V): None},
                         self.vhost_bdevs())

    def test_attach_rebuilds_a_vhost_controller_that_lost_its_bdev(self):
        self.target.attach(self.attachment())
        self.lose_controller()
        path = self.target.attach(self.attachment())
        ctrlr = naming.vhost_controller_name(V)
        self.assertEqual({ctrlr: '%sn1' % V}, self.vhost_bdevs())
        self.assertEqual([V], self.nvme())
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))

    def end_sessions_with(self, guest):
        """disconnect_sessions (a privsep entrypoint, run against a real
        SPDK by tests/spdk/test_agent_storage_loss.py) as SPDK answers it:
        the guest's connection ends.
        """
        calls = []

        def disconnect(pid, path):
            calls.append((pid, path))
            guest.close()
            return 1
        self.useFixture(fixtures.MockPatch(
            'vhost_target.privileged.vhost_user.disconnect_sessions',
            side_effect=disconnect))
        return calls

    def test_rebuild_ends_the_sessions_of_a_controller_without_bdev(self):
        # Its guest's I/O fails anyway; QEMU reconnects to the new one.
        path = self.target.attach(self.attachment())
        self.lose_controller()
        calls = self.end_sessions_with(self.guest_connects(path))
        self.assertEqual(path, self.target.attach(self.attachment()))
        # The process serving the RPC socket: here, the test's.
        self.assertEqual([(os.getpid(), path)], calls)
        ctrlr = naming.vhost_controller_name(V)
        self.assertEqual({ctrlr: '%sn1' % V}, self.vhost_bdevs())
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))

    def test_sessions_of_a_controller_serving_a_bdev_are_kept(self):
        # A vhost controller on another bdev serves its guest: deleting
        # it would make SPDK loop and the guest would lose its disk. The
        # NVMe controller made for the rebuild is undone.
        path = self.target.attach(self.attachment())
        ctrlr = naming.vhost_controller_name(V)
        call = self.compute.client.call
        call('bdev_nvme_detach_controller', {'name': V})
        call('vhost_delete_controller', {'ctrlr': ctrlr})
        other = call('bdev_lvol_create', {
            'lvs_name': self.compute.lvstore, 'lvol_name': 'other',
            'size_in_mib': 8, 'thin_provision': True})
        call('vhost_create_blk_controller', {'ctrlr': ctrlr,
                                             'dev_name': other})
        calls = self.end_sessions_with(self.guest_connects(path))
        self.spdk.calls.clear()
        self.assertRaises(spdk_exc.VolumeBusy, self.target.attach,
                          self.attachment())
        self.assertEqual([], calls)
        self.assertEqual({ctrlr: other}, self.vhost_bdevs())
        self.assertEqual([], self.nvme())
        self.assertNotIn('vhost_delete_controller', self.spdk.calls)

    def test_nvme_states_is_one_listing_call(self):
        self.target.attach(self.attachment())
        self.storage.client.call('nvmf_subsystem_add_host',
                                 {'nqn': TARGET, 'host': HOST2})
        self.connect_by_hand('not-ours', host=HOST2)
        # The storage node no longer lets this host in: SPDK keeps trying.
        self.storage.client.call('nvmf_subsystem_remove_host',
                                 {'nqn': TARGET, 'host': HOST})
        self.spdk.calls.clear()
        self.assertEqual({V: 'reconnect_is_delayed'},
                         self.target.nvme_states())
        self.assertEqual({'bdev_nvme_get_controllers': 1},
                         dict(self.spdk.calls))

    def test_detach_of_a_disk_the_guest_holds_changes_nothing(self):
        path = self.target.attach(self.attachment(dhchap.make_secret()))
        ctrlr = naming.vhost_controller_name(V)
        guest = self.guest_connects(path)
        self.spdk.calls.clear()
        exc = self.assertRaises(spdk_exc.VolumeBusy, self.target.detach, V)
        self.assertEqual('Volume %s is busy: the guest still has the disk '
                         'open (1 vhost-user connection(s) on %s); detach '
                         'the disk from the guest, then detach the volume '
                         'again.' % (V, path), str(exc))
        # Never asked to delete: SPDK would retry that in a loop; the
        # connected NVMe controller is left alone.
        self.assertEqual({'vhost_get_controllers': 1,
                          'bdev_nvme_get_controllers': 1},
                         dict(self.spdk.calls))
        self.assertEqual([ctrlr], list(self.vhost_bdevs()))
        self.assertEqual([V], self.nvme())
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))
        guest.close()
        self.target.detach(V)
        self.assert_nothing_left()

    def test_detach_fails_the_io_of_a_target_that_does_not_answer(self):
        # SPDK ends a session only when its I/O completes, which I/O to a
        # target that refuses this host (fenced after an evacuation) never
        # does: the NVMe controller goes first, failing it. A guest still
        # connected keeps the vhost controller busy.
        path = self.target.attach(self.attachment())
        guest = self.guest_connects(path)
        self.storage.client.call('nvmf_subsystem_remove_host',
                                 {'nqn': TARGET, 'host': HOST})
        self.assertEqual({V: 'reconnect_is_delayed'},
                         self.target.nvme_states())
        self.spdk.calls.clear()
        self.assertRaises(spdk_exc.VolumeBusy, self.target.detach, V)
        self.assertEqual([], self.nvme())
        self.assertEqual([naming.vhost_controller_name(V)],
                         list(self.vhost_bdevs()))
        self.assertNotIn('vhost_delete_controller', self.spdk.calls)
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))
        guest.close()
        self.target.detach(V)
        self.assert_nothing_left()

    def test_inventory_and_complete(self):
        attachment = self.attachment(dhchap.make_secret())
        self.target.attach(attachment)
        call = self.compute.client.call
        for host in (HOST2, HOST3):
            self.storage.client.call('nvmf_subsystem_add_host',
                                     {'nqn': TARGET, 'host': host})
        # Not the agent's names: never listed, so never removed.
        call('vhost_create_blk_controller', {
            'ctrlr': 'operator-disk', 'dev_name': '%sn1' % V})
        self.connect_by_hand('Nvme0', host=HOST2)
        self.connect_by_hand('VHOST-' + OTHER, host=HOST3)
        # A key file an attach killed before its keyring call left.
        with open(os.path.join(self.state_dir, 'keys',
                               'dhchap-%s.tmp' % OTHER), 'w'):
            pass
        found = self.target.inventory()
        self.assertEqual({V, OTHER}, set(found))
        self.assertEqual((None, None, False), (
            found[OTHER]['vhost'], found[OTHER]['nvme'],
            found[OTHER]['key']))
        self.assertTrue(self.target.complete(attachment, found[V]))
        os.unlink(self.target.socket_path(V))
        self.assertFalse(self.target.complete(
            attachment, self.target.inventory()[V]))
        # Whole, but to another subsystem than the state records.
        elsewhere = self.attachment()
        elsewhere.target_nqn = TARGET + 'x'
        self.assertFalse(self.target.complete(elsewhere, found[V]))

    def test_socket_permission_failure_undoes_everything(self):
        # The socket's group and mode are part of the attach: failing
        # there must leave no controller, socket or key behind.
        self.target = self.vhost_target(socket_group='no-such-group-here')
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment(dhchap.make_secret()))
        self.assertIn("socket_group 'no-such-group-here' does not exist",
                      str(exc))
        self.assert_nothing_left()

    def test_missing_socket_is_an_attach_error_and_undone(self):
        # SPDK makes its sockets elsewhere (its -S is not socket_dir).
        elsewhere = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'sockets')
        os.mkdir(elsewhere, 0o755)
        self.target = self.vhost_target(socket_dir=elsewhere)
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment())
        self.assertIn('No such file or directory', str(exc))
        self.assert_nothing_left(elsewhere)

    def test_keyring_refusal_removes_the_key_file(self):
        self.spdk.fail['keyring_file_add_key'] = -errno.EPERM
        self.assertRaises(spdk_exc.SPDKRPCError, self.target.attach,
                          self.attachment(dhchap.make_secret()))
        self.assert_nothing_left()

    def test_qos_failure_undoes_everything(self):
        self.spdk.fail['bdev_set_qos_limit'] = -errno.EINVAL
        self.assertRaises(spdk_exc.SPDKRPCError, self.target.attach,
                          self.attachment(qos={'rw_ios_per_sec': 1000}))
        self.assert_nothing_left()

    def test_qos_is_set_on_the_namespace_bdev(self):
        self.target.attach(self.attachment(qos={'rw_ios_per_sec': 1500}))
        bdev, = self.compute.client.call('bdev_get_bdevs',
                                         {'name': '%sn1' % V})
        self.assertEqual(2000, bdev['assigned_rate_limits']['rw_ios_per_sec'])
        self.assertEqual(8 << 20, self.target.size_bytes(V))

    def test_nothing_listening_is_not_blamed_on_the_acl(self):
        port = str(net.closed_port())
        exc = self.assertRaises(
            spdk_exc.AttachError, self.target.attach,
            self.attachment(portals=[('127.0.0.1', port, 'tcp')]))
        self.assertIn('could not reach the storage target at 127.0.0.1:%s: '
                      'Connection refused' % port, str(exc))
        self.assertNotIn('allowed', str(exc))
        self.assertNotIn('DH-HMAC-CHAP', str(exc))
        self.assert_nothing_left()

    def test_refused_nvme_connect_names_the_possible_causes(self):
        self.storage.client.call('nvmf_subsystem_remove_host',
                                 {'nqn': TARGET, 'host': HOST})
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment())
        self.assertIn('accepts TCP connections but refused the NVMe connect',
                      str(exc))
        self.assertIn('subsystem %s does not exist there' % TARGET, str(exc))
        self.assertIn('host %s is not allowed on it' % HOST, str(exc))
        self.assertIn('requires DH-HMAC-CHAP and the request carried no '
                      'secret', str(exc))
        secret = dhchap.make_secret()
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment(secret))
        self.assertIn('DH-HMAC-CHAP authentication failed', str(exc))
        self.assertNotIn(secret, str(exc))
        self.assert_nothing_left()

    def test_other_spdk_refusals_are_reported_as_they_are(self):
        self.spdk.fail['bdev_nvme_attach_controller'] = -errno.ENOKEY
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment())
        self.assertIn('SPDK refused to connect to 127.0.0.1:%s'
                      % self.open_port, str(exc))
        self.assertIn('Required key not available', str(exc))
        self.assertNotIn('allowed', str(exc))

    def test_each_portal_is_tried_and_reported(self):
        port = str(net.closed_port())
        exc = self.assertRaises(
            spdk_exc.AttachError, self.target.attach, self.attachment(
                portals=[('127.0.0.1', port, 'tcp'), ('::1', port, 'tcp')]))
        self.assertIn('127.0.0.1:%s' % port, str(exc))
        self.assertIn('[::1]:%s' % port, str(exc))
        path = self.target.attach(self.attachment(portals=[
            ('127.0.0.1', port, 'tcp'),
            ('127.0.0.1', self.open_port, 'tcp')]))
        listed, = self.compute.client.call('bdev_nvme_get_controllers')
        self.assertEqual(self.open_port,
                         listed['ctrlrs'][0]['trid']['trsvcid'])
        self.assertTrue(os.path.exists(path))

    def test_retry_keeps_what_an_earlier_attempt_made(self):
        secret = dhchap.make_secret()
        self.target.attach(self.attachment(secret))
        self.target = self.vhost_target(socket_group='no-such-group-here')
        self.assertRaises(spdk_exc.AttachError, self.target.attach,
                          self.attachment(secret))
        # Not made by the failed call, so not undone by it.
        self.assertEqual([V], self.nvme())
        self.assertEqual(1, len(self.vhost_bdevs()))
        self.assertEqual(1, len(self.keys()))

    def test_an_existing_controller_of_another_connection_is_refused(self):
        # Left by an agent that died between SPDK's attach and its state
        # write, or made by hand: not this attachment's connection.
        self.export(ELSEWHERE, OTHER, HOST)
        self.connect_by_hand(V, nqn=ELSEWHERE)
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment())
        self.assertIn('already has an NVMe controller %s connected to '
                      '%s' % (V, ELSEWHERE), str(exc))
        self.assertIn('detach the volume first', str(exc))
        self.assertEqual({}, self.vhost_bdevs())
        self.assertEqual([V], self.nvme())   # not ours to remove
        self.target.detach(V)
        self.assert_nothing_left()
        # The same connection is taken over.
        self.connect_by_hand(V)
        self.target.attach(self.attachment())
        self.assertEqual(1, len(self.vhost_bdevs()))
