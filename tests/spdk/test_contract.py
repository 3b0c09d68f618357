"""Contract tests: FakeSPDK must answer like a real SPDK v25.09 target.

Every test runs twice, against ``fake`` (tests/fixtures/fake_spdk) and
against ``real`` (nvmf_tgt; skipped when SPDK is not installed), and asserts
the same observable result on both: result shapes and values, and for
errors the typed exception the product sees (spdk_common.exception), SPDK's
code and its message.

The requests come from the product's own classes -- cinder_driver.lvols
``Lvols``, cinder_driver.exports ``NVMeoFExports``, spdk_common.dhchap
``KeyFiles`` and the AIO and shallow-copy helpers of cinder_driver.image_copy
-- so that the contract follows the product when its requests change. Their
client records every answer SPDK gives, so that an error the product handles
itself (an lvol already gone, a host already allowed) is still pinned by its
code and message. State is read back with SPDK's listing RPCs, which only
observe. A request the product does not send through those classes is made
by hand, and says why where it is made. Sizes are the product's whole GiB,
except where SPDK rounds sizes or copies clusters (``sizes_in_mib()``).

One target per module and parameter keeps the real run short; the ``spdk``
fixture deletes whatever a test created so that tests stay independent.
"""

import contextlib
import json
import os
import socket
from unittest import mock
import uuid

import pytest

from cinder_driver import exports
from cinder_driver import image_copy
from cinder_driver import lvols
from spdk_common import dhchap
from spdk_common import exception as spdk_exc
from spdk_common import naming
from spdk_common import qos as spdk_qos
from tests.fixtures import spdk as spdk_fixtures

MIB = 1 << 20
GIB = 1 << 30
CLUSTER_MIB = 4
CLUSTER = CLUSTER_MIB * MIB
BLOCK = 512
# Cinder sizes volumes in whole GiB: room for a few thick ones.
LVSTORE_MIB = 4096
# 4 GiB of 4 MiB clusters, minus two clusters of blobstore metadata.
TOTAL_DATA_CLUSTERS = 1022
GIB_CLUSTERS = GIB // CLUSTER
ADDRESS = '127.0.0.1'
NQN_PREFIX = 'nqn.2010-10.org.openstack:spdk-contract'
HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:%s'
NO_LIMITS = dict.fromkeys(spdk_qos.LIMIT_KEYS, 0)
EAGAIN_QOS = ('Failed to configure rate limit: Resource temporarily '
              'unavailable')

BDEV_SHAPE = {
    'name': str, 'aliases': list, 'product_name': str, 'block_size': int,
    'num_blocks': int, 'preferred_write_alignment': int,
    'preferred_write_granularity': int, 'optimal_write_size': int,
    'preferred_unmap_alignment': int, 'preferred_unmap_granularity': int,
    'uuid': str, 'assigned_rate_limits': dict, 'claimed': bool,
    'zoned': bool, 'supported_io_types': dict, 'driver_specific': dict}
LVOL_SHAPE = {
    'lvol_store_uuid': str, 'base_bdev': str, 'thin_provision': bool,
    'num_allocated_clusters': int, 'snapshot': bool, 'clone': bool,
    'esnap_clone': bool}
LVSTORE_SHAPE = {
    'uuid': str, 'name': str, 'base_bdev': str, 'total_data_clusters': int,
    'free_clusters': int, 'block_size': int, 'cluster_size': int}
SUBSYSTEM_SHAPE = {
    'nqn': str, 'subtype': str, 'listen_addresses': list,
    'allow_any_host': bool, 'hosts': list, 'serial_number': str,
    'model_number': str, 'max_namespaces': int, 'min_cntlid': int,
    'max_cntlid': int, 'namespaces': list}
TRANSPORT_SHAPE = {
    'trtype': str, 'max_queue_depth': int, 'max_io_qpairs_per_ctrlr': int,
    'in_capsule_data_size': int, 'max_io_size': int, 'io_unit_size': int,
    'max_aq_depth': int, 'num_shared_buffers': int, 'buf_cache_size': int,
    'dif_insert_or_strip': bool, 'zcopy': bool, 'c2h_success': bool,
    'sock_priority': int, 'abort_timeout_sec': int, 'ack_timeout': int,
    'data_wr_pool_size': int}
LVOL_LISTING_SHAPE = {
    'alias': str, 'uuid': str, 'name': str, 'is_thin_provisioned': bool,
    'is_snapshot': bool, 'is_clone': bool, 'is_esnap_clone': bool,
    'is_degraded': bool, 'num_allocated_clusters': int, 'lvs': dict}
KEY_SHAPE = {'name': str, 'module': str, 'removed': bool, 'probed': bool,
             'refcnt': int, 'path': str}

IO_TYPES = ('read', 'write', 'unmap', 'flush', 'reset', 'nvme_admin',
            'nvme_io', 'nvme_io_md', 'write_zeroes', 'zcopy', 'get_zone_info',
            'zone_management', 'zone_append', 'compare', 'compare_and_write',
            'abort', 'seek_hole', 'seek_data', 'copy', 'nvme_iov_md',
            'nvme_nssr')


def io_types(*supported):
    return {t: t in supported for t in IO_TYPES}


LVOL_IO = io_types('read', 'write', 'unmap', 'reset', 'write_zeroes',
                   'seek_hole', 'seek_data')
READ_ONLY_LVOL_IO = io_types('read', 'reset', 'seek_hole', 'seek_data')
AIO_IO = io_types('read', 'write', 'flush', 'reset', 'write_zeroes')


def assert_shape(obj, shape):
    """Exactly these keys, with exactly these JSON types (bool is not int)."""
    assert {k: type(v) for k, v in obj.items()} == shape


def assert_answer(exc, exc_class, code, message):
    """SPDK's error: this typed exception, SPDK code and message."""
    assert isinstance(exc, spdk_exc.SPDKRPCError), exc
    assert (type(exc).__name__, exc.code, exc.error) == (
        exc_class.__name__, code, message)


def assert_error(call, exc_class, code, message):
    """The call fails with this typed exception, SPDK code and message."""
    with pytest.raises(spdk_exc.SPDKRPCError) as info:
        call()
    assert_answer(info.value, exc_class, code, message)


def free_tcp_port():
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return sock.getsockname()[1]


def new_id():
    """A Cinder id, as Cinder writes it."""
    return str(uuid.uuid4())


# -- the targets --------------------------------------------------------------

@pytest.fixture(scope='module', params=['fake', 'real'])
def target(request):
    if request.param == 'real':
        fixture = spdk_fixtures.SPDKTarget(size_mib=LVSTORE_MIB,
                                           cluster_mib=CLUSTER_MIB)
    else:
        fixture = spdk_fixtures.FakeSPDKTarget(size_mib=LVSTORE_MIB,
                                               cluster_mib=CLUSTER_MIB)
    # Raises SkipTest (one line) for 'real' when SPDK is not installed.
    fixture.setUp()
    try:
        fixture.listen_port = str(free_tcp_port())
        yield fixture
    finally:
        fixture.cleanUp()


class ProductClient:
    """The SPDK client the product's classes are given.

    It sends through the target's client of the moment (a restart replaces
    it, where the product's own client would reconnect) and keeps SPDK's
    answer to every request: a result, or the typed exception raised.
    """

    def __init__(self, target):
        self._target = target
        self.socket_path = target.socket_path
        self.answers = []

    def call(self, method, params=None, timeout=None):
        try:
            result = self._target.client.call(method, params, timeout)
        except spdk_exc.SPDKRPCError as exc:
            self.answers.append((method, exc))
            raise
        self.answers.append((method, result))
        return result

    def answer(self, method):
        """SPDK's last answer to the product's ``method``."""
        for sent, answer in reversed(self.answers):
            if sent == method:
                return answer
        raise AssertionError('the product sent no %s' % method)


class SPDK:
    """One target, the product's classes on it, and what tests read back."""

    def __init__(self, target, tmp_path):
        self.target = target
        self.lvs = target.lvstore
        self.tmp_path = tmp_path
        self.client = ProductClient(target)
        self.state_file = str(tmp_path / 'state' / 'spdk.json')
        self.lvols = lvols.Lvols(self.client, state_file=self.state_file)
        self.keys = dhchap.KeyFiles(self.client, str(tmp_path / 'keys'))
        self.keys.setup()
        self.exports = self.make_exports()
        self._aio_files = contextlib.ExitStack()

    def make_exports(self):
        """NVMeoFExports as SPDKDriver.do_setup() makes them; a second one
        stands for a cinder-volume that started again with what Cinder's
        database says (NVMeoFExports.remember()).
        """
        return exports.NVMeoFExports(self.client, NQN_PREFIX, [ADDRESS],
                                     self.target.listen_port, keys=self.keys)

    # Reading back, and the few requests the product does not send through
    # its classes (each caller says why) --------------------------------

    def call(self, method, params=None):
        return self.target.client.call(method, params)

    def fails(self, method, params, exc_class, code, message):
        assert_error(lambda: self.call(method, params), exc_class, code,
                     message)

    @staticmethod
    def unique(prefix):
        return '%s-%s' % (prefix, uuid.uuid4().hex[:8])

    def alias(self, name):
        return naming.lvol_alias(self.lvs, name)

    def bdev(self, name):
        found = self.call('bdev_get_bdevs', {'name': name})
        assert len(found) == 1
        return found[0]

    def lvol(self, name):
        return self.bdev(name)['driver_specific']['lvol']

    def lvstore(self):
        return self.call('bdev_lvol_get_lvstores', {'lvs_name': self.lvs})[0]

    def free(self):
        return self.lvstore()['free_clusters']

    def subsystem(self, nqn):
        return self.call('nvmf_get_subsystems', {'nqn': nqn})[0]

    def hidden_snapshots(self):
        """What Lvols keeps in its state file."""
        with open(self.state_file) as f:
            return json.load(f)['hidden_snapshots']

    def sparse_file(self, name, size_mib):
        path = str(self.tmp_path / name)
        with open(path, 'wb') as f:
            f.truncate(size_mib * MIB)
        return path

    # The product's requests ----------------------------------------------

    @staticmethod
    def sizes_in_mib():
        """Lvols' requests with sizes in MiB rather than GiB.

        The product's volumes are whole GiB, so whole clusters, and copying
        one (inflating, decoupling, shallow-copying) writes a GiB; SPDK's
        rounding and copies of clusters are pinned on lvols of a few MiB.
        """
        return mock.patch.object(lvols, 'gib_to_mib', int)

    def small_thick_lvol(self):
        """A thick lvol of two clusters, for SPDK's copies of clusters."""
        name = self.unique('small')
        with self.sizes_in_mib():
            self.lvols.create(self.lvs, name, 2 * CLUSTER_MIB, thin=False)
        return self.alias(name)

    def volume(self, size_gb=1, thin=True):
        name = naming.volume_lvol_name(new_id())
        self.lvols.create(self.lvs, name, size_gb, thin)
        return self.alias(name)

    def snapshot(self, alias):
        name = naming.snapshot_lvol_name(new_id())
        self.lvols.snapshot(alias, name)
        return self.alias(name)

    def clone(self, snapshot_alias, size_gb=1):
        name = naming.volume_lvol_name(new_id())
        self.lvols.clone(snapshot_alias, name, size_gb)
        return self.alias(name)

    def export(self, alias, qos_limits=None):
        """SPDKDriver.check_for_setup_error() makes the transport;
        create_export() exports.
        """
        volume_id = new_id()
        self.exports.ensure_transport()
        nqn = self.exports.export(volume_id, alias, qos_limits)
        return volume_id, nqn

    def aio(self, name, size_mib):
        """An AIO bdev over a new file, as image_copy makes them; removed
        at the end of the test.
        """
        path = self.sparse_file(name, size_mib)
        self._aio_files.enter_context(
            image_copy.AioFile(self.client, name, path))
        return path

    # Clean-up -------------------------------------------------------------

    def reset(self):
        """Delete what tests make, so the next test starts from scratch."""
        for sub in self.call('nvmf_get_subsystems'):
            if sub['subtype'] == 'NVMe':
                self.call('nvmf_delete_subsystem', {'nqn': sub['nqn']})
        for _attempt in range(20):
            lvol_bdevs = [b for b in self.call('bdev_get_bdevs')
                          if 'lvol' in b['driver_specific']]
            if not lvol_bdevs:
                break
            # Leaves first: a snapshot goes once its clones are gone.
            for bdev in lvol_bdevs:
                if not bdev['driver_specific']['lvol'].get('clones'):
                    try:
                        self.call('bdev_lvol_delete', {'name': bdev['name']})
                    except spdk_exc.SPDKRPCError:
                        pass
        for key in self.call('keyring_get_keys'):
            if not key['removed']:
                self.call('keyring_file_remove_key', {'name': key['name']})
        self._aio_files.close()
        for bdev in self.call('bdev_get_bdevs'):
            if 'aio' in bdev['driver_specific'] and bdev['name'] != 'aio0':
                self.call('bdev_aio_delete', {'name': bdev['name']})
        # Every cluster must be free again: a leak would be a fake bug.
        assert self.free() == TOTAL_DATA_CLUSTERS


@pytest.fixture
def spdk(target, tmp_path):
    helper = SPDK(target, tmp_path)
    yield helper
    helper.reset()


# -- application --------------------------------------------------------------

def test_spdk_get_version(spdk):
    # SPDKDriver.check_for_setup_error() reads it.
    version = spdk.call('spdk_get_version')
    assert_shape(version, {'version': str, 'fields': dict})
    assert_shape(version['fields'], {'major': int, 'minor': int,
                                     'patch': int, 'suffix': str})
    assert version['version'] == 'SPDK v25.09'
    assert (version['fields']['major'], version['fields']['minor']) == (25, 9)


def test_unknown_method(spdk):
    # What an SPDK built without one of the product's modules answers.
    spdk.fails('no_such_method', None, spdk_exc.SPDKMethodNotFound, -32601,
               'Method not found')


def test_wire_format_pipelined_requests(spdk):
    # The product's client pipelines requests on one connection
    # (spdk_common/rpc.py): several requests in one write; each reply
    # carries its id and ends with '\n', and replies may arrive in one read.
    requests = [{'jsonrpc': '2.0', 'method': m, 'id': i}
                for i, m in enumerate(['spdk_get_version', 'no_such_method',
                                       'bdev_lvol_get_lvstores'], 1)]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(spdk.target.socket_path)
        sock.sendall(''.join(json.dumps(r) for r in requests).encode())
        data = b''
        while data.count(b'\n') < len(requests):
            chunk = sock.recv(1 << 16)
            assert chunk, 'connection closed early'
            data += chunk
    replies = [json.loads(line) for line in data.decode().splitlines()]
    assert [(r['jsonrpc'], r['id']) for r in replies] == [
        ('2.0', 1), ('2.0', 2), ('2.0', 3)]
    assert replies[1]['error'] == {'code': -32601,
                                   'message': 'Method not found'}
    assert 'result' in replies[0] and 'result' in replies[2]


# -- lvstores and lvols -------------------------------------------------------

def test_lvstores(spdk):
    # SPDKDriver._refresh_lvstores()
    stores = spdk.call('bdev_lvol_get_lvstores')
    assert len(stores) == 1
    assert_shape(stores[0], LVSTORE_SHAPE)
    store = stores[0]
    assert (store['name'], store['base_bdev'], store['block_size'],
            store['cluster_size'], store['total_data_clusters'],
            store['free_clusters']) == (
        spdk.lvs, 'aio0', BLOCK, CLUSTER, TOTAL_DATA_CLUSTERS,
        TOTAL_DATA_CLUSTERS)
    assert spdk.call('bdev_lvol_get_lvstores',
                     {'lvs_name': spdk.lvs}) == stores
    spdk.fails('bdev_lvol_get_lvstores', {'lvs_name': 'no-such-lvs'},
               spdk_exc.SPDKNotFound, -19, 'No such device')


def test_create_lvstore(spdk):
    name = spdk.unique('file')
    path = spdk.sparse_file(name, 64)
    lvs_name = spdk.unique('lvs')
    # The product only uses existing lvstores: this request is the
    # fixtures' (tests/fixtures/spdk.py).
    params = {'bdev_name': name, 'lvs_name': lvs_name, 'cluster_sz': CLUSTER}
    with image_copy.AioFile(spdk.client, name, path):
        lvs_uuid = spdk.call('bdev_lvol_create_lvstore', params)
        [store] = spdk.call('bdev_lvol_get_lvstores', {'lvs_name': lvs_name})
        assert (store['uuid'], store['base_bdev'],
                store['total_data_clusters'], store['free_clusters']) == (
            lvs_uuid, name, 15, 15)
        assert spdk.bdev(name)['claim_type'] == 'read_many_write_one'
        spdk.fails('bdev_lvol_create_lvstore', dict(params, lvs_name='other'),
                   spdk_exc.SPDKRPCError, -1, 'Operation not permitted')
        spdk.fails('bdev_lvol_create_lvstore',
                   dict(params, bdev_name='no-such'),
                   spdk_exc.SPDKNotFound, -19, 'No such device')
    # Without its bdev the lvstore is gone; examine finds it again.
    assert spdk.client.answer('bdev_aio_delete') is True
    spdk.fails('bdev_lvol_get_lvstores', {'lvs_name': lvs_name},
               spdk_exc.SPDKNotFound, -19, 'No such device')
    with image_copy.AioFile(spdk.client, name, path):
        assert spdk.call('bdev_lvol_get_lvstores',
                         {'lvs_name': lvs_name}) == [store]


def test_create_thin_lvol(spdk):
    name = naming.volume_lvol_name(new_id())
    result = spdk.lvols.create(spdk.lvs, name, 1, thin=True)
    alias = spdk.alias(name)
    bdev = spdk.lvols.get(alias)
    assert_shape(bdev, BDEV_SHAPE)
    assert bdev['name'] == bdev['uuid'] == result
    assert bdev['aliases'] == [alias]
    assert (bdev['product_name'], bdev['block_size'], bdev['num_blocks'],
            bdev['claimed'], bdev['zoned']) == (
        'Logical Volume', BLOCK, GIB // BLOCK, False, False)
    assert bdev['assigned_rate_limits'] == NO_LIMITS
    assert bdev['supported_io_types'] == LVOL_IO
    lvol = bdev['driver_specific']['lvol']
    assert_shape(lvol, LVOL_SHAPE)
    assert lvol == {'lvol_store_uuid': spdk.lvstore()['uuid'],
                    'base_bdev': 'aio0', 'thin_provision': True,
                    'num_allocated_clusters': 0, 'snapshot': False,
                    'clone': False, 'esnap_clone': False}
    assert spdk.free() == TOTAL_DATA_CLUSTERS
    # Found by UUID too (Lvols.get() takes either), and in the full
    # listing (Lvols.load()).
    assert spdk.lvols.get(result) == bdev
    listing = spdk.call('bdev_get_bdevs')
    assert result in [b['name'] for b in listing]
    base = [b for b in listing if b['name'] == 'aio0'][0]
    assert_shape(base, dict(BDEV_SHAPE, claim_type=str))
    assert (base['claim_type'], base['supported_io_types'],
            sorted(base['driver_specific']['aio'])) == (
        'read_many_write_one', AIO_IO,
        ['block_size_override', 'fallocate', 'filename', 'readonly'])


def test_create_thick_lvol_allocates_clusters(spdk):
    alias = spdk.volume(1, thin=False)
    lvol = spdk.lvol(alias)
    assert (lvol['thin_provision'], lvol['num_allocated_clusters']) == (
        False, GIB_CLUSTERS)
    assert spdk.free() == TOTAL_DATA_CLUSTERS - GIB_CLUSTERS


def test_sizes_are_rounded_up_to_whole_clusters(spdk):
    # Never the case for the product's whole GiB.
    thin, thick = spdk.unique('thin'), spdk.unique('thick')
    with spdk.sizes_in_mib():
        spdk.lvols.create(spdk.lvs, thin, 10, thin=True)
        spdk.lvols.create(spdk.lvs, thick, 12, thin=False)
        spdk.lvols.resize(spdk.alias(thick), 5)
    assert spdk.client.answer('bdev_lvol_resize') is True
    assert spdk.bdev(spdk.alias(thin))['num_blocks'] == 3 * CLUSTER // BLOCK
    assert spdk.bdev(spdk.alias(thick))['num_blocks'] == 2 * CLUSTER // BLOCK
    assert spdk.free() == TOTAL_DATA_CLUSTERS - 2


def test_get_lvols(spdk):
    vol = spdk.volume(1, thin=False)
    snap = spdk.snapshot(vol)
    store = spdk.lvstore()
    # Lvols.provisioned() learns from the listing which lvols exist.
    assert spdk.lvols.provisioned() == {spdk.lvs: GIB}
    listing = spdk.client.answer('bdev_lvol_get_lvols')
    assert [lvol['alias'] for lvol in listing] == [vol, snap]
    for lvol in listing:
        assert_shape(lvol, LVOL_LISTING_SHAPE)
    assert listing[1] == {
        'alias': snap, 'uuid': spdk.bdev(snap)['uuid'],
        'name': naming.split_alias(snap)[1], 'is_thin_provisioned': False,
        'is_snapshot': True, 'is_clone': False, 'is_esnap_clone': False,
        'is_degraded': False, 'num_allocated_clusters': GIB_CLUSTERS,
        'lvs': {'name': spdk.lvs, 'uuid': store['uuid']}}
    assert (listing[0]['is_clone'], listing[0]['is_thin_provisioned']) == (
        True, True)
    assert spdk.call('bdev_lvol_get_lvols',
                     {'lvs_name': spdk.lvs}) == listing
    spdk.fails('bdev_lvol_get_lvols', {'lvs_name': 'no-such-lvs'},
               spdk_exc.SPDKNotFound, -19, 'No such device')
    # The listing names lvols by their own name, which a failed rename of
    # a read-only lvol does not change (unlike its bdev alias).
    with pytest.raises(spdk_exc.SPDKInvalidParams):
        spdk.lvols.rename(snap, naming.hidden_lvol_name(new_id()))
    assert spdk.lvols.provisioned() == {spdk.lvs: GIB}
    assert [lvol['alias'] for lvol in
            spdk.client.answer('bdev_lvol_get_lvols')] == [vol, snap]


def test_create_duplicate_name(spdk):
    name = naming.volume_lvol_name(new_id())
    spdk.lvols.create(spdk.lvs, name, 1, thin=True)
    assert_error(lambda: spdk.lvols.create(spdk.lvs, name, 1, thin=True),
                 spdk_exc.SPDKExists, -17, 'File exists')


def test_create_thick_beyond_free_space(spdk):
    name = naming.volume_lvol_name(new_id())
    # Not -ENOSPC: the failure comes from a callback, reported as -32602.
    assert_error(lambda: spdk.lvols.create(spdk.lvs, name, 5, thin=False),
                 spdk_exc.SPDKNoSpace, -32602, 'No space left on device')
    assert spdk.free() == TOTAL_DATA_CLUSTERS


def test_create_in_missing_lvstore(spdk):
    assert_error(lambda: spdk.lvols.create('no-such-lvs', 'x', 1, True),
                 spdk_exc.SPDKNotFound, -19, 'No such device')


def test_delete_missing_lvol(spdk):
    missing = spdk.alias('no-such-lvol')
    # Already gone is fine to the product (a retried delete), because
    # SPDK says so in a way it can tell.
    spdk.lvols.delete(missing)
    assert_answer(spdk.client.answer('bdev_lvol_delete'),
                  spdk_exc.SPDKNotFound, -19, 'No such device')
    spdk.lvols.delete_snapshot(missing)
    assert_answer(spdk.client.answer('bdev_lvol_delete'),
                  spdk_exc.SPDKNotFound, -19, 'No such device')


def test_get_bdevs_of_missing_bdev(spdk):
    assert spdk.lvols.get(spdk.alias('no-such-lvol')) is None
    assert_answer(spdk.client.answer('bdev_get_bdevs'),
                  spdk_exc.SPDKNotFound, -19, 'No such device')


def test_snapshot_and_clone(spdk):
    vol = spdk.volume(1, thin=False)
    snap_name = naming.snapshot_lvol_name(new_id())
    snap_uuid = spdk.lvols.snapshot(vol, snap_name)
    snap = spdk.alias(snap_name)
    snap_bdev = spdk.bdev(snap)
    assert snap_bdev['name'] == snap_uuid
    assert snap_bdev['supported_io_types'] == READ_ONLY_LVOL_IO
    vol_name = naming.split_alias(vol)[1]
    # The snapshot takes the volume's clusters; the volume becomes its
    # empty thin clone.
    assert_shape(snap_bdev['driver_specific']['lvol'],
                 dict(LVOL_SHAPE, clones=list))
    assert spdk.lvol(snap) == dict(
        spdk.lvol(snap), thin_provision=False,
        num_allocated_clusters=GIB_CLUSTERS, snapshot=True, clone=False,
        clones=[vol_name])
    assert_shape(spdk.lvol(vol), dict(LVOL_SHAPE, base_snapshot=str))
    assert spdk.lvol(vol) == dict(
        spdk.lvol(vol), thin_provision=True, num_allocated_clusters=0,
        snapshot=False, clone=True, base_snapshot=snap_name)
    assert spdk.free() == TOTAL_DATA_CLUSTERS - GIB_CLUSTERS

    clone_name = naming.volume_lvol_name(new_id())
    clone_uuid = spdk.lvols.clone(snap, clone_name, 1)
    assert spdk.bdev(clone_uuid)['aliases'] == [spdk.alias(clone_name)]
    assert spdk.lvol(spdk.alias(clone_name))['base_snapshot'] == snap_name
    assert spdk.lvol(snap)['clones'] == [vol_name, clone_name]

    assert_error(lambda: spdk.lvols.snapshot(vol, snap_name),
                 spdk_exc.SPDKExists, -32602, 'File exists')
    assert_error(lambda: spdk.lvols.clone(snap, clone_name, 1),
                 spdk_exc.SPDKExists, -32602, 'File exists')
    # A snapshot cannot be snapshotted, a writable lvol cannot be cloned.
    assert_error(lambda: spdk.lvols.snapshot(snap, spdk.unique('s')),
                 spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')
    assert_error(lambda: spdk.lvols.clone(vol, spdk.unique('c'), 1),
                 spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')
    assert_error(lambda: spdk.lvols.snapshot(spdk.alias('no-such'),
                                             spdk.unique('s')),
                 spdk_exc.SPDKNotFound, -19, 'No such device')


def test_delete_snapshot_with_two_clones(spdk):
    vol = spdk.volume()
    snap = spdk.snapshot(vol)
    clone = spdk.clone(snap)
    # Lvols.delete_snapshot() hides the snapshot instead, on this answer:
    # not -EBUSY (SPDKBusy): vbdev_lvol refuses first, with -EPERM's text
    # sent as a JSON-RPC internal error.
    spdk.lvols.delete_snapshot(snap)
    assert_answer(spdk.client.answer('bdev_lvol_delete'),
                  spdk_exc.SPDKRPCError, -32603, 'Operation not permitted')
    assert len(spdk.lvol(snap)['clones']) == 2
    assert spdk.hidden_snapshots() == [snap]
    # With one clone left SPDK deletes it, so it goes with its last clone.
    spdk.lvols.delete(clone)
    assert spdk.client.answers[-2:] == [('bdev_lvol_delete', True),
                                        ('bdev_lvol_delete', True)]
    assert spdk.hidden_snapshots() == []
    assert 'base_snapshot' not in spdk.lvol(vol)


def test_delete_snapshot_with_one_clone_reparents_it(spdk):
    vol = spdk.volume(1, thin=False)
    older = spdk.snapshot(vol)
    newer = spdk.snapshot(vol)
    older_name, newer_name = (naming.split_alias(older)[1],
                              naming.split_alias(newer)[1])
    assert spdk.lvol(newer)['base_snapshot'] == older_name
    spdk.lvols.delete_snapshot(newer)
    assert spdk.client.answer('bdev_lvol_delete') is True
    assert spdk.lvol(vol)['base_snapshot'] == older_name
    assert spdk.lvol(older)['clones'] == [naming.split_alias(vol)[1]]
    # Deleting the last snapshot hands its clusters to the clone, which
    # stays thin and is a clone no more.
    spdk.lvols.delete_snapshot(older)
    assert spdk.client.answer('bdev_lvol_delete') is True
    lvol = spdk.lvol(vol)
    assert 'base_snapshot' not in lvol
    assert (lvol['clone'], lvol['thin_provision'],
            lvol['num_allocated_clusters']) == (False, True, GIB_CLUSTERS)
    assert spdk.free() == TOTAL_DATA_CLUSTERS - GIB_CLUSTERS
    assert spdk.lvols.get(newer_name) is None
    assert_answer(spdk.client.answer('bdev_get_bdevs'),
                  spdk_exc.SPDKNotFound, -19, 'No such device')


def test_resize(spdk):
    thin = spdk.volume(1)
    thick = spdk.volume(2, thin=False)
    # A thin lvol may outgrow its lvstore.
    spdk.lvols.resize(thin, 8)
    assert spdk.client.answer('bdev_lvol_resize') is True
    assert spdk.bdev(thin)['num_blocks'] == 8 * GIB // BLOCK
    # Shrinking frees clusters (the product never shrinks).
    spdk.lvols.resize(thick, 1)
    assert spdk.client.answer('bdev_lvol_resize') is True
    assert spdk.bdev(thick)['num_blocks'] == GIB // BLOCK
    assert spdk.free() == TOTAL_DATA_CLUSTERS - GIB_CLUSTERS
    assert_error(lambda: spdk.lvols.resize(thick, 8),
                 spdk_exc.SPDKNoSpace, -32602, 'No space left on device')
    # Refused whole: SPDKDriver.extend_volume() needs no look beforehand,
    # and Lvols keeps the size it had.
    assert spdk.bdev(thick)['num_blocks'] == GIB // BLOCK
    assert spdk.free() == TOTAL_DATA_CLUSTERS - GIB_CLUSTERS
    assert spdk.lvols.size(thick) == GIB
    assert_error(lambda: spdk.lvols.resize(spdk.alias('no-such'), 1),
                 spdk_exc.SPDKNotFound, -19, 'No such device')
    snap = spdk.snapshot(thin)
    assert_error(lambda: spdk.lvols.resize(snap, 16),
                 spdk_exc.SPDKInvalidParams, -32602,
                 'Operation not permitted')


def test_size_in_mib_wraps_past_64_bits(spdk):
    # vbdev_lvol_rpc.c multiplies size_in_mib by 2**20 unchecked: a huge
    # size becomes a small lvol (why SPDKDriver caps sizes, MAX_SIZE_GB).
    name = naming.volume_lvol_name(new_id())
    spdk.lvols.create(spdk.lvs, name, 2 ** 34 + 1, thin=True)
    alias = spdk.alias(name)
    assert spdk.bdev(alias)['num_blocks'] == GIB // BLOCK
    spdk.lvols.resize(alias, 2 ** 34 + 2)
    assert spdk.bdev(alias)['num_blocks'] == 2 * GIB // BLOCK


def test_rename(spdk):
    old = spdk.volume()
    other = spdk.volume()
    bdev_uuid = spdk.bdev(old)['uuid']
    new_name = naming.volume_lvol_name(new_id())
    spdk.lvols.rename(old, new_name)
    assert spdk.client.answer('bdev_lvol_rename') is True
    assert spdk.bdev(bdev_uuid)['aliases'] == [spdk.alias(new_name)]
    assert spdk.lvols.get(old) is None
    assert_answer(spdk.client.answer('bdev_get_bdevs'),
                  spdk_exc.SPDKNotFound, -19, 'No such device')
    assert_error(lambda: spdk.lvols.rename(spdk.alias(new_name),
                                           naming.split_alias(other)[1]),
                 spdk_exc.SPDKExists, -32602, 'File exists')
    assert_error(lambda: spdk.lvols.rename(old, 'x'),
                 spdk_exc.SPDKNotFound, -19, 'No such device')


def test_rename_of_read_only_lvol_moves_only_the_alias(spdk):
    vol = spdk.volume()
    snap = spdk.snapshot(vol)
    hidden = naming.hidden_lvol_name(new_id())
    # Why Lvols lists hidden snapshots in a state file instead of renaming
    # them: SPDK refuses to rename a snapshot...
    assert_error(lambda: spdk.lvols.rename(snap, hidden),
                 spdk_exc.SPDKInvalidParams, -32602,
                 'Operation not permitted')
    # ...yet the bdev answers to the new alias only, while the lvol keeps
    # its name (what a restart brings back, and what clones report).
    assert spdk.lvols.get(spdk.alias(hidden))['aliases'] == [
        spdk.alias(hidden)]
    assert spdk.lvols.get(snap) is None
    assert_answer(spdk.client.answer('bdev_get_bdevs'),
                  spdk_exc.SPDKNotFound, -19, 'No such device')
    assert spdk.lvol(vol)['base_snapshot'] == naming.split_alias(snap)[1]


# -- what image copies use ----------------------------------------------------

def test_inflate(spdk):
    vol = spdk.small_thick_lvol()
    snap = spdk.snapshot(vol)
    clone = spdk.clone(snap)
    assert spdk.lvols.inflate(clone) is None
    assert spdk.client.answer('bdev_lvol_inflate') is True
    lvol = spdk.lvol(clone)
    assert 'base_snapshot' not in lvol
    assert (lvol['thin_provision'], lvol['clone'],
            lvol['num_allocated_clusters']) == (False, False, 2)
    assert spdk.lvol(snap)['clones'] == [naming.split_alias(vol)[1]]
    assert spdk.free() == TOTAL_DATA_CLUSTERS - 4
    # A thick lvol needs nothing; a thin one needs every cluster.
    thick = spdk.volume(1, thin=False)
    assert spdk.call('bdev_lvol_inflate', {'name': thick}) is True
    huge = spdk.volume(8)
    spdk.fails('bdev_lvol_inflate', {'name': huge},
               spdk_exc.SPDKNoSpace, -32602, 'No space left on device')
    spdk.fails('bdev_lvol_inflate', {'name': spdk.alias('no-such')},
               spdk_exc.SPDKNotFound, -19, 'No such device')


def test_decouple_parent(spdk):
    # The product never decouples (image_copy.py says why); the double
    # still answers it as SPDK does.
    vol = spdk.small_thick_lvol()
    older = spdk.snapshot(vol)
    spdk.snapshot(vol)
    # The newer snapshot owns nothing: decoupling copies nothing and hangs
    # the volume off the older one.
    assert spdk.call('bdev_lvol_decouple_parent', {'name': vol}) is True
    lvol = spdk.lvol(vol)
    assert (lvol['base_snapshot'], lvol['num_allocated_clusters']) == (
        naming.split_alias(older)[1], 0)
    assert spdk.free() == TOTAL_DATA_CLUSTERS - 2
    # Decoupling from the older one copies its two clusters; the volume
    # stays thin.
    assert spdk.call('bdev_lvol_decouple_parent', {'name': vol}) is True
    lvol = spdk.lvol(vol)
    assert (lvol['clone'], lvol['thin_provision'],
            lvol['num_allocated_clusters']) == (False, True, 2)
    assert spdk.free() == TOTAL_DATA_CLUSTERS - 4
    spdk.fails('bdev_lvol_decouple_parent', {'name': vol},
               spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')
    spdk.fails('bdev_lvol_decouple_parent', {'name': spdk.alias('no-such')},
               spdk_exc.SPDKNotFound, -19, 'No such device')


def test_set_read_only(spdk):
    vol = spdk.volume()
    spdk.lvols.set_read_only(vol)
    assert spdk.client.answer('bdev_lvol_set_read_only') is True
    assert spdk.bdev(vol)['supported_io_types'] == READ_ONLY_LVOL_IO
    assert spdk.lvol(vol)['snapshot'] is False
    assert_error(lambda: spdk.lvols.resize(vol, 2),
                 spdk_exc.SPDKInvalidParams, -32602,
                 'Operation not permitted')
    # A read-only lvol can be cloned, and then counts as a snapshot.
    clone = spdk.clone(vol)
    assert spdk.lvol(vol)['snapshot'] is True
    spdk.lvols.delete(clone)
    assert spdk.client.answer('bdev_lvol_delete') is True
    assert spdk.lvol(vol)['snapshot'] is True
    assert 'clones' not in spdk.lvol(vol)
    spdk.fails('bdev_lvol_set_read_only', {'name': spdk.alias('no-such')},
               spdk_exc.SPDKNotFound, -19, 'No such device')


def test_clone_bdev_and_decouple(spdk):
    # The product never clones a bdev (image_copy.py says why); the double
    # still answers it as SPDK does.
    image = spdk.unique('image-file')
    spdk.aio(image, 2 * CLUSTER_MIB)
    image_uuid = spdk.bdev(image)['uuid']
    name = spdk.unique('image')
    result = spdk.call('bdev_lvol_clone_bdev', {
        'bdev': image, 'lvs_name': spdk.lvs, 'clone_name': name})
    alias = spdk.alias(name)
    bdev = spdk.bdev(alias)
    assert (bdev['name'], bdev['num_blocks']) == (result,
                                                  2 * CLUSTER // BLOCK)
    assert_shape(bdev['driver_specific']['lvol'],
                 dict(LVOL_SHAPE, external_snapshot_name=str))
    assert spdk.lvol(alias) == dict(
        spdk.lvol(alias), thin_provision=True, num_allocated_clusters=0,
        clone=False, esnap_clone=True, external_snapshot_name=image_uuid)
    assert spdk.bdev(image)['claim_type'] == 'read_many_write_none'
    assert spdk.call('bdev_lvol_decouple_parent', {'name': alias}) is True
    lvol = spdk.lvol(alias)
    assert 'external_snapshot_name' not in lvol
    assert (lvol['esnap_clone'], lvol['thin_provision'],
            lvol['num_allocated_clusters']) == (False, False, 2)
    assert spdk.bdev(image)['claimed'] is False
    assert spdk.free() == TOTAL_DATA_CLUSTERS - 2

    spdk.fails('bdev_lvol_clone_bdev', {'bdev': 'no-such-bdev',
                                        'lvs_name': spdk.lvs,
                                        'clone_name': spdk.unique('i')},
               spdk_exc.SPDKInvalidParams, -32602, 'bdev does not exist')
    spdk.fails('bdev_lvol_clone_bdev', {'bdev': image,
                                        'lvs_name': 'no-such-lvs',
                                        'clone_name': spdk.unique('i')},
               spdk_exc.SPDKInvalidParams, -32602, 'lvs does not exist')
    spdk.fails('bdev_lvol_clone_bdev', {'bdev': image, 'lvs_name': spdk.lvs,
                                        'clone_name': name},
               spdk_exc.SPDKExists, -32602, 'File exists')
    # The image must be a whole number of clusters.
    odd = spdk.unique('odd-file')
    spdk.aio(odd, CLUSTER_MIB + 2)
    spdk.fails('bdev_lvol_clone_bdev', {'bdev': odd, 'lvs_name': spdk.lvs,
                                        'clone_name': spdk.unique('i')},
               spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')


def test_shallow_copy(spdk):
    def copy(alias, bdev):
        # Polls at SPDK's pace rather than the product's half second, and
        # gives up in seconds rather than the product's hour.
        spdk.lvols.shallow_copy(alias, bdev, 30, 0.01)
    vol = spdk.small_thick_lvol()
    target_file = spdk.unique('upload-file')
    spdk.aio(target_file, 8)
    # Only a read-only lvol can be copied; the copy fails in the background.
    with pytest.raises(spdk_exc.SPDKRPCError):
        copy(vol, target_file)
    assert_shape(spdk.client.answer('bdev_lvol_start_shallow_copy'),
                 {'operation_id': int})
    assert spdk.client.answer('bdev_lvol_check_shallow_copy') == {
        'copied_clusters': 0, 'total_clusters': 2, 'state': 'error',
        'error': 'Operation not permitted'}
    spdk.lvols.set_read_only(vol)
    copy(vol, target_file)
    assert spdk.client.answer('bdev_lvol_check_shallow_copy') == {
        'copied_clusters': 2, 'total_clusters': 2, 'state': 'complete'}
    # A final state is reported once.
    operation = spdk.client.answer('bdev_lvol_start_shallow_copy')
    spdk.fails('bdev_lvol_check_shallow_copy', operation,
               spdk_exc.SPDKNotFound, -19, 'No such device')
    assert_error(lambda: copy(vol, 'no-such-bdev'),
                 spdk_exc.SPDKNotFound, -32602, 'No such device')
    assert_error(lambda: copy(spdk.alias('no-such'), target_file),
                 spdk_exc.SPDKNotFound, -19, 'No such device')


def test_aio_bdevs(spdk):
    name = spdk.unique('file')
    path = spdk.sparse_file(name, 8)
    with image_copy.AioFile(spdk.client, name, path):
        bdev = spdk.bdev(name)
        assert_shape(bdev, BDEV_SHAPE)
        assert (bdev['name'], bdev['aliases'], bdev['product_name'],
                bdev['num_blocks'], bdev['claimed']) == (
            name, [bdev['uuid']], 'AIO disk', 8 * MIB // BLOCK, False)
        assert bdev['driver_specific'] == {'aio': {
            'filename': path, 'block_size_override': True,
            'readonly': False, 'fallocate': False}}
        assert_error(lambda: spdk.aio(name, 8), spdk_exc.SPDKExists, -17,
                     'File exists')
    assert spdk.client.answer('bdev_aio_delete') is True
    missing = spdk.unique('f')
    with pytest.raises(spdk_exc.SPDKNotFound):
        with image_copy.AioFile(spdk.client, missing, path + '.missing'):
            pass
    assert_answer(spdk.client.answer('bdev_aio_create'),
                  spdk_exc.SPDKNotFound, -2, 'No such file or directory')
    # _AioFile logs a failed delete rather than raising: SPDK's answer.
    spdk.fails('bdev_aio_delete', {'name': name}, spdk_exc.SPDKNotFound, -19,
               'No such device')


# -- QoS ----------------------------------------------------------------------

def test_qos_limits_are_rounded(spdk):
    vol = spdk.volume()
    # spdk_common.qos rounds Cinder's specs to SPDK's steps before SPDK
    # sees them; SPDK rounds what it is given the same way.
    volume_id, _nqn = spdk.export(
        vol, {'rw_ios_per_sec': 1500, 'rw_mbytes_per_sec': 100})
    assert spdk.client.answer('bdev_set_qos_limit') is True
    assert spdk.bdev(vol)['assigned_rate_limits'] == dict(
        NO_LIMITS, rw_ios_per_sec=2000, rw_mbytes_per_sec=100)
    # The product always names every limit (spdk_common.qos.full_limits):
    # this request is by hand.
    spdk.fails('bdev_set_qos_limit', {'name': vol},
               spdk_exc.SPDKInvalidParams, -22, 'No rate limits specified')
    # An export whose lvol was deleted under it.
    spdk.lvols.delete(vol)
    assert_error(lambda: spdk.exports.set_qos(volume_id,
                                              {'rw_ios_per_sec': 1000}),
                 spdk_exc.SPDKNotFound, -19, 'No such device')


def test_qos_change_needs_an_io_channel(spdk):
    vol = spdk.volume()
    # What NVMeoFExports avoids by setting limits only on exported volumes
    # (exports.py), by hand: nothing has the bdev open for I/O, so the
    # first limit is taken and every further change collides with the QoS
    # set-up that opening the bdev restarts.
    assert spdk.call('bdev_set_qos_limit',
                     {'name': vol, 'rw_ios_per_sec': 1000}) is True
    for change in (dict(NO_LIMITS), {'rw_ios_per_sec': 3000}):
        spdk.fails('bdev_set_qos_limit', dict(change, name=vol),
                   spdk_exc.SPDKBusy, -32602, EAGAIN_QOS)
    assert spdk.bdev(vol)['assigned_rate_limits'] == dict(
        NO_LIMITS, rw_ios_per_sec=1000)
    # Exported, it has channels and changes apply (SPDKDriver.retype()).
    volume_id, _nqn = spdk.export(vol)
    spdk.exports.set_qos(volume_id, spdk_qos.limits_from_specs(
        {'total_iops_sec': '3500', 'write_bytes_sec': str(7 * MIB)}))
    assert spdk.client.answer('bdev_set_qos_limit') is True
    assert spdk.bdev(vol)['assigned_rate_limits'] == dict(
        NO_LIMITS, rw_ios_per_sec=4000, w_mbytes_per_sec=7)
    spdk.exports.set_qos(volume_id, None)
    assert spdk.client.answer('bdev_set_qos_limit') is True
    assert spdk.bdev(vol)['assigned_rate_limits'] == NO_LIMITS
    spdk.exports.unexport(volume_id)
    # QoS was switched off entirely, so the next set-up is a first one.
    assert spdk.call('bdev_set_qos_limit',
                     {'name': vol, 'r_mbytes_per_sec': 10}) is True
    spdk.fails('bdev_set_qos_limit', {'name': vol, 'r_mbytes_per_sec': 20},
               spdk_exc.SPDKBusy, -32602, EAGAIN_QOS)


# -- NVMe-oF ------------------------------------------------------------------

def test_transport(spdk):
    spdk.exports.ensure_transport()
    assert spdk.exports.transport_present() is True
    transports = spdk.call('nvmf_get_transports')
    assert len(transports) == 1
    assert_shape(transports[0], TRANSPORT_SHAPE)
    assert transports[0]['trtype'] == 'TCP'
    assert spdk.call('nvmf_get_transports', {'trtype': 'TCP'}) == transports
    # ensure_transport() looks first; when another thread made the
    # transport between its look and its request, this is SPDK's answer.
    spdk.fails('nvmf_create_transport', {'trtype': exports.TRANSPORT},
               spdk_exc.SPDKRPCError, -32603,
               "Transport type 'TCP' already exists")
    spdk.fails('nvmf_get_transports', {'trtype': 'RDMA'},
               spdk_exc.SPDKNotFound, -19, 'No such device')


def test_subsystem_lifecycle(spdk):
    vol = spdk.volume()
    volume_id, nqn = spdk.export(vol)
    assert nqn == spdk.exports.nqn(volume_id)
    assert spdk.client.answer('nvmf_subsystem_add_ns') == 1
    sub = spdk.subsystem(nqn)
    assert_shape(sub, SUBSYSTEM_SHAPE)
    assert sub == {
        'nqn': nqn, 'subtype': 'NVMe',
        'listen_addresses': [{'trtype': 'TCP', 'adrfam': 'IPv4',
                              'traddr': ADDRESS,
                              'trsvcid': spdk.target.listen_port}],
        'allow_any_host': False, 'hosts': [],
        'serial_number': volume_id.replace('-', '')[:20],
        'model_number': exports.MODEL_NUMBER, 'max_namespaces': 1,
        'min_cntlid': 1, 'max_cntlid': 65519,
        # The namespace names the bdev by its name (the lvol's UUID).
        'namespaces': [{'nsid': 1, 'bdev_name': spdk.bdev(vol)['name'],
                        'name': spdk.bdev(vol)['name'],
                        'nguid': volume_id.replace('-', '').upper(),
                        'uuid': volume_id}]}
    assert (spdk.bdev(vol)['claimed'], spdk.bdev(vol)['claim_type']) == (
        True, 'exclusive_write')
    # The discovery subsystem is always listed; the order is by NQN.
    listing = spdk.call('nvmf_get_subsystems')
    assert {'nqn': naming.DISCOVERY_NQN,
            'subtype': 'Discovery', 'listen_addresses': [],
            'allow_any_host': True, 'hosts': []} in listing
    assert sub in listing
    nqns = [s['nqn'] for s in listing]
    assert nqns == sorted(nqns, key=lambda n: n.encode())

    # Exported again (a retried export, or a replay racing one): SPDK
    # refuses the subsystem, the product finds it complete.
    assert spdk.exports.export(volume_id, vol) == nqn
    assert_answer(spdk.client.answer('nvmf_create_subsystem'),
                  spdk_exc.SPDKRPCError, -32603,
                  'Unable to create subsystem %s' % nqn)
    assert spdk.subsystem(nqn) == sub
    # The product adds only the namespace and listeners a subsystem lacks:
    # these two requests are by hand.
    spdk.fails('nvmf_subsystem_add_ns', {'nqn': nqn, 'namespace': {
        'bdev_name': spdk.volume()}},
        spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    spdk.fails('nvmf_subsystem_add_listener', {
        'nqn': nqn, 'listen_address': {
            'trtype': 'TCP', 'adrfam': 'IPv4', 'traddr': ADDRESS,
            'trsvcid': spdk.target.listen_port}},
        spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    spdk.exports.unexport(volume_id)
    assert spdk.client.answer('nvmf_delete_subsystem') is True
    assert spdk.bdev(vol)['claimed'] is False
    # Unexported again: SPDK refuses, the product looks and finds it gone.
    spdk.exports.unexport(volume_id)
    assert_answer(spdk.client.answer('nvmf_delete_subsystem'),
                  spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    assert_answer(spdk.client.answer('nvmf_get_subsystems'),
                  spdk_exc.SPDKNotFound, -19, 'No such device')


def test_deleting_an_exported_lvol_removes_its_namespace(spdk):
    vol = spdk.volume()
    _volume_id, nqn = spdk.export(vol)
    spdk.lvols.delete(vol)
    assert spdk.client.answer('bdev_lvol_delete') is True
    assert spdk.subsystem(nqn)['namespaces'] == []


def test_hosts(spdk):
    vol = spdk.volume()
    volume_id, nqn = spdk.export(vol)
    first, second = HOST_NQN % uuid.uuid4(), HOST_NQN % uuid.uuid4()
    # No secret without DH-HMAC-CHAP.
    assert spdk.exports.allow_host(volume_id, first) is None
    assert spdk.client.answer('nvmf_subsystem_add_host') is True
    assert spdk.exports.allow_host(volume_id, second) is None
    # Newest first.
    assert spdk.subsystem(nqn)['hosts'] == [{'nqn': second}, {'nqn': first}]
    # A cinder-volume started again knows the export but not (yet) that
    # host: SPDK refuses it as already there, which the product accepts.
    restarted = spdk.make_exports()
    restarted.remember(volume_id, vol, [])
    assert restarted.allow_host(volume_id, first) is None
    assert_answer(spdk.client.answer('nvmf_subsystem_add_host'),
                  spdk_exc.SPDKRPCError, -32603, 'Internal error')
    # An export SPDK has lost (before the replay) takes no host.
    lost_id = new_id()
    restarted.remember(lost_id, vol, [])
    assert_error(lambda: restarted.allow_host(lost_id, first),
                 spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    spdk.exports.disallow_host(volume_id, first)
    assert spdk.client.answer('nvmf_subsystem_remove_host') is True
    # Removing what is gone: SPDK refuses, the product looks and accepts.
    restarted.disallow_host(volume_id, first)
    assert_answer(spdk.client.answer('nvmf_subsystem_remove_host'),
                  spdk_exc.SPDKRPCError, -32603, 'Internal error')
    restarted.remember(lost_id, vol, [second])
    restarted.disallow_host(lost_id, second)
    assert_answer(spdk.client.answer('nvmf_subsystem_remove_host'),
                  spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    assert spdk.subsystem(nqn)['hosts'] == [{'nqn': second}]


def test_host_nqn_with_a_newline_is_taken_as_is(spdk):
    vol = spdk.volume()
    volume_id, nqn = spdk.export(vol)
    host = 'nqn.2016-06.io.example:host-%s\n' % uuid.uuid4()
    # The product refuses it before SPDK sees it (naming.validate_nqn())...
    sent = len(spdk.client.answers)
    with pytest.raises(spdk_exc.InvalidNQN):
        spdk.exports.allow_host(volume_id, host)
    assert len(spdk.client.answers) == sent
    # ...because only the reverse domain of an NQN is checked
    # (nvmf_nqn_is_valid()): by hand, a trailing newline goes onto the ACL.
    assert spdk.call('nvmf_subsystem_add_host',
                     {'nqn': nqn, 'host': host}) is True
    assert spdk.subsystem(nqn)['hosts'] == [{'nqn': host}]
    # The uuid form is checked to its length.
    spdk.fails('nvmf_subsystem_add_host',
               {'nqn': nqn, 'host': HOST_NQN % uuid.uuid4() + '\n'},
               spdk_exc.SPDKRPCError, -32603, 'Internal error')


def test_keyring(spdk):
    keys = spdk.keys
    # A key file that others may read (not one KeyFiles.write() made).
    loose = spdk.unique('loose')
    with open(keys.path(loose), 'w') as f:
        f.write(dhchap.make_secret())
    os.chmod(keys.path(loose), 0o644)
    assert_error(lambda: keys.load(loose),
                 spdk_exc.SPDKRPCError, -1, 'Operation not permitted')
    assert_error(lambda: keys.load(spdk.unique('gone')),
                 spdk_exc.SPDKNotFound, -2, 'No such file or directory')
    name = spdk.unique('key')
    keys.write(name, dhchap.make_secret())
    assert keys.load(name) is True
    # Loaded already (after a restart the product cannot tell).
    assert keys.load(name) is False
    assert_answer(spdk.client.answer('keyring_file_add_key'),
                  spdk_exc.SPDKExists, -17, 'File exists')
    [key] = spdk.call('keyring_get_keys')
    assert_shape(key, KEY_SHAPE)
    assert key == {'name': name, 'module': 'keyring_file', 'removed': False,
                   'probed': False, 'refcnt': 1, 'path': keys.path(name)}
    keys.remove(name)
    assert spdk.call('keyring_get_keys') == []
    assert not keys.exists(name)

    # A host that authenticates holds its key (NVMeoFExports.allow_host()).
    vol = spdk.volume()
    volume_id, nqn = spdk.export(vol)
    host = HOST_NQN % uuid.uuid4()
    secret = spdk.exports.allow_host(volume_id, host, authenticate=True)
    name = naming.host_key_name(nqn, host)
    assert secret == keys.secret(name)
    assert spdk.subsystem(nqn)['hosts'] == [
        {'nqn': host, 'dhchap_key': name}]
    assert spdk.call('keyring_get_keys')[0]['refcnt'] == 2
    # The product loads a host's key before naming it: by hand.
    spdk.fails('nvmf_subsystem_add_host', {
        'nqn': nqn, 'host': HOST_NQN % uuid.uuid4(),
        'dhchap_key': 'no-such-key'},
        spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    # Removed while in use, a key lingers until released...
    keys.remove(name)
    assert spdk.client.answer('keyring_file_remove_key') is True
    assert spdk.call('keyring_get_keys') == [{
        'name': name, 'module': 'keyring_file', 'removed': True,
        'probed': False, 'refcnt': 1}]
    # ...and removing it again once the host is gone
    # (NVMeoFExports.disallow_host()) finds nothing, which KeyFiles.remove()
    # accepts.
    spdk.exports.disallow_host(volume_id, host)
    assert spdk.call('keyring_get_keys') == []
    assert_answer(spdk.client.answer('keyring_file_remove_key'),
                  spdk_exc.SPDKRPCError, -126, 'Required key not available')


# -- restart ------------------------------------------------------------------

def lvol_state(bdev):
    """What SPDK persists of an lvol (clones come back in blob order)."""
    lvol = dict(bdev['driver_specific']['lvol'])
    if 'clones' in lvol:
        lvol['clones'] = sorted(lvol['clones'])
    return bdev['uuid'], bdev['num_blocks'], lvol


def test_restart_keeps_lvols_only(spdk):
    vol = spdk.volume(1, thin=False)
    snap = spdk.snapshot(vol)
    clone = spdk.clone(snap)
    moved = spdk.alias(naming.hidden_lvol_name(new_id()))
    with pytest.raises(spdk_exc.SPDKInvalidParams):
        spdk.lvols.rename(snap, naming.split_alias(moved)[1])
    volume_id, nqn = spdk.export(clone, {'rw_ios_per_sec': 1000})
    host = HOST_NQN % uuid.uuid4()
    spdk.exports.allow_host(volume_id, host, authenticate=True)
    exported = spdk.subsystem(nqn)
    keyring = spdk.call('keyring_get_keys')
    extra = spdk.unique('file')
    spdk.aio(extra, 4)
    before = {alias: lvol_state(spdk.bdev(alias))
              for alias in (vol, moved, clone)}
    free = spdk.free()

    spdk.target.restart()

    # The lvols and their relations are back, the failed rename undone.
    for alias, old in before.items():
        assert lvol_state(spdk.bdev(snap if alias == moved else alias)) == old
    assert spdk.free() == free
    assert spdk.lvol(vol)['base_snapshot'] == naming.split_alias(snap)[1]
    # Nothing else survived.
    assert spdk.bdev(clone)['assigned_rate_limits'] == NO_LIMITS
    assert spdk.call('nvmf_get_transports') == []
    assert [s['nqn'] for s in spdk.call('nvmf_get_subsystems')] == [
        naming.DISCOVERY_NQN]
    assert spdk.call('keyring_get_keys') == []
    spdk.fails('bdev_get_bdevs', {'name': extra}, spdk_exc.SPDKNotFound, -19,
               'No such device')
    assert spdk.bdev(clone)['claimed'] is False
    spdk.fails('nvmf_get_subsystems', {'nqn': nqn}, spdk_exc.SPDKNotFound,
               -19, 'No such device')

    # NVMeoFExports.replay() brings the export back as it was.
    assert spdk.exports.replay() == ([nqn], 0)
    assert spdk.subsystem(nqn) == exported
    assert spdk.call('keyring_get_keys') == keyring
    assert spdk.bdev(clone)['assigned_rate_limits'] == dict(
        NO_LIMITS, rw_ios_per_sec=1000)


# -- the double itself --------------------------------------------------------

def test_fake_counts_calls(spdk):
    if not hasattr(spdk.target, 'calls'):
        pytest.skip('FakeSPDK only: call counting')
    spdk.target.calls.clear()
    spdk.volume()
    spdk.call('bdev_lvol_get_lvstores')
    with pytest.raises(spdk_exc.SPDKMethodNotFound):
        spdk.call('no_such_method')
    assert spdk.target.calls == {'bdev_lvol_create': 1,
                                 'bdev_lvol_get_lvstores': 1,
                                 'no_such_method': 1}
