"""VhostTarget against a scripted SPDK vhost: rollback and error causes.

The double answers as SPDK v25.09's vhost does; every reply it gives (-5
for a refused TCP connection, an unknown subsystem, a host not on the ACL
or failed authentication; -126 for a key missing from the keyring; the
codes of missing and existing objects) is pinned against real SPDK by
tests/spdk/test_vhost_agent.py TestSPDKReplies.
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
from tests.unit import vhost_target as helpers
from vhost_target import state
from vhost_target import vhost

V = '5e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
TARGET = 'nqn.2010-10.org.openstack:volume-%s' % V


def _error(method, code, errno_code=None):
    """SPDK's error reply: ``code``, and the strerror() of ``errno_code``
    (some RPCs send a JSON-RPC code with an errno's text).
    """
    text = os.strerror(-(errno_code or code))
    return spdk_exc.from_rpc_error(method, {'code': code, 'message': text})


class ScriptedVhost:
    """SPDK vhost's replies to the RPCs VhostTarget sends.

    ``connect`` maps (traddr, trsvcid) to None (connects) or the negative
    errno bdev_nvme_attach_controller answers with.
    """

    def __init__(self, socket_dir):
        self.socket_dir = socket_dir
        self.connect = {}
        self.keys = {}
        self.nvme = {}
        self.vhost = {}
        self.fail = {}       # method -> negative errno
        self.no_socket = False
        self.calls = []
        # ctrlr -> the vhost-user sessions (open connections) SPDK lists.
        self.sessions = {}
        # NVMe controller name -> its state, when not "enabled".
        self.nvme_state = {}

    def call(self, method, params=None):
        self.calls.append(method)
        if method in self.fail:
            raise _error(method, self.fail[method])
        return getattr(self, '_' + method)(params or {})

    def _keyring_file_add_key(self, params):
        if params['name'] in self.keys:
            raise _error('keyring_file_add_key', -errno.EEXIST)
        if not os.path.exists(params['path']):
            raise _error('keyring_file_add_key', -errno.ENOENT)
        self.keys[params['name']] = params['path']

    def _keyring_file_remove_key(self, params):
        if self.keys.pop(params['name'], None) is None:
            raise _error('keyring_file_remove_key', -errno.ENOKEY)

    def _bdev_nvme_attach_controller(self, params):
        name = params['name']
        if name in self.nvme:
            raise spdk_exc.from_rpc_error('bdev_nvme_attach_controller', {
                'code': -errno.EALREADY,
                'message': 'A controller named %s already exists with the '
                           'specified network path' % name})
        if params.get('dhchap_key') and params['dhchap_key'] not in self.keys:
            raise _error('bdev_nvme_attach_controller', -errno.ENOKEY)
        code = self.connect.get((params['traddr'], params['trsvcid']))
        if code:
            raise _error('bdev_nvme_attach_controller', code)
        self.nvme[name] = params
        return ['%sn1' % name]

    def _bdev_nvme_get_controllers(self, params):
        return [{'name': n, 'ctrlrs': [{
            'state': self.nvme_state.get(n, 'enabled'),
            'trid': {'trtype': 'TCP', 'adrfam': 'IPv4',
                     'traddr': p['traddr'], 'trsvcid': p['trsvcid'],
                     'subnqn': p['subnqn']},
            'host': {'nqn': p['hostnqn'], 'addr': '', 'svcid': ''}}]}
            for n, p in self.nvme.items()]

    def _bdev_nvme_detach_controller(self, params):
        if self.nvme.pop(params['name'], None) is None:
            raise _error('bdev_nvme_detach_controller', -errno.ENODEV)

    def _vhost_create_blk_controller(self, params):
        ctrlr = params['ctrlr']
        if ctrlr in self.vhost:
            raise _error('vhost_create_blk_controller', -32602,
                         -errno.EEXIST)
        self.vhost[ctrlr] = params
        if not self.no_socket:
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(os.path.join(self.socket_dir, ctrlr))
            listener.close()

    def _vhost_get_controllers(self, params):
        if 'name' in params:
            if params['name'] not in self.vhost:
                raise _error('vhost_get_controllers', -32603, -errno.ENODEV)
            return [self._vhost_entry(params['name'])]
        return [self._vhost_entry(c) for c in self.vhost]

    def _vhost_entry(self, ctrlr):
        return {'ctrlr': ctrlr,
                'socket': os.path.join(self.socket_dir, ctrlr),
                'sessions': self.sessions.get(ctrlr, []),
                'backend_specific': {'block': {
                    'bdev': self.vhost[ctrlr]['dev_name']}}}

    def _keyring_get_keys(self, params):
        return [{'name': n} for n in self.keys]

    def _vhost_delete_controller(self, params):
        if self.vhost.pop(params['ctrlr'], None) is None:
            raise _error('vhost_delete_controller', -32602, -errno.ENODEV)
        try:   # SPDK unregisters (unlinks) the socket with the controller
            os.unlink(os.path.join(self.socket_dir, params['ctrlr']))
        except FileNotFoundError:
            pass

    def _bdev_set_qos_limit(self, params):
        return True


def _my_group():
    return grp.getgrgid(os.getgid()).gr_name


class TestVhostTarget(base.TestCase):
    def setUp(self):
        super().setUp()
        top = self.useFixture(fixtures.TempDir()).path
        self.socket_dir = os.path.join(top, 'sockets')
        os.mkdir(self.socket_dir)
        self.state_dir = os.path.join(top, 'state')
        self.conf = helpers.make_conf(
            self, socket_dir=self.socket_dir, state_dir=self.state_dir,
            socket_group=_my_group())
        self.spdk = ScriptedVhost(self.socket_dir)
        self.target = vhost.VhostTarget(self.spdk, self.conf)
        # A listener that accepts TCP connections, as an NVMe/TCP target
        # that then refuses the NVMe connect does.
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(8)
        self.addCleanup(self.listener.close)
        self.open_port = str(self.listener.getsockname()[1])

    def lose_socket_group(self):
        self.target = vhost.VhostTarget(self.spdk, helpers.make_conf(
            self, socket_dir=self.socket_dir, state_dir=self.state_dir,
            socket_group='no-such-group-here'))

    def attachment(self, secret=None, portals=None, qos=None):
        return state.Attachment(
            volume_id=V, target_nqn=TARGET, host_nqn=HOST, cpu=0,
            portals=portals or [('127.0.0.1', self.open_port, 'tcp')],
            dhchap_secret=secret, qos=qos)

    def assert_nothing_left(self):
        self.assertEqual({}, self.spdk.nvme)
        self.assertEqual({}, self.spdk.vhost)
        self.assertEqual({}, self.spdk.keys)
        self.assertEqual([], os.listdir(self.socket_dir))
        keys = os.path.join(self.state_dir, 'keys')
        self.assertEqual([], os.listdir(keys) if os.path.isdir(keys) else [])

    def test_attach_secures_the_socket_and_detach_removes_all(self):
        path = self.target.attach(self.attachment(dhchap.make_secret()))
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))
        self.assertEqual([V], list(self.spdk.nvme))
        self.target.detach(V)
        self.assert_nothing_left()

    def lose_controller(self):
        """What SPDK does when ctrlr_loss_timeout_sec runs out: the NVMe
        controller and its bdev go, the vhost controller stays with none.
        """
        del self.spdk.nvme[V]
        self.spdk.vhost[naming.vhost_controller_name(V)]['dev_name'] = None

    def test_attach_rebuilds_a_vhost_controller_that_lost_its_bdev(self):
        self.target.attach(self.attachment())
        self.lose_controller()
        path = self.target.attach(self.attachment())
        ctrlr = naming.vhost_controller_name(V)
        self.assertEqual('%sn1' % V, self.spdk.vhost[ctrlr]['dev_name'])
        self.assertEqual([V], list(self.spdk.nvme))
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))

    def end_sessions_with(self, closed):
        """disconnect_sessions (a privsep entrypoint, run against a real
        SPDK by tests/spdk/test_agent_storage_loss.py) as SPDK answers it:
        the sessions go.
        """
        calls = []

        def disconnect(pid, path):
            calls.append((pid, path))
            self.spdk.sessions.clear()
            return closed
        self.useFixture(fixtures.MockPatch(
            'vhost_target.privileged.vhost_user.disconnect_sessions',
            side_effect=disconnect))
        self.useFixture(fixtures.MockPatch(
            'vhost_target.supervisor.socket_owner',
            return_value=('live', 4321)))
        return calls

    def test_rebuild_ends_the_sessions_of_a_controller_without_bdev(self):
        # Its guest's I/O fails anyway; QEMU reconnects to the new one.
        self.target.attach(self.attachment())
        self.lose_controller()
        ctrlr = naming.vhost_controller_name(V)
        self.spdk.sessions[ctrlr] = [{'vid': 0}]
        calls = self.end_sessions_with(1)
        path = self.target.attach(self.attachment())
        self.assertEqual([(4321, path)], calls)
        self.assertEqual('%sn1' % V, self.spdk.vhost[ctrlr]['dev_name'])
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))

    def test_sessions_of_a_controller_serving_a_bdev_are_kept(self):
        # A vhost controller on another bdev serves its guest: deleting
        # it would make SPDK loop and the guest would lose its disk. The
        # NVMe controller made for the rebuild is undone.
        self.target.attach(self.attachment())
        ctrlr = naming.vhost_controller_name(V)
        del self.spdk.nvme[V]
        self.spdk.vhost[ctrlr]['dev_name'] = 'other-bdev'
        self.spdk.sessions[ctrlr] = [{'vid': 0}]
        calls = self.end_sessions_with(1)
        self.assertRaises(spdk_exc.VolumeBusy, self.target.attach,
                          self.attachment())
        self.assertEqual([], calls)
        self.assertEqual('other-bdev', self.spdk.vhost[ctrlr]['dev_name'])
        self.assertEqual({}, self.spdk.nvme)
        self.assertNotIn('vhost_delete_controller', self.spdk.calls)

    def test_nvme_states_is_one_listing_call(self):
        self.target.attach(self.attachment())
        self.spdk.nvme['not-ours'] = self.spdk.nvme[V]
        self.spdk.nvme_state[V] = 'reconnect_is_delayed'
        del self.spdk.calls[:]
        self.assertEqual({V: 'reconnect_is_delayed'},
                         self.target.nvme_states())
        self.assertEqual(['bdev_nvme_get_controllers'], self.spdk.calls)

    def test_detach_of_a_disk_the_guest_holds_changes_nothing(self):
        path = self.target.attach(self.attachment(dhchap.make_secret()))
        ctrlr = naming.vhost_controller_name(V)
        # What SPDK v25.09 lists for a connected QEMU.
        self.spdk.sessions[ctrlr] = [{'vid': 0, 'id': 0, 'name': ctrlr,
                                      'started': True, 'max_queues': 1,
                                      'inflight_task_cnt': 0}]
        self.spdk.calls.clear()
        exc = self.assertRaises(spdk_exc.VolumeBusy, self.target.detach, V)
        self.assertEqual('Volume %s is busy: the guest still has the disk '
                         'open (1 vhost-user connection(s) on %s); detach '
                         'the disk from the guest, then detach the volume '
                         'again.' % (V, path), str(exc))
        # Never asked to delete: SPDK would retry that in a loop.
        self.assertEqual(['vhost_get_controllers'], self.spdk.calls)
        self.assertEqual([ctrlr], list(self.spdk.vhost))
        self.assertEqual([V], list(self.spdk.nvme))
        self.assertEqual(0o660, stat.S_IMODE(os.stat(path).st_mode))
        del self.spdk.sessions[ctrlr]
        self.target.detach(V)
        self.assert_nothing_left()

    def test_inventory_and_complete(self):
        attachment = self.attachment(dhchap.make_secret())
        self.target.attach(attachment)
        other = '6e1b7a52-8f7c-4a45-9f0e-0c7b0a1d2e3f'
        # Not the agent's names: never listed, so never removed.
        self.spdk.vhost['operator-disk'] = {'dev_name': 'Malloc0'}
        self.spdk.nvme['Nvme0'] = dict(self.spdk.nvme[V])
        self.spdk.nvme['VHOST-' + other] = dict(self.spdk.nvme[V])
        # A key file an attach killed before its keyring call left.
        with open(os.path.join(self.state_dir, 'keys',
                               'dhchap-%s.tmp' % other), 'w'):
            pass
        found = self.target.inventory()
        self.assertEqual({V, other}, set(found))
        self.assertEqual((None, None, False), (
            found[other]['vhost'], found[other]['nvme'],
            found[other]['key']))
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
        self.lose_socket_group()
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment(dhchap.make_secret()))
        self.assertIn("socket_group 'no-such-group-here' does not exist",
                      str(exc))
        self.assert_nothing_left()

    def test_missing_socket_is_an_attach_error_and_undone(self):
        self.spdk.no_socket = True
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment())
        self.assertIn('No such file or directory', str(exc))
        self.assert_nothing_left()

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

    def test_nothing_listening_is_not_blamed_on_the_acl(self):
        port = str(net.closed_port())
        self.spdk.connect[('127.0.0.1', port)] = -errno.EIO
        exc = self.assertRaises(
            spdk_exc.AttachError, self.target.attach,
            self.attachment(portals=[('127.0.0.1', port, 'tcp')]))
        self.assertIn('could not reach the storage target at 127.0.0.1:%s: '
                      'Connection refused' % port, str(exc))
        self.assertNotIn('allowed', str(exc))
        self.assertNotIn('DH-HMAC-CHAP', str(exc))
        self.assert_nothing_left()

    def test_refused_nvme_connect_names_the_possible_causes(self):
        self.spdk.connect[('127.0.0.1', self.open_port)] = -errno.EIO
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
        self.spdk.connect[('127.0.0.1', self.open_port)] = -errno.ENOKEY
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment())
        self.assertIn('SPDK refused to connect to 127.0.0.1:%s'
                      % self.open_port, str(exc))
        self.assertIn('Required key not available', str(exc))
        self.assertNotIn('allowed', str(exc))

    def test_each_portal_is_tried_and_reported(self):
        port = str(net.closed_port())
        self.spdk.connect[('127.0.0.1', port)] = -errno.EIO
        self.spdk.connect[('::1', port)] = -errno.EIO
        exc = self.assertRaises(
            spdk_exc.AttachError, self.target.attach, self.attachment(
                portals=[('127.0.0.1', port, 'tcp'), ('::1', port, 'tcp')]))
        self.assertIn('127.0.0.1:%s' % port, str(exc))
        self.assertIn('[::1]:%s' % port, str(exc))
        path = self.target.attach(self.attachment(portals=[
            ('127.0.0.1', port, 'tcp'),
            ('127.0.0.1', self.open_port, 'tcp')]))
        self.assertEqual(self.open_port, self.spdk.nvme[V]['trsvcid'])
        self.assertTrue(os.path.exists(path))

    def test_retry_keeps_what_an_earlier_attempt_made(self):
        secret = dhchap.make_secret()
        self.target.attach(self.attachment(secret))
        self.lose_socket_group()
        self.assertRaises(spdk_exc.AttachError, self.target.attach,
                          self.attachment(secret))
        # Not made by the failed call, so not undone by it.
        self.assertEqual([V], list(self.spdk.nvme))
        self.assertEqual(1, len(self.spdk.vhost))
        self.assertEqual(1, len(self.spdk.keys))

    def test_an_existing_controller_of_another_connection_is_refused(self):
        # Left by an agent that died between SPDK's attach and its state
        # write, or made by hand: not this attachment's connection.
        self.spdk.nvme[V] = {'traddr': '127.0.0.1', 'trsvcid': '1',
                             'subnqn': 'nqn.2016-06.io.spdk:other',
                             'hostnqn': HOST}
        exc = self.assertRaises(spdk_exc.AttachError, self.target.attach,
                                self.attachment())
        self.assertIn('already has an NVMe controller %s connected to '
                      'nqn.2016-06.io.spdk:other' % V, str(exc))
        self.assertIn('detach the volume first', str(exc))
        self.assertEqual({}, self.spdk.vhost)
        self.assertEqual([V], list(self.spdk.nvme))   # not ours to remove
        self.target.detach(V)
        self.assert_nothing_left()
        # The same connection is taken over.
        self.spdk.nvme[V] = {'traddr': '127.0.0.1', 'trsvcid': '1',
                             'subnqn': TARGET, 'hostnqn': HOST}
        self.target.attach(self.attachment())
        self.assertEqual(1, len(self.spdk.vhost))
