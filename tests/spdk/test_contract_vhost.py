"""Contract tests: FakeSPDK's vhost app (bdev_nvme, vhost, keyring, QoS,
raid1) must answer like a real SPDK v25.09 ``vhost`` attached to a real
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
NVMe-oF host, a raid member that went or came back): those assertions
wait until they hold, or time out.
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
# A raid1 with superblock keeps its data 1 MiB into each member
# (RAID_BDEV_MIN_DATA_OFFSET_SIZE; an NVMe-oF namespace of SPDK's nvmf_tgt
# has no optimal I/O boundary to round it to).
RAID_DATA_OFFSET = (1 << 20) // BLOCK
RAID_BLOCKS = (VOLUME_MIB << 20) // BLOCK - RAID_DATA_OFFSET
RAID_OPTIONS = {'process_window_size_kb': 1024,
                'process_max_bandwidth_mb_sec': 0}
NULL_UUID = '00000000-0000-0000-0000-000000000000'


def assert_error(call, code, message):
    """The call fails with this SPDK code and message (the client makes
    the typed exception of them).
    """
    with pytest.raises(spdk_exc.SPDKRPCError) as info:
        call()
    assert (info.value.code, info.value.error) == (code, message)


def eventually(look, expected):
    """``look()`` once it returns ``expected``, or its last answer."""
    return wait_for(look, lambda found: found == expected)


def wait_for(look, done):
    """``look()`` once ``done`` holds for its answer, or its last answer."""
    deadline = time.monotonic() + WAIT
    while True:
        found = look()
        if done(found) or time.monotonic() > deadline:
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
        for raid in self.call('bdev_raid_get_bdevs', {'category': 'all'}):
            self.call('bdev_raid_delete', {'name': raid['name']})
        self.call('bdev_raid_set_options', RAID_OPTIONS)
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
    assert found == {vid: {'vhost': None, 'nvme': None, 'replicas': {},
                           'raid': None, 'key': False,
                           'files': [path, os.path.join(
                               agent.conf.state_dir, 'keys',
                               naming.agent_key_name(vid))]}}
    assert agent.target.attach(agent.attachment(dhchap.make_secret())) == path
    assert agent.target.nvme_states() == {vid: 'enabled'}


# -- a replicated volume's mirror (module/bdev/raid) -------------------------
#
# vhost_target/mirror.py makes a raid1 with superblock over the namespace
# bdevs of a volume's copies (one NVMe controller per copy), lists it with
# bdev_raid_get_bdevs, deletes it, adds a copy back and bounds rebuilds
# with bdev_raid_set_options; the requests below are the ones it sends.
# Each copy here is a volume of its own on the storage node, with its own
# subsystem and namespace UUID.

class Copies:
    """Two copies of the agent's volume, exported and connected."""

    def __init__(self, agent):
        self.nodes = agent.nodes
        self.volume_id = agent.volume_id
        self.name = naming.raid_bdev_name(agent.volume_id)
        self.ids = [str(uuid.uuid4()) for _ in range(2)]
        self.members = [naming.namespace_bdev_name(
            naming.replica_controller_name(agent.volume_id, index))
            for index in range(2)]
        for copy_id in self.ids:
            self.nodes.export(copy_id, HOST)

    def connect(self, index):
        """VhostTarget._connect() of copy ``index``, with a copy's
        default loss timeouts (none: SPDK fails the copy at once).
        """
        return self.nodes.call('bdev_nvme_attach_controller', {
            'name': naming.replica_controller_name(self.volume_id, index),
            'trtype': 'tcp', 'adrfam': 'IPv4', 'traddr': '127.0.0.1',
            'trsvcid': self.nodes.port, 'subnqn': NQN % self.ids[index],
            'hostnqn': HOST, 'ctrlr_loss_timeout_sec': 0,
            'reconnect_delay_sec': 0, 'fast_io_fail_timeout_sec': 0})

    def disconnect(self, index):
        self.nodes.call('bdev_nvme_detach_controller', {
            'name': naming.replica_controller_name(self.volume_id, index)})

    def create(self, members=None):
        return self.nodes.call('bdev_raid_create', {
            'name': self.name, 'raid_level': 'raid1',
            'base_bdevs': members or self.members, 'superblock': True})

    def listing(self):
        return {raid['name']: raid for raid in self.nodes.call(
            'bdev_raid_get_bdevs', {'category': 'all'})}

    def raid(self):
        return self.listing().get(self.name)

    def add(self, member, raid=None):
        return self.nodes.call('bdev_raid_add_base_bdev', {
            'raid_bdev': raid or self.name, 'base_bdev': member})

    def serve(self):
        """The vhost controller over the mirror (VhostTarget)."""
        return self.nodes.call('vhost_create_blk_controller', {
            'ctrlr': naming.vhost_controller_name(self.volume_id),
            'dev_name': self.name, 'cpumask': COMPUTE_CPUMASK})

    def served(self):
        ctrlr, = self.nodes.call('vhost_get_controllers', {
            'name': naming.vhost_controller_name(self.volume_id)})
        return ctrlr['backend_specific']['block']['bdev']

    def claimed(self, index):
        bdev, = self.nodes.call('bdev_get_bdevs',
                                {'name': self.members[index]})
        return bdev['claimed'], bdev.get('claim_type')

    def slot(self, index, configured=True, uuid=None):
        """A base_bdevs_list entry: copy ``index`` in the mirror."""
        return {'name': self.members[index] if configured else None,
                'uuid': uuid or self.ids[index],
                'is_configured': configured,
                'data_offset': RAID_DATA_OFFSET, 'data_size': RAID_BLOCKS}

    def entry(self, raid_uuid, slots=None, state='online', discovered=2,
              operational=2):
        """A bdev_raid_get_bdevs entry."""
        return {'name': self.name, 'uuid': raid_uuid, 'strip_size_kb': 0,
                'state': state, 'raid_level': 'raid1', 'superblock': True,
                'num_base_bdevs': 2, 'num_base_bdevs_discovered': discovered,
                'num_base_bdevs_operational': operational,
                'base_bdevs_list': slots or [self.slot(0), self.slot(1)]}


# An empty slot: its member went away (raid_bdev_free_base_bdev_resource()).
GONE = {'name': None, 'uuid': NULL_UUID, 'is_configured': False,
        'data_offset': 0, 'data_size': RAID_BLOCKS}


@pytest.fixture
def copies(agent):
    found = Copies(agent)
    for index in range(2):
        assert found.connect(index) == [found.members[index]]
    return found


def raid_failure(name, text, member=None):
    if member is None:
        return 'Failed to create RAID bdev %s: %s' % (name, text)
    return 'Failed to add base bdev %s to RAID bdev %s: %s' % (member, name,
                                                               text)


def test_mirror_made_and_listed(copies):
    call, name = copies.nodes.call, copies.name
    assert copies.listing() == {}
    assert copies.create() is True
    raid = copies.raid()
    raid_uuid = raid['uuid']
    assert str(uuid.UUID(raid_uuid)) == raid_uuid
    assert raid == copies.entry(raid_uuid)
    # SPDK's order (it sends "uuid" twice; the second is the same).
    assert list(raid) == [
        'name', 'uuid', 'strip_size_kb', 'state', 'raid_level', 'superblock',
        'num_base_bdevs', 'num_base_bdevs_discovered',
        'num_base_bdevs_operational', 'base_bdevs_list']
    assert call('bdev_raid_get_bdevs', {'category': 'online'}) == [raid]
    for category in ('configuring', 'offline'):
        assert call('bdev_raid_get_bdevs', {'category': category}) == []
    bdev = {
        'name': name, 'aliases': [raid_uuid], 'product_name': 'Raid Volume',
        'block_size': BLOCK, 'num_blocks': RAID_BLOCKS,
        'preferred_write_alignment': 0, 'preferred_write_granularity': 0,
        'optimal_write_size': 0, 'preferred_unmap_alignment': 0,
        'preferred_unmap_granularity': 0, 'uuid': raid_uuid,
        'assigned_rate_limits': NO_LIMITS, 'claimed': False, 'zoned': False,
        'supported_io_types': {
            'read': True, 'write': True, 'unmap': True, 'flush': True,
            'reset': True, 'nvme_admin': False, 'nvme_io': False,
            'nvme_io_md': False, 'write_zeroes': True, 'zcopy': False,
            'get_zone_info': False, 'zone_management': False,
            'zone_append': False, 'compare': False,
            'compare_and_write': False, 'abort': False, 'seek_hole': False,
            'seek_data': False, 'copy': False, 'nvme_iov_md': False,
            'nvme_nssr': False},
        # Its members'.
        'memory_domains': [{'dma_device_id': 'system',
                            'dma_device_type': 1}] * 2,
        'driver_specific': {'raid': {
            k: v for k, v in raid.items() if k != 'name'}}}
    assert call('bdev_get_bdevs', {'name': name}) == [bdev]
    assert call('bdev_get_bdevs', {'name': raid_uuid}) == [bdev]
    for index in range(2):
        assert copies.claimed(index) == (True, 'exclusive_write')
    # The agent serves it and limits it as a single copy's namespace bdev.
    assert copies.serve() is True
    assert copies.served() == name
    assert call('bdev_set_qos_limit', {'name': name,
                                       'rw_ios_per_sec': 2000}) is True
    assert_error(lambda: call('bdev_set_qos_limit', {
        'name': name, 'rw_ios_per_sec': 3000}), -32602, EAGAIN_QOS)
    assert [copies.claimed(i) for i in range(2)] == [
        (True, 'exclusive_write')] * 2


def test_mirror_replies(copies):
    """The refusals the agent meets, and the options it sets."""
    call, name, members = copies.nodes.call, copies.name, copies.members
    create = 'bdev_raid_create'
    params = {'name': name, 'raid_level': 'raid1', 'base_bdevs': members,
              'superblock': True}
    for bad in ({'raid_level': 'raid9'}, {'bogus': 1}, {'base_bdevs': None}):
        assert_error(lambda: call(create, dict(params, **bad)),
                     -32700, 'spdk_json_decode_object failed')
    assert_error(lambda: call(create, dict(params, base_bdevs=[''])),
                 -22, 'The base bdev name cannot be empty: Invalid argument')
    for bad in ({'strip_size_kb': 64}, {'base_bdevs': members[:1]}):
        assert_error(lambda: call(create, dict(params, **bad)),
                     -22, raid_failure(name, 'Invalid argument'))
    assert_error(lambda: call(create, dict(params, name='x' * 64)),
                 -22, raid_failure('x' * 64, 'Invalid argument'))
    assert copies.listing() == {}
    assert copies.create() is True
    raid = copies.raid()
    assert_error(copies.create, -17, raid_failure(name, 'File exists'))
    # Its members are claimed: the failed raid goes again.
    assert_error(lambda: call(create, dict(params, name='other')),
                 -1, raid_failure('other', 'Operation not permitted'))
    assert copies.listing() == {name: raid}
    assert_error(lambda: call('bdev_raid_delete', {'name': 'nope'}),
                 -19, 'raid bdev nope not found')
    assert_error(lambda: call('bdev_raid_delete', {}),
                 -32700, 'spdk_json_decode_object failed')
    assert_error(lambda: copies.add(members[0], raid='nope'),
                 -19, 'raid bdev nope is not found in config')
    # A whole mirror has no empty slot.
    for member in ('nope', members[0]):
        assert_error(lambda: copies.add(member), -22,
                     raid_failure(name, 'Invalid argument', member))
    assert_error(lambda: call('bdev_raid_add_base_bdev', {'raid_bdev': name}),
                 -32603, 'spdk_json_decode_object failed')
    listing = 'bdev_raid_get_bdevs'
    for bad in (None, {'category': 'all', 'bogus': 1}):
        assert_error(lambda: call(listing, bad),
                     -32700, 'spdk_json_decode_object failed')
    # A state's name in any case; "all" only so.
    assert call(listing, {'category': 'ONLINE'}) == [raid]
    assert_error(lambda: call(listing, {'category': 'ALL'}),
                 -22, 'Invalid argument')
    options = 'bdev_raid_set_options'
    assert call(options, {'process_max_bandwidth_mb_sec': 256}) is True
    assert call(options) is True
    assert_error(lambda: call(options, {'process_window_size_kb': 0}),
                 -22, 'Invalid argument')
    assert_error(lambda: call(options, {'bogus': 1}),
                 -32700, 'spdk_json_decode_object failed')


def test_mirror_waits_for_a_missing_member(copies):
    """Created over a bdev that is not there (yet), a mirror waits for
    it, unregistered.
    """
    call, name = copies.nodes.call, copies.name
    copies.disconnect(1)
    assert copies.create() is True
    raid_uuid = copies.raid()['uuid']
    waiting = dict(copies.slot(1), uuid=NULL_UUID, is_configured=False,
                   data_offset=0, data_size=0)
    assert copies.listing() == {name: copies.entry(
        raid_uuid, [copies.slot(0), waiting], state='configuring',
        discovered=1)}
    assert call('bdev_raid_get_bdevs', {'category': 'online'}) == []
    assert_error(lambda: call('bdev_get_bdevs', {'name': name}),
                 -19, 'No such device')
    assert copies.claimed(0) == (True, 'exclusive_write')
    # Unlike an online mirror, a waiting one stays when its member goes,
    # keeping the member's UUID.
    copies.disconnect(0)
    left = copies.entry(raid_uuid, [
        dict(copies.slot(0, configured=False), data_offset=0), waiting],
        state='configuring', discovered=0)
    assert eventually(copies.raid, left) == left
    assert call('bdev_raid_delete', {'name': name}) is True
    assert copies.listing() == {}
    copies.connect(0)
    assert copies.claimed(0) == (False, None)


def test_mirror_delete_keeps_the_superblocks(copies):
    """Deleted, the mirror leaves its superblock on the copies: made again
    over them it is refused; their bdevs appearing bring it back.
    """
    call, name = copies.nodes.call, copies.name
    assert copies.create() is True
    raid_uuid = copies.raid()['uuid']
    assert copies.serve() is True
    assert call('bdev_raid_delete', {'name': name}) is True
    assert copies.listing() == {}
    assert [copies.claimed(i) for i in range(2)] == [(False, None)] * 2
    assert_error(lambda: call('bdev_get_bdevs', {'name': name}),
                 -19, 'No such device')
    # The vhost controller stays, serving none (hot remove).
    assert copies.served() is None
    # Another raid's superblock on the members (bdev_raid.c
    # raid_bdev_configure_base_bdev_check_sb_cb()).
    assert_error(copies.create, -17, raid_failure(name, 'File exists'))
    assert copies.listing() == {}
    assert [copies.claimed(i) for i in range(2)] == [(False, None)] * 2
    # Examine assembles it again from the superblocks, with its UUID:
    # waiting for the other copy the superblock counts in sync...
    copies.disconnect(0)
    copies.disconnect(1)
    copies.connect(0)
    waiting = copies.entry(raid_uuid, [
        copies.slot(0), copies.slot(1, configured=False)],
        state='configuring', discovered=1)
    assert wait_for(copies.listing, lambda found: found.get(name)) == {
        name: waiting}
    assert_error(lambda: call('bdev_get_bdevs', {'name': name}),
                 -19, 'No such device')
    # ...and online once it is there.
    copies.connect(1)
    assert eventually(copies.raid, copies.entry(raid_uuid)) == copies.entry(
        raid_uuid)
    assert call('bdev_get_bdevs', {'name': name})[0]['uuid'] == raid_uuid
    # The vhost controller does not take the bdev back by itself.
    assert copies.served() is None


def test_mirror_takes_back_a_copy_that_was_away(copies):
    """A copy whose controller was detached leaves the mirror degraded
    (online, serving); connected again, SPDK re-adds it by itself from its
    superblock and rebuilds it: the agent's add then has no slot to fill.
    """
    call, name, members = copies.nodes.call, copies.name, copies.members
    # A rebuild allocates 16 windows of DMA memory when it starts; with the
    # default 1 MiB windows a tight vhost app (-s 256 here) fails it with
    # ENOMEM and drops the copy again. 2 MiB/s makes it last ~3.5 s.
    assert call('bdev_raid_set_options', {
        'process_window_size_kb': 64,
        'process_max_bandwidth_mb_sec': 2}) is True
    window = 64 * 1024 // BLOCK
    assert copies.create() is True
    raid_uuid = copies.raid()['uuid']
    assert copies.serve() is True
    copies.disconnect(1)
    degraded = copies.entry(raid_uuid, [copies.slot(0), GONE],
                            discovered=1, operational=1)
    assert eventually(copies.raid, degraded) == degraded
    assert copies.served() == name
    bdev, = call('bdev_get_bdevs', {'name': name})
    assert (bdev['num_blocks'], bdev['memory_domains'],
            bdev['driver_specific']) == (
        RAID_BLOCKS, [{'dma_device_id': 'system', 'dma_device_type': 1}],
        {'raid': {k: v for k, v in degraded.items() if k != 'name'}})
    assert_error(lambda: copies.add('nope'), -19,
                 raid_failure(name, 'No such device', 'nope'))
    copies.connect(1)
    rebuilding = wait_for(copies.raid, lambda raid: raid.get('process'))
    process = rebuilding.pop('process')
    assert rebuilding == copies.entry(raid_uuid)
    blocks = process['progress']['blocks']
    assert process == {'type': 'rebuild', 'target': members[1],
                       'progress': {'blocks': blocks,
                                    'percent': blocks * 100 // RAID_BLOCKS}}
    assert 0 <= blocks < RAID_BLOCKS and blocks % window == 0
    assert_error(lambda: copies.add(members[1]), -1,
                 raid_failure(name, 'Operation not permitted', members[1]))
    assert eventually(copies.raid, copies.entry(raid_uuid)) == copies.entry(
        raid_uuid)
    assert_error(lambda: copies.add(members[1]), -22,
                 raid_failure(name, 'Invalid argument', members[1]))
    assert copies.served() == name


def test_copy_losing_its_target_is_failed(agent, copies):
    """A copy's controller (no loss timeout) whose target turns it away
    is listed failed, not reconnecting: the agent detaches it; taken back,
    it is enabled again by SPDK's own tries.
    """
    names = [naming.replica_controller_name(copies.volume_id, index)
             for index in range(2)]
    agent.nodes.storage_call('nvmf_subsystem_remove_host',
                             {'nqn': NQN % copies.ids[1], 'host': HOST})
    failed = {names[0]: 'enabled', names[1]: 'failed'}
    assert eventually(agent.target.nvme_states, failed) == failed
    agent.nodes.allow(NQN % copies.ids[1], HOST)
    enabled = dict.fromkeys(names, 'enabled')
    assert eventually(agent.target.nvme_states, enabled) == enabled


def test_mirror_lost_then_put_back(copies):
    """Both copies gone, the mirror goes; their bdevs back, examine
    assembles it from the newest superblock, without the copy it records
    missing: that one the agent adds, and it is rebuilt.
    """
    call, name, members = copies.nodes.call, copies.name, copies.members
    assert call('bdev_raid_set_options',
                {'process_window_size_kb': 64}) is True
    assert copies.create() is True
    raid_uuid = copies.raid()['uuid']
    assert copies.serve() is True
    copies.disconnect(0)
    degraded = copies.entry(raid_uuid, [GONE, copies.slot(1)],
                            discovered=1, operational=1)
    assert eventually(copies.raid, degraded) == degraded
    copies.disconnect(1)
    assert eventually(copies.listing, {}) == {}
    assert copies.served() is None
    # Copy 0's superblock predates its loss: it counts both copies in
    # sync, so the mirror waits for copy 1...
    copies.connect(0)
    waiting = copies.entry(raid_uuid, [
        copies.slot(0), copies.slot(1, configured=False)],
        state='configuring', discovered=1)
    assert wait_for(copies.listing, lambda found: found.get(name)) == {
        name: waiting}
    # ...whose newer superblock records copy 0 missing: the mirror is made
    # again from it, degraded, and copy 0 is let go.
    copies.connect(1)
    degraded = copies.entry(raid_uuid, [
        dict(GONE, data_offset=RAID_DATA_OFFSET), copies.slot(1)],
        discovered=1, operational=1)
    assert eventually(copies.raid, degraded) == degraded
    assert copies.claimed(0) == (False, None)
    assert copies.add(members[0]) is True
    assert eventually(copies.raid, copies.entry(raid_uuid)) == copies.entry(
        raid_uuid)
    assert copies.claimed(0) == (True, 'exclusive_write')


def mirrored_attachment(agent, copies):
    """The agent's attachment of a volume of ``copies``."""
    return state.Attachment(
        volume_id=agent.volume_id, target_nqn=None, portals=None,
        host_nqn=HOST, cpu=int(COMPUTE_CPUMASK, 16).bit_length() - 1,
        replicas=[(NQN % copy_id, [('127.0.0.1', agent.nodes.port, 'tcp')])
                  for copy_id in copies.ids])


def test_mirror_attached_by_the_agent(agent):
    """VhostTarget's attach of a replicated volume: a mirror of its
    copies, served; detached and attached again, the copies' superblocks
    bring back the same mirror, which the attach takes.
    """
    copies = Copies(agent)
    attachment = mirrored_attachment(agent, copies)
    path = agent.target.attach(attachment)
    raid = copies.raid()
    assert raid == copies.entry(raid['uuid'])
    assert copies.served() == copies.name
    found = agent.target.inventory()[agent.volume_id]
    assert (sorted(found['replicas']), found['raid']) == ([0, 1], raid)
    assert agent.target.complete(attachment, found)
    assert agent.target.size_bytes(agent.volume_id, replicated=True) == (
        RAID_BLOCKS * BLOCK)
    assert agent.target.attach(attachment) == path
    agent.target.detach(agent.volume_id, copies=2)
    assert copies.listing() == {}
    assert agent.target.controllers() == {'vhost': [], 'nvme': []}
    assert agent.target.attach(attachment) == path
    assert copies.raid() == raid
    assert copies.served() == copies.name


def test_mirror_attached_without_a_copy_it_cannot_connect(agent):
    """A copy whose target turns the host away: the attach mirrors the
    other copy when that one's superblock records the copy out of the
    mirror (it left under the guest's writes), and is refused, leaving
    nothing, when it counts the copy in sync (the copy may be the newer
    one). Connected again, the copy is rebuilt.
    """
    copies = Copies(agent)
    attachment = mirrored_attachment(agent, copies)
    nqn = NQN % copies.ids[1]
    # The rebuild's buffers in the test's small vhost app.
    assert agent.nodes.call('bdev_raid_set_options',
                            {'process_window_size_kb': 64}) is True
    for copy_id in copies.ids:
        agent.nodes.storage_call('nvmf_subsystem_remove_host',
                                 {'nqn': NQN % copy_id, 'host': HOST})
    assert 'no copy can be connected' in agent.refused(attachment)
    for copy_id in copies.ids:
        agent.nodes.allow(NQN % copy_id, HOST)
    path = agent.target.attach(attachment)
    raid_uuid = copies.raid()['uuid']
    agent.target.detach(agent.volume_id, copies=2)
    agent.nodes.storage_call('nvmf_subsystem_remove_host',
                             {'nqn': nqn, 'host': HOST})
    text = agent.refused(attachment)
    assert 'copy 1 cannot be connected' in text
    assert 'counts it in sync' in text
    assert copies.listing() == {}
    agent.nodes.allow(nqn, HOST)
    assert agent.target.attach(attachment) == path
    # The health check takes a failed copy's controller away so.
    agent.target.disconnect(
        naming.replica_controller_name(agent.volume_id, 1))
    degraded = copies.entry(raid_uuid, [copies.slot(0), GONE],
                            discovered=1, operational=1)
    assert eventually(copies.raid, degraded) == degraded
    agent.target.detach(agent.volume_id, copies=2)
    agent.nodes.storage_call('nvmf_subsystem_remove_host',
                             {'nqn': nqn, 'host': HOST})
    assert agent.target.attach(attachment) == path
    assembled = copies.entry(raid_uuid, [
        copies.slot(0), dict(GONE, data_offset=RAID_DATA_OFFSET)],
        discovered=1, operational=1)
    assert eventually(copies.raid, assembled) == assembled
    assert copies.served() == copies.name
    agent.nodes.allow(nqn, HOST)
    agent.target.reconnect_copy(attachment, 1)
    assert eventually(copies.raid, copies.entry(raid_uuid)) == copies.entry(
        raid_uuid)
