"""Contract tests: FakeSPDK's vhost app (bdev_nvme, vhost, keyring, QoS)
must answer like a real SPDK v25.09 ``vhost`` attached to a real
``nvmf_tgt``.

Every test runs twice, against ``fake`` (tests/fixtures/fake_spdk) and
``real`` (the SPDK applications; skipped when SPDK is not installed), and
asserts the same observable result on both. The compute agent's own
:class:`vhost_target.vhost.VhostTarget` does the attaching, detaching and
listing, so what the unit tier's tests of it rely on
(tests/unit/vhost_target/test_vhost.py) is what real SPDK does; requests
sent directly are the ones VhostTarget sends. The storage side is set up
with the RPCs the Cinder driver's export sends.

SPDK notices some things asynchronously (a vhost-user connection, a lost
NVMe-oF host): those assertions wait until they hold, or time out.
"""

import grp
import os
import socket
import stat
import time
import uuid

from oslo_config import cfg
from oslo_config import fixture as config_fixture
import pytest

from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from tests.fixtures import net
from tests.fixtures import spdk as spdk_fixtures
from vhost_target import config
from vhost_target import state
from vhost_target import vhost

HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
HOST2 = 'nqn.2014-08.org.nvmexpress:uuid:1f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
NQN = 'nqn.2010-10.org.openstack:volume-%s'
VOLUME_MIB = 8
BLOCK = 512
# The compute side polls; the storage side (interrupt mode) shares core 0.
COMPUTE_CPUMASK = '0x2' if (os.cpu_count() or 1) > 1 else '0x1'
WAIT = 10.0
NO_LIMITS = {'rw_ios_per_sec': 0, 'rw_mbytes_per_sec': 0,
             'r_mbytes_per_sec': 0, 'w_mbytes_per_sec': 0}
EAGAIN_QOS = ('Failed to configure rate limit: Resource temporarily '
              'unavailable')


def assert_error(call, code, message):
    """The call fails with this SPDK code and message (the client makes
    the typed exception of them).
    """
    with pytest.raises(spdk_exc.SPDKRPCError) as info:
        call()
    assert (info.value.code, info.value.error) == (code, message)


def eventually(look, expected):
    """``look()`` once it returns ``expected``, or its last answer."""
    deadline = time.monotonic() + WAIT
    while True:
        found = look()
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -- the two nodes ------------------------------------------------------------

class Nodes:
    """A storage node's nvmf_tgt and a compute node's vhost app."""

    def __init__(self, kind):
        self.kind = kind
        if kind == 'real':
            self.storage = spdk_fixtures.SPDKTarget(interrupt=True,
                                                    size_mib=256)
            self.compute = spdk_fixtures.SPDKTarget(
                app='vhost', size_mib=64, cpumask=COMPUTE_CPUMASK)
        else:
            self.storage = spdk_fixtures.FakeSPDKTarget(size_mib=256)
            self.compute = spdk_fixtures.FakeSPDKTarget(
                app='vhost', size_mib=64, cpumask=COMPUTE_CPUMASK)
        self.port = None
        self._transport_listener = None

    def set_up(self):
        # Raises SkipTest (one line) for 'real' when SPDK is not installed.
        self.storage.setUp()
        self.compute.setUp()
        self.port = str(net.closed_port())
        if self.kind == 'fake':
            # Where the real target's NVMe/TCP transport accepts
            # connections; the fake listens at no address.
            self._transport_listener = socket.socket()
            self._transport_listener.bind(('127.0.0.1', int(self.port)))
            self._transport_listener.listen(8)
        self.storage.client.call('nvmf_create_transport', {'trtype': 'TCP'})

    def clean_up(self):
        if self._transport_listener is not None:
            self._transport_listener.close()
        self.compute.cleanUp()
        self.storage.cleanUp()

    def storage_call(self, method, params=None):
        return self.storage.client.call(method, params)

    def call(self, method, params=None):
        return self.compute.client.call(method, params)

    def export(self, volume_id, *hosts, key=None, namespace=True):
        """cinder_driver/exports.py NVMeoFExports.export() and allow()."""
        nqn = NQN % volume_id
        lvol = self.storage_call('bdev_lvol_create', {
            'lvs_name': self.storage.lvstore,
            'lvol_name': 'volume-%s' % volume_id, 'size_in_mib': VOLUME_MIB,
            'thin_provision': True, 'clear_method': 'unmap'})
        self.storage_call('nvmf_create_subsystem', {
            'nqn': nqn, 'serial_number': volume_id.replace('-', '')[:20],
            'model_number': 'OpenStack Cinder SPDK',
            'allow_any_host': False, 'max_namespaces': 1})
        if namespace:
            self.storage_call('nvmf_subsystem_add_ns', {
                'nqn': nqn, 'namespace': {
                    'bdev_name': lvol, 'uuid': volume_id,
                    'nguid': volume_id.replace('-', '').upper()}})
        self.storage_call('nvmf_subsystem_add_listener', {
            'nqn': nqn, 'listen_address': {
                'trtype': 'TCP', 'adrfam': 'IPv4', 'traddr': '127.0.0.1',
                'trsvcid': self.port}})
        for host in hosts:
            self.allow(nqn, host, key)
        return nqn

    def allow(self, nqn, host, key=None):
        params = {'nqn': nqn, 'host': host}
        if key is not None:
            params['dhchap_key'] = key
        self.storage_call('nvmf_subsystem_add_host', params)

    def storage_key(self, name, secret):
        """spdk_common/dhchap.py KeyFiles on the storage node."""
        path = os.path.join(self.storage.workdir, name)
        with open(path, 'w') as f:
            f.write(secret)
        os.chmod(path, 0o600)
        self.storage_call('keyring_file_add_key',
                          {'name': name, 'path': path})
        return name

    def reset(self):
        """Delete what tests make, so the next test starts from scratch."""
        for ctrlr in self.call('vhost_get_controllers'):
            self.call('vhost_delete_controller', {'ctrlr': ctrlr['ctrlr']})
        for ctrlr in self.call('bdev_nvme_get_controllers'):
            self.call('bdev_nvme_detach_controller', {'name': ctrlr['name']})
        for key in self.call('keyring_get_keys'):
            if not key['removed']:
                self.call('keyring_file_remove_key', {'name': key['name']})
        for sub in self.storage_call('nvmf_get_subsystems'):
            if sub['subtype'] == 'NVMe':
                self.storage_call('nvmf_delete_subsystem',
                                  {'nqn': sub['nqn']})
        for bdev in self.storage_call('bdev_get_bdevs'):
            if 'lvol' in bdev['driver_specific']:
                self.storage_call('bdev_lvol_delete', {'name': bdev['name']})
        for key in self.storage_call('keyring_get_keys'):
            if not key['removed']:
                self.storage_call('keyring_file_remove_key',
                                  {'name': key['name']})
        for name in os.listdir(self.compute.vhost_socket_dir):
            os.unlink(os.path.join(self.compute.vhost_socket_dir, name))


@pytest.fixture(scope='module', params=['fake', 'real'])
def nodes(request):
    both = Nodes(request.param)
    try:
        both.set_up()
        yield both
    finally:
        both.clean_up()


class Agent:
    """The compute agent's VhostTarget on the compute node, with what a
    test looks at.
    """

    def __init__(self, nodes, conf):
        self.nodes = nodes
        self.conf = conf
        self.target = vhost.VhostTarget(nodes.compute.client, conf)
        self.volume_id = str(uuid.uuid4())
        self.nqn = NQN % self.volume_id

    def attachment(self, secret=None, port=None, nqn=None, qos=None):
        return state.Attachment(
            volume_id=self.volume_id, target_nqn=nqn or self.nqn,
            host_nqn=HOST, cpu=int(COMPUTE_CPUMASK, 16).bit_length() - 1,
            portals=[('127.0.0.1', port or self.nodes.port, 'tcp')],
            dhchap_secret=secret, qos=qos)

    def refused(self, attachment):
        """The AttachError's text; nothing may be left behind."""
        with pytest.raises(spdk_exc.AttachError) as info:
            self.target.attach(attachment)
        assert self.leftovers() == {'vhost': [], 'nvme': [], 'keys': [],
                                    'files': []}
        return str(info.value)

    def leftovers(self):
        found = self.target.inventory().get(self.volume_id) or {
            'vhost': None, 'nvme': None, 'key': False, 'files': []}
        return {'vhost': self.nodes.call('vhost_get_controllers'),
                'nvme': self.nodes.call('bdev_nvme_get_controllers'),
                'keys': self.nodes.call('keyring_get_keys'),
                'files': sorted(os.path.basename(f)
                                for f in found['files'])}

    def sessions(self):
        ctrlr, = self.nodes.call('vhost_get_controllers', {
            'name': naming.vhost_controller_name(self.volume_id)})
        return ctrlr['sessions']


@pytest.fixture
def agent(nodes, tmp_path):
    conf = cfg.ConfigOpts()
    config.register(conf)
    fixture = config_fixture.Config(conf)
    fixture.setUp()
    fixture.config(group=config.GROUP,
                   socket_dir=nodes.compute.vhost_socket_dir,
                   state_dir=str(tmp_path / 'state'),
                   rpc_socket=nodes.compute.socket_path,
                   socket_group=grp.getgrgid(os.getgid()).gr_name)
    try:
        yield Agent(nodes, getattr(conf, config.GROUP))
    finally:
        fixture.cleanUp()
        nodes.reset()


# -- attach, list, detach -----------------------------------------------------

def test_attach_lists_and_detach(agent):
    nodes, vid = agent.nodes, agent.volume_id
    nodes.export(vid, HOST)
    path = agent.target.attach(agent.attachment(qos={'rw_ios_per_sec':
                                                     1500}))
    assert path == os.path.join(nodes.compute.vhost_socket_dir,
                                'vhost-' + vid)
    mode = os.stat(path)
    assert stat.S_ISSOCK(mode.st_mode)
    assert (stat.S_IMODE(mode.st_mode), mode.st_gid) == (0o660, os.getgid())
    trid = {'trtype': 'TCP', 'adrfam': 'IPv4', 'traddr': '127.0.0.1',
            'trsvcid': nodes.port, 'subnqn': agent.nqn}
    assert agent.target.controllers() == {
        'vhost': [{
            'ctrlr': 'vhost-' + vid, 'cpumask': COMPUTE_CPUMASK,
            'delay_base_us': 0, 'iops_threshold': 60000, 'socket': path,
            'sessions': [], 'backend_specific': {'block': {
                'readonly': False, 'bdev': vid + 'n1',
                'transport': 'vhost_user_blk'}}}],
        'nvme': [{'name': vid, 'ctrlrs': [{
            'state': 'enabled', 'trid': trid, 'cntlid': 1,
            'host': {'nqn': HOST, 'addr': '', 'svcid': ''}}]}]}
    bdev, = nodes.call('bdev_get_bdevs', {'name': vid + 'n1'})
    assert (bdev['uuid'], bdev['aliases'], bdev['claimed']) == (
        vid, [vid], False)
    assert bdev['assigned_rate_limits'] == dict(NO_LIMITS,
                                                rw_ios_per_sec=2000)
    assert bdev['driver_specific']['nvme'][0]['trid'] == trid
    assert bdev['driver_specific']['nvme'][0]['ctrlr_data'][
        'model_number'] == 'OpenStack Cinder SPDK'
    assert agent.target.size_bytes(vid) == VOLUME_MIB << 20
    assert agent.target.nvme_states() == {vid: 'enabled'}
    found = agent.target.inventory()
    assert list(found) == [vid]
    assert agent.target.complete(agent.attachment(), found[vid])
    # Without a session nobody has an I/O channel: changing QoS collides
    # with its set-up (bdev.py).
    assert_error(lambda: agent.target.set_qos(vid, {'rw_ios_per_sec': 3000}),
                 -32602, EAGAIN_QOS)
    # Again: the same objects, nothing new; the limits SPDK has are not
    # set again (a re-attach with no guest connected, as a hard reboot's).
    assert agent.target.attach(agent.attachment()) == path
    assert agent.target.attach(agent.attachment(
        qos={'rw_ios_per_sec': 2000})) == path
    # New limits before any guest connected: the attachment is made again
    # and starts with them.
    assert agent.target.attach(agent.attachment(
        qos={'rw_ios_per_sec': 3000})) == path
    bdev, = nodes.call('bdev_get_bdevs', {'name': vid + 'n1'})
    assert bdev['assigned_rate_limits'] == dict(NO_LIMITS,
                                                rw_ios_per_sec=3000)
    assert len(nodes.call('bdev_nvme_get_controllers')) == 1
    agent.target.detach(vid)
    assert agent.target.controllers() == {'vhost': [], 'nvme': []}
    assert not os.path.exists(path)
    agent.target.detach(vid)   # again: nothing to do


def test_subsystem_without_namespace(agent):
    agent.nodes.export(agent.volume_id, HOST, namespace=False)
    text = agent.refused(agent.attachment())
    assert 'the subsystem %s has no namespace' % agent.nqn in text


# -- refusals ----------------------------------------------------------------

def test_refused_connects(agent):
    nodes, vid = agent.nodes, agent.volume_id
    nodes.export(vid)
    closed = str(net.closed_port())
    text = agent.refused(agent.attachment(port=closed))
    assert ('could not reach the storage target at 127.0.0.1:%s: '
            'Connection refused' % closed) in text
    # Listening, but the NVMe connect is refused: not on the ACL, no such
    # subsystem.
    for attachment in (agent.attachment(),
                       agent.attachment(nqn=NQN % uuid.uuid4())):
        text = agent.refused(attachment)
        assert ('accepts TCP connections but refused the NVMe connect '
                '(SPDK: Input/output error)') in text


def test_dhchap(agent):
    nodes, vid = agent.nodes, agent.volume_id
    secret = dhchap.make_secret()
    nodes.export(vid, HOST, key=nodes.storage_key('k-' + vid, secret))
    text = agent.refused(agent.attachment())
    assert 'requires DH-HMAC-CHAP and the request carried no secret' in text
    text = agent.refused(agent.attachment(dhchap.make_secret()))
    assert 'DH-HMAC-CHAP authentication failed' in text
    agent.target.attach(agent.attachment(secret))
    key, = nodes.call('keyring_get_keys')
    # The keyring's reference and the controller's.
    assert (key['name'], key['refcnt'], key['removed']) == (
        naming.agent_key_name(vid), 2, False)
    # The refused authentications used controller IDs.
    ctrlr, = nodes.call('bdev_nvme_get_controllers')
    assert ctrlr['ctrlrs'][0]['cntlid'] == 3
    agent.target.detach(vid)
    assert agent.leftovers() == {'vhost': [], 'nvme': [], 'keys': [],
                                 'files': []}


def test_secret_for_a_host_without_key(agent):
    agent.nodes.export(agent.volume_id, HOST)
    agent.target.attach(agent.attachment(dhchap.make_secret()))
    assert agent.target.nvme_states() == {agent.volume_id: 'enabled'}


def test_replies(agent):
    """The answers VhostTarget tells apart."""
    nodes, vid = agent.nodes, agent.volume_id
    call = nodes.call
    nodes.export(vid, HOST, HOST2)
    params = {'name': vid, 'trtype': 'tcp', 'adrfam': 'ipv4',
              'traddr': '127.0.0.1', 'trsvcid': nodes.port,
              'subnqn': agent.nqn, 'hostnqn': HOST}
    attach = 'bdev_nvme_attach_controller'
    for bad, code, text in (
            ({'traddr': 'not-an-ip'}, -19, 'No such device'),
            ({'trsvcid': '70000'}, -19, 'No such device'),
            ({'dhchap_key': 'no-such-key'}, -126,
             'Required key not available'),
            ({'hostnqn': NQN % 'nope'}, -5, 'Input/output error'),
            ({'bogus': 1}, -32603, 'spdk_json_decode_object failed')):
        assert_error(lambda: call(attach, dict(params, **bad)), code, text)
    assert call(attach, params) == [vid + 'n1']
    assert_error(lambda: call(attach, params), -114,
                 'A controller named %s already exists with the specified '
                 'network path' % vid)
    assert_error(lambda: call(attach, dict(params, name='again')),
                 -17, 'File exists')
    # Another host's controller of the same namespace: its bdev would have
    # the first one's UUID, so there is none.
    assert call(attach, dict(params, name='second', hostnqn=HOST2)) == []
    assert [c['name'] for c in call('bdev_nvme_get_controllers')] == [
        vid, 'second']
    assert_error(lambda: call('bdev_nvme_get_controllers', {'name': 'nope'}),
                 22,
                 'Controller nope does not exist')
    assert [c['name'] for c in call('bdev_nvme_get_controllers',
                                    {'name': vid})] == [vid]
    assert_error(lambda: call('bdev_nvme_get_controllers', {'bogus': 1}),
                 -32603, 'spdk_json_decode_object failed')
    assert_error(lambda: call('bdev_nvme_detach_controller', {}),
                 -32603, 'spdk_json_decode_object failed')
    assert_error(lambda: call('bdev_nvme_detach_controller',
                              {'name': 'nope'}),
                 -19, 'No such device')
    create = 'vhost_create_blk_controller'
    ctrlr = {'ctrlr': 'vhost-' + vid, 'dev_name': vid + 'n1',
             'cpumask': COMPUTE_CPUMASK}
    assert_error(lambda: call(create, dict(ctrlr, dev_name='nope')),
                 -32602, 'No such device')
    assert_error(lambda: call(create, dict(ctrlr, cpumask='0x100')),
                 -32602, 'Invalid argument')
    assert_error(lambda: call(create, {'ctrlr': 'x'}),
                 -32602, 'Invalid argument')
    in_the_way = os.path.join(nodes.compute.vhost_socket_dir, 'vhost-file')
    open(in_the_way, 'w').close()
    assert_error(lambda: call(create, dict(ctrlr, ctrlr='vhost-file')),
                 -32602, 'Input/output error')
    assert call(create, ctrlr) is True
    assert_error(lambda: call(create, ctrlr), -32602, 'File exists')
    # Another controller on the same bdev: it is not claimed.
    assert call(create, dict(ctrlr, ctrlr='second')) is True
    assert_error(lambda: call('vhost_get_controllers', {'name': 'nope'}),
                 -32603, 'No such device')
    assert_error(lambda: call('vhost_get_controllers', {'bogus': 1}),
                 -32603, 'Invalid argument')
    assert_error(lambda: call('vhost_delete_controller', {'ctrlr': 'nope'}),
                 -32602, 'No such device')
    assert_error(lambda: call('vhost_delete_controller', {}),
                 -32602, 'Invalid argument')
    assert call('vhost_delete_controller', {'ctrlr': 'second'}) is True
    assert not os.path.exists(os.path.join(nodes.compute.vhost_socket_dir,
                                           'second'))
    assert_error(lambda: call('keyring_file_remove_key', {'name': 'nope'}),
                 -126, 'Required key not available')


# -- what SPDK does on its own ------------------------------------------------

def test_lost_controller_is_rebuilt(agent):
    nodes, vid = agent.nodes, agent.volume_id
    nodes.export(vid, HOST)
    path = agent.target.attach(agent.attachment())
    # What ctrlr_loss_timeout_sec running out does: the bdev goes, the
    # vhost controller stays, serving none.
    nodes.call('bdev_nvme_detach_controller', {'name': vid})
    found = agent.target.inventory()[vid]
    assert found['nvme'] is None
    assert found['vhost']['backend_specific']['block']['bdev'] is None
    assert not agent.target.complete(agent.attachment(), found)
    assert agent.target.attach(agent.attachment()) == path
    assert agent.target.complete(agent.attachment(),
                                 agent.target.inventory()[vid])


def test_a_guest_connection_is_a_session(agent):
    nodes, vid = agent.nodes, agent.volume_id
    nodes.export(vid, HOST)
    path = agent.target.attach(agent.attachment())
    guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        guest.connect(path)
        session = {'vid': 0, 'id': 0, 'name': 'vhost-%ss0' % vid,
                   'started': False, 'max_queues': 0, 'inflight_task_cnt': 0}
        assert eventually(agent.sessions, [session]) == [session]
        with pytest.raises(spdk_exc.VolumeBusy):
            agent.target.detach(vid)
        assert os.path.exists(path)
    finally:
        guest.close()
    assert eventually(agent.sessions, []) == []
    agent.target.detach(vid)
    assert not os.path.exists(path)


def test_storage_losing_the_host_is_seen(agent):
    nodes, vid = agent.nodes, agent.volume_id
    nodes.export(vid, HOST)
    agent.target.attach(agent.attachment())
    nodes.storage_call('nvmf_subsystem_remove_host',
                       {'nqn': agent.nqn, 'host': HOST})
    assert eventually(agent.target.nvme_states, {
        vid: 'reconnect_is_delayed'}) == {vid: 'reconnect_is_delayed'}
    nodes.allow(agent.nqn, HOST)
    assert eventually(agent.target.nvme_states, {vid: 'enabled'}) == {
        vid: 'enabled'}


def test_restart_forgets_all_but_the_files(agent):
    nodes, vid = agent.nodes, agent.volume_id
    nodes.export(vid, HOST)
    path = agent.target.attach(agent.attachment(dhchap.make_secret()))
    nodes.compute.restart()
    agent.target = vhost.VhostTarget(nodes.compute.client, agent.conf)
    found = agent.target.inventory()
    # The socket file stays; nothing listens on it any more.
    assert found == {vid: {'vhost': None, 'nvme': None, 'key': False,
                           'files': [path, os.path.join(
                               agent.conf.state_dir, 'keys',
                               naming.agent_key_name(vid))]}}
    assert agent.target.attach(agent.attachment(dhchap.make_secret())) == path
    assert agent.target.nvme_states() == {vid: 'enabled'}
