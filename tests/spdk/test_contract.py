"""Contract tests: FakeSPDK must answer like a real SPDK v25.09 target.

Every test runs twice, against ``fake`` (tests/fixtures/fake_spdk.py) and
against ``real`` (nvmf_tgt; skipped when SPDK is not installed), and asserts
the same observable result on both: result shapes and values, and for
errors the typed exception the product sees (spdk_common.exception), SPDK's
code and its message. Requests use the parameters the product sends; the
helpers below name the product code they copy.

One target per module and parameter keeps the real run short; the ``rpc``
fixture deletes whatever a test created so that tests stay independent.
"""

import json
import os
import socket
import time
import uuid

import pytest

from spdk_common import exception as spdk_exc
from tests.fixtures import spdk as spdk_fixtures

MIB = 1 << 20
CLUSTER_MIB = 4
CLUSTER = CLUSTER_MIB * MIB
BLOCK = 512
# 1 GiB of 4 MiB clusters, minus one cluster of blobstore metadata.
TOTAL_DATA_CLUSTERS = 255
NQN_PREFIX = 'nqn.2010-10.org.openstack:spdk-contract'
HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:%s'
NO_LIMITS = {'rw_ios_per_sec': 0, 'rw_mbytes_per_sec': 0,
             'r_mbytes_per_sec': 0, 'w_mbytes_per_sec': 0}
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


def assert_error(call, exc_class, code, message):
    """The call fails with this typed exception, SPDK code and message."""
    with pytest.raises(spdk_exc.SPDKRPCError) as info:
        call()
    exc = info.value
    assert (type(exc).__name__, exc.code, exc.error) == (
        exc_class.__name__, code, message)


def free_tcp_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# -- the targets --------------------------------------------------------------

@pytest.fixture(scope='module', params=['fake', 'real'])
def target(request):
    if request.param == 'real':
        fixture = spdk_fixtures.SPDKTarget(cluster_mib=CLUSTER_MIB)
    else:
        fixture = spdk_fixtures.FakeSPDKTarget(cluster_mib=CLUSTER_MIB)
    # Raises SkipTest (one line) for 'real' when SPDK is not installed.
    fixture.setUp()
    try:
        fixture.listen_port = str(free_tcp_port())
        yield fixture
    finally:
        fixture.cleanUp()


class RPC:
    """What a test needs: the target's client and product-shaped requests."""

    def __init__(self, target, tmp_path):
        self.target = target
        self.lvs = target.lvstore
        self.tmp_path = tmp_path

    def call(self, method, params=None):
        return self.target.client.call(method, params)

    def fails(self, method, params, exc_class, code, message):
        assert_error(lambda: self.call(method, params), exc_class, code,
                     message)

    @staticmethod
    def unique(prefix):
        return '%s-%s' % (prefix, uuid.uuid4().hex[:8])

    def alias(self, name):
        return '%s/%s' % (self.lvs, name)

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

    # Requests shaped like the product's ---------------------------------

    def create(self, name, size_mib, thin=True):
        # cinder_driver/lvols.py Lvols.create() (sizes in MiB here)
        self.call('bdev_lvol_create', {
            'lvs_name': self.lvs, 'lvol_name': name,
            'size_in_mib': size_mib, 'thin_provision': bool(thin),
            'clear_method': 'unmap'})
        return self.alias(name)

    def snapshot(self, alias, name):
        # Lvols.snapshot()
        self.call('bdev_lvol_snapshot',
                  {'lvol_name': alias, 'snapshot_name': name})
        return self.alias(name)

    def clone(self, snapshot_alias, name):
        # Lvols.clone()
        self.call('bdev_lvol_clone',
                  {'snapshot_name': snapshot_alias, 'clone_name': name})
        return self.alias(name)

    def delete(self, alias):
        # Lvols.delete() / delete_snapshot()
        return self.call('bdev_lvol_delete', {'name': alias})

    def aio(self, name, size_mib):
        # cinder_driver/image_copy.py _AioFile
        path = str(self.tmp_path / name)
        with open(path, 'wb') as f:
            f.truncate(size_mib * MIB)
        self.call('bdev_aio_create', {'name': name, 'filename': path,
                                      'block_size': BLOCK})
        return path

    def nqn(self):
        return '%s:volume-%s' % (NQN_PREFIX, uuid.uuid4())

    def ensure_transport(self):
        # cinder_driver/exports.py NVMeoFExports.ensure_transport()
        if not any(t.get('trtype', '').upper() == 'TCP'
                   for t in self.call('nvmf_get_transports')):
            self.call('nvmf_create_transport', {'trtype': 'TCP'})

    def export(self, alias, volume_id=None):
        """NVMeoFExports.export(): subsystem, namespace, one listener."""
        volume_id = volume_id or str(uuid.uuid4())
        nqn = '%s:volume-%s' % (NQN_PREFIX, volume_id)
        self.ensure_transport()
        self.call('nvmf_create_subsystem', {
            'nqn': nqn, 'serial_number': volume_id.replace('-', '')[:20],
            'model_number': 'OpenStack Cinder SPDK',
            'allow_any_host': False, 'max_namespaces': 1})
        nsid = self.call('nvmf_subsystem_add_ns', {
            'nqn': nqn, 'namespace': {
                'bdev_name': alias, 'uuid': volume_id,
                'nguid': volume_id.replace('-', '').upper()}})
        self.call('nvmf_subsystem_add_listener', {
            'nqn': nqn, 'listen_address': {
                'trtype': 'TCP', 'adrfam': 'IPv4', 'traddr': '127.0.0.1',
                'trsvcid': self.target.listen_port}})
        return nqn, nsid

    def key_file(self, name, mode):
        # spdk_common/dhchap.py KeyFiles.write(): a DHHC-1 secret
        path = str(self.tmp_path / name)
        with open(path, 'w') as f:
            f.write('DHHC-1:00:%s:' % ('A' * 48))
        os.chmod(path, mode)
        return path

    # Clean-up -------------------------------------------------------------

    def reset(self):
        """Delete what tests make, so the next test starts from scratch."""
        for sub in self.call('nvmf_get_subsystems'):
            if sub['subtype'] == 'NVMe':
                self.call('nvmf_delete_subsystem', {'nqn': sub['nqn']})
        for _attempt in range(20):
            lvols = [b for b in self.call('bdev_get_bdevs')
                     if 'lvol' in b['driver_specific']]
            if not lvols:
                break
            # Leaves first: a snapshot goes once its clones are gone.
            for bdev in lvols:
                if not bdev['driver_specific']['lvol'].get('clones'):
                    try:
                        self.delete(bdev['name'])
                    except spdk_exc.SPDKRPCError:
                        pass
        for key in self.call('keyring_get_keys'):
            if not key['removed']:
                self.call('keyring_file_remove_key', {'name': key['name']})
        for bdev in self.call('bdev_get_bdevs'):
            if 'aio' in bdev['driver_specific'] and bdev['name'] != 'aio0':
                self.call('bdev_aio_delete', {'name': bdev['name']})
        # Every cluster must be free again: a leak would be a fake bug.
        assert self.free() == TOTAL_DATA_CLUSTERS


@pytest.fixture
def rpc(target, tmp_path):
    helper = RPC(target, tmp_path)
    yield helper
    helper.reset()


# -- application --------------------------------------------------------------

def test_spdk_get_version(rpc):
    version = rpc.call('spdk_get_version')
    assert_shape(version, {'version': str, 'fields': dict})
    assert_shape(version['fields'], {'major': int, 'minor': int,
                                     'patch': int, 'suffix': str})
    assert version['version'] == 'SPDK v25.09'
    assert (version['fields']['major'], version['fields']['minor']) == (25, 9)


def test_unknown_method(rpc):
    rpc.fails('no_such_method', None, spdk_exc.SPDKMethodNotFound, -32601,
              'Method not found')


def test_wire_format_pipelined_requests(rpc):
    # Several requests in one write; each reply carries its id and ends
    # with '\n', and replies may arrive in one read.
    requests = [{'jsonrpc': '2.0', 'method': m, 'id': i}
                for i, m in enumerate(['spdk_get_version', 'no_such_method',
                                       'bdev_lvol_get_lvstores'], 1)]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(rpc.target.socket_path)
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

def test_lvstores(rpc):
    stores = rpc.call('bdev_lvol_get_lvstores')
    assert len(stores) == 1
    assert_shape(stores[0], LVSTORE_SHAPE)
    store = stores[0]
    assert (store['name'], store['base_bdev'], store['block_size'],
            store['cluster_size'], store['total_data_clusters'],
            store['free_clusters']) == (
        rpc.lvs, 'aio0', BLOCK, CLUSTER, TOTAL_DATA_CLUSTERS,
        TOTAL_DATA_CLUSTERS)
    assert rpc.call('bdev_lvol_get_lvstores', {'lvs_name': rpc.lvs}) == stores
    rpc.fails('bdev_lvol_get_lvstores', {'lvs_name': 'no-such-lvs'},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_create_lvstore(rpc):
    name = rpc.unique('file')
    path = rpc.aio(name, 64)
    lvs_name = rpc.unique('lvs')
    # What the fixtures send (the product only uses existing lvstores).
    params = {'bdev_name': name, 'lvs_name': lvs_name, 'cluster_sz': CLUSTER}
    lvs_uuid = rpc.call('bdev_lvol_create_lvstore', params)
    [store] = rpc.call('bdev_lvol_get_lvstores', {'lvs_name': lvs_name})
    assert (store['uuid'], store['base_bdev'], store['total_data_clusters'],
            store['free_clusters']) == (lvs_uuid, name, 15, 15)
    assert rpc.bdev(name)['claim_type'] == 'read_many_write_one'
    rpc.fails('bdev_lvol_create_lvstore', dict(params, lvs_name='other'),
              spdk_exc.SPDKRPCError, -1, 'Operation not permitted')
    rpc.fails('bdev_lvol_create_lvstore', dict(params, bdev_name='no-such'),
              spdk_exc.SPDKNotFound, -19, 'No such device')
    # Without its bdev the lvstore is gone; examine finds it again.
    rpc.call('bdev_aio_delete', {'name': name})
    rpc.fails('bdev_lvol_get_lvstores', {'lvs_name': lvs_name},
              spdk_exc.SPDKNotFound, -19, 'No such device')
    rpc.call('bdev_aio_create', {'name': name, 'filename': path,
                                 'block_size': BLOCK})
    assert rpc.call('bdev_lvol_get_lvstores',
                    {'lvs_name': lvs_name}) == [store]


def test_create_thin_lvol(rpc):
    name = rpc.unique('vol')
    result = rpc.call('bdev_lvol_create', {
        'lvs_name': rpc.lvs, 'lvol_name': name, 'size_in_mib': 10,
        'thin_provision': True, 'clear_method': 'unmap'})
    bdev = rpc.bdev(rpc.alias(name))
    assert_shape(bdev, BDEV_SHAPE)
    assert bdev['name'] == bdev['uuid'] == result
    assert bdev['aliases'] == [rpc.alias(name)]
    assert (bdev['product_name'], bdev['block_size'], bdev['num_blocks'],
            bdev['claimed'], bdev['zoned']) == (
        'Logical Volume', BLOCK, 3 * CLUSTER // BLOCK, False, False)
    assert bdev['assigned_rate_limits'] == NO_LIMITS
    assert bdev['supported_io_types'] == LVOL_IO
    lvol = bdev['driver_specific']['lvol']
    assert_shape(lvol, LVOL_SHAPE)
    assert lvol == {'lvol_store_uuid': rpc.lvstore()['uuid'],
                    'base_bdev': 'aio0', 'thin_provision': True,
                    'num_allocated_clusters': 0, 'snapshot': False,
                    'clone': False, 'esnap_clone': False}
    assert rpc.free() == TOTAL_DATA_CLUSTERS
    # Found by UUID too, and in the full listing.
    assert rpc.bdev(result)['aliases'] == [rpc.alias(name)]
    listing = rpc.call('bdev_get_bdevs')
    assert result in [b['name'] for b in listing]
    base = [b for b in listing if b['name'] == 'aio0'][0]
    assert_shape(base, dict(BDEV_SHAPE, claim_type=str))
    assert (base['claim_type'], base['supported_io_types'],
            sorted(base['driver_specific']['aio'])) == (
        'read_many_write_one', AIO_IO,
        ['block_size_override', 'fallocate', 'filename', 'readonly'])


def test_create_thick_lvol_allocates_clusters(rpc):
    alias = rpc.create(rpc.unique('vol'), 10, thin=False)
    lvol = rpc.lvol(alias)
    assert (lvol['thin_provision'], lvol['num_allocated_clusters']) == (
        False, 3)
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 3


def test_get_lvols(rpc):
    vol = rpc.create(rpc.unique('vol'), 8, thin=False)
    snap = rpc.snapshot(vol, rpc.unique('snap'))
    store = rpc.lvstore()
    # Lvols.provisioned()
    listing = rpc.call('bdev_lvol_get_lvols')
    assert [lvol['alias'] for lvol in listing] == [vol, snap]
    for lvol in listing:
        assert_shape(lvol, LVOL_LISTING_SHAPE)
    assert listing[1] == {
        'alias': snap, 'uuid': rpc.bdev(snap)['uuid'],
        'name': snap.split('/')[1], 'is_thin_provisioned': False,
        'is_snapshot': True, 'is_clone': False, 'is_esnap_clone': False,
        'is_degraded': False, 'num_allocated_clusters': 2,
        'lvs': {'name': rpc.lvs, 'uuid': store['uuid']}}
    assert (listing[0]['is_clone'], listing[0]['is_thin_provisioned']) == (
        True, True)
    assert rpc.call('bdev_lvol_get_lvols', {'lvs_name': rpc.lvs}) == listing
    rpc.fails('bdev_lvol_get_lvols', {'lvs_name': 'no-such-lvs'},
              spdk_exc.SPDKNotFound, -19, 'No such device')
    # The listing names lvols by their own name, which a failed rename of
    # a read-only lvol does not change (unlike its bdev alias).
    with pytest.raises(spdk_exc.SPDKInvalidParams):
        rpc.call('bdev_lvol_rename',
                 {'old_name': snap, 'new_name': rpc.unique('hidden')})
    assert [lvol['alias'] for lvol in rpc.call('bdev_lvol_get_lvols')] == [
        vol, snap]


def test_create_duplicate_name(rpc):
    name = rpc.unique('vol')
    rpc.create(name, 4)
    assert_error(lambda: rpc.create(name, 4), spdk_exc.SPDKExists, -17,
                 'File exists')


def test_create_thick_beyond_free_space(rpc):
    # Not -ENOSPC: the failure comes from a callback, reported as -32602.
    assert_error(
        lambda: rpc.create(rpc.unique('big'),
                           (TOTAL_DATA_CLUSTERS + 1) * CLUSTER_MIB,
                           thin=False),
        spdk_exc.SPDKNoSpace, -32602, 'No space left on device')
    assert rpc.free() == TOTAL_DATA_CLUSTERS


def test_create_in_missing_lvstore(rpc):
    rpc.fails('bdev_lvol_create', {
        'lvs_name': 'no-such-lvs', 'lvol_name': 'x', 'size_in_mib': 4,
        'thin_provision': True, 'clear_method': 'unmap'},
        spdk_exc.SPDKNotFound, -19, 'No such device')


def test_delete_missing_lvol(rpc):
    rpc.fails('bdev_lvol_delete', {'name': rpc.alias('no-such-lvol')},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_get_bdevs_of_missing_bdev(rpc):
    rpc.fails('bdev_get_bdevs', {'name': rpc.alias('no-such-lvol')},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_snapshot_and_clone(rpc):
    vol = rpc.create(rpc.unique('vol'), 8, thin=False)
    snap_name = rpc.unique('snap')
    snap_uuid = rpc.call('bdev_lvol_snapshot', {
        'lvol_name': vol, 'snapshot_name': snap_name})
    snap = rpc.alias(snap_name)
    snap_bdev = rpc.bdev(snap)
    assert snap_bdev['name'] == snap_uuid
    assert snap_bdev['supported_io_types'] == READ_ONLY_LVOL_IO
    vol_name = vol.split('/')[1]
    # The snapshot takes the volume's clusters; the volume becomes its
    # empty thin clone.
    assert_shape(snap_bdev['driver_specific']['lvol'],
                 dict(LVOL_SHAPE, clones=list))
    assert rpc.lvol(snap) == dict(
        rpc.lvol(snap), thin_provision=False, num_allocated_clusters=2,
        snapshot=True, clone=False, clones=[vol_name])
    assert_shape(rpc.lvol(vol), dict(LVOL_SHAPE, base_snapshot=str))
    assert rpc.lvol(vol) == dict(
        rpc.lvol(vol), thin_provision=True, num_allocated_clusters=0,
        snapshot=False, clone=True, base_snapshot=snap_name)
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 2

    clone_name = rpc.unique('clone')
    clone_uuid = rpc.call('bdev_lvol_clone', {
        'snapshot_name': snap, 'clone_name': clone_name})
    assert rpc.bdev(clone_uuid)['aliases'] == [rpc.alias(clone_name)]
    assert rpc.lvol(rpc.alias(clone_name))['base_snapshot'] == snap_name
    assert rpc.lvol(snap)['clones'] == [vol_name, clone_name]

    rpc.fails('bdev_lvol_snapshot', {'lvol_name': vol,
                                     'snapshot_name': snap_name},
              spdk_exc.SPDKExists, -32602, 'File exists')
    rpc.fails('bdev_lvol_clone', {'snapshot_name': snap,
                                  'clone_name': clone_name},
              spdk_exc.SPDKExists, -32602, 'File exists')
    # A snapshot cannot be snapshotted, a writable lvol cannot be cloned.
    rpc.fails('bdev_lvol_snapshot', {'lvol_name': snap,
                                     'snapshot_name': rpc.unique('s')},
              spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')
    rpc.fails('bdev_lvol_clone', {'snapshot_name': vol,
                                  'clone_name': rpc.unique('c')},
              spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')
    rpc.fails('bdev_lvol_snapshot', {'lvol_name': rpc.alias('no-such'),
                                     'snapshot_name': rpc.unique('s')},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_delete_snapshot_with_two_clones(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    snap = rpc.snapshot(vol, rpc.unique('snap'))
    rpc.clone(snap, rpc.unique('clone'))
    # Not -EBUSY (SPDKBusy): vbdev_lvol refuses first, with -EPERM's text
    # sent as a JSON-RPC internal error.
    assert_error(lambda: rpc.delete(snap), spdk_exc.SPDKRPCError, -32603,
                 'Operation not permitted')
    assert len(rpc.lvol(snap)['clones']) == 2


def test_delete_snapshot_with_one_clone_reparents_it(rpc):
    vol = rpc.create(rpc.unique('vol'), 8, thin=False)
    older = rpc.snapshot(vol, rpc.unique('older'))
    newer = rpc.snapshot(vol, rpc.unique('newer'))
    older_name, newer_name = older.split('/')[1], newer.split('/')[1]
    assert rpc.lvol(newer)['base_snapshot'] == older_name
    assert rpc.delete(newer) is True
    assert rpc.lvol(vol)['base_snapshot'] == older_name
    assert rpc.lvol(older)['clones'] == [vol.split('/')[1]]
    # Deleting the last snapshot hands its clusters to the clone, which
    # stays thin and is a clone no more.
    assert rpc.delete(older) is True
    lvol = rpc.lvol(vol)
    assert 'base_snapshot' not in lvol
    assert (lvol['clone'], lvol['thin_provision'],
            lvol['num_allocated_clusters']) == (False, True, 2)
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 2
    rpc.fails('bdev_get_bdevs', {'name': newer_name}, spdk_exc.SPDKNotFound,
              -19, 'No such device')


def test_resize(rpc):
    thin = rpc.create(rpc.unique('thin'), 4)
    thick = rpc.create(rpc.unique('thick'), 12, thin=False)
    # Lvols.resize()
    assert rpc.call('bdev_lvol_resize',
                    {'name': thin, 'size_in_mib': 4096}) is True
    assert rpc.bdev(thin)['num_blocks'] == 4096 * MIB // BLOCK
    assert rpc.call('bdev_lvol_resize',
                    {'name': thick, 'size_in_mib': 5}) is True
    assert rpc.bdev(thick)['num_blocks'] == 2 * CLUSTER // BLOCK
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 2
    rpc.fails('bdev_lvol_resize', {'name': thick, 'size_in_mib': 4096},
              spdk_exc.SPDKNoSpace, -32602, 'No space left on device')
    # Refused whole: SPDKDriver.extend_volume() needs no look beforehand.
    assert rpc.bdev(thick)['num_blocks'] == 2 * CLUSTER // BLOCK
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 2
    rpc.fails('bdev_lvol_resize', {'name': rpc.alias('no-such'),
                                   'size_in_mib': 4},
              spdk_exc.SPDKNotFound, -19, 'No such device')
    snap = rpc.snapshot(thin, rpc.unique('snap'))
    rpc.fails('bdev_lvol_resize', {'name': snap, 'size_in_mib': 8},
              spdk_exc.SPDKInvalidParams, -32602, 'Operation not permitted')


def test_size_in_mib_wraps_past_64_bits(rpc):
    # vbdev_lvol_rpc.c multiplies size_in_mib by 2**20 unchecked: a huge
    # size becomes a small lvol (why SPDKDriver caps sizes, MAX_SIZE_GB).
    alias = rpc.create(rpc.unique('wrap'), 2 ** 44 + CLUSTER_MIB)
    assert rpc.bdev(alias)['num_blocks'] == CLUSTER // BLOCK
    assert rpc.call('bdev_lvol_resize',
                    {'name': alias, 'size_in_mib': 2 ** 44 + 2 * CLUSTER_MIB})
    assert rpc.bdev(alias)['num_blocks'] == 2 * CLUSTER // BLOCK


def test_rename(rpc):
    old = rpc.create(rpc.unique('vol'), 4)
    other = rpc.create(rpc.unique('other'), 4)
    bdev_uuid = rpc.bdev(old)['uuid']
    new_name = rpc.unique('renamed')
    # Lvols.rename()
    assert rpc.call('bdev_lvol_rename',
                    {'old_name': old, 'new_name': new_name}) is True
    assert rpc.bdev(bdev_uuid)['aliases'] == [rpc.alias(new_name)]
    rpc.fails('bdev_get_bdevs', {'name': old}, spdk_exc.SPDKNotFound, -19,
              'No such device')
    rpc.fails('bdev_lvol_rename', {'old_name': rpc.alias(new_name),
                                   'new_name': other.split('/')[1]},
              spdk_exc.SPDKExists, -32602, 'File exists')
    rpc.fails('bdev_lvol_rename', {'old_name': old, 'new_name': 'x'},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_rename_of_read_only_lvol_moves_only_the_alias(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    snap_name = rpc.unique('snap')
    snap = rpc.snapshot(vol, snap_name)
    hidden = rpc.unique('hidden')
    # What Lvols._hide() does to a snapshot that still has clones.
    rpc.fails('bdev_lvol_rename', {'old_name': snap, 'new_name': hidden},
              spdk_exc.SPDKInvalidParams, -32602, 'Operation not permitted')
    # ...yet the bdev answers to the new alias only, while the lvol keeps
    # its name (what a restart brings back, and what clones report).
    assert rpc.bdev(rpc.alias(hidden))['aliases'] == [rpc.alias(hidden)]
    rpc.fails('bdev_get_bdevs', {'name': snap}, spdk_exc.SPDKNotFound, -19,
              'No such device')
    assert rpc.lvol(vol)['base_snapshot'] == snap_name


def test_inflate(rpc):
    vol = rpc.create(rpc.unique('vol'), 8, thin=False)
    snap = rpc.snapshot(vol, rpc.unique('snap'))
    clone = rpc.clone(snap, rpc.unique('clone'))
    # image_copy.volume_to_image() / SPDKDriver.retype()
    assert rpc.call('bdev_lvol_inflate', {'name': clone}) is True
    lvol = rpc.lvol(clone)
    assert 'base_snapshot' not in lvol
    assert (lvol['thin_provision'], lvol['clone'],
            lvol['num_allocated_clusters']) == (False, False, 2)
    assert rpc.lvol(snap)['clones'] == [vol.split('/')[1]]
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 4
    # A thick lvol needs nothing; a thin one needs every cluster.
    thick = rpc.create(rpc.unique('thick'), 4, thin=False)
    assert rpc.call('bdev_lvol_inflate', {'name': thick}) is True
    huge = rpc.create(rpc.unique('huge'), 8192)
    rpc.fails('bdev_lvol_inflate', {'name': huge},
              spdk_exc.SPDKNoSpace, -32602, 'No space left on device')
    rpc.fails('bdev_lvol_inflate', {'name': rpc.alias('no-such')},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_decouple_parent(rpc):
    vol = rpc.create(rpc.unique('vol'), 8, thin=False)
    older = rpc.snapshot(vol, rpc.unique('older'))
    rpc.snapshot(vol, rpc.unique('newer'))
    older_name = older.split('/')[1]
    # The newer snapshot owns nothing: decoupling copies nothing and hangs
    # the volume off the older one.
    assert rpc.call('bdev_lvol_decouple_parent', {'name': vol}) is True
    lvol = rpc.lvol(vol)
    assert (lvol['base_snapshot'], lvol['num_allocated_clusters']) == (
        older_name, 0)
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 2
    # Decoupling from the older one copies its two clusters; the volume
    # stays thin.
    assert rpc.call('bdev_lvol_decouple_parent', {'name': vol}) is True
    lvol = rpc.lvol(vol)
    assert (lvol['clone'], lvol['thin_provision'],
            lvol['num_allocated_clusters']) == (False, True, 2)
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 4
    rpc.fails('bdev_lvol_decouple_parent', {'name': vol},
              spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')
    rpc.fails('bdev_lvol_decouple_parent', {'name': rpc.alias('no-such')},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_set_read_only(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    # image_copy.volume_to_image()
    assert rpc.call('bdev_lvol_set_read_only', {'name': vol}) is True
    assert rpc.bdev(vol)['supported_io_types'] == READ_ONLY_LVOL_IO
    assert rpc.lvol(vol)['snapshot'] is False
    rpc.fails('bdev_lvol_resize', {'name': vol, 'size_in_mib': 8},
              spdk_exc.SPDKInvalidParams, -32602, 'Operation not permitted')
    # A read-only lvol can be cloned, and then counts as a snapshot.
    clone = rpc.clone(vol, rpc.unique('clone'))
    assert rpc.lvol(vol)['snapshot'] is True
    assert rpc.delete(clone) is True
    assert rpc.lvol(vol)['snapshot'] is True
    assert 'clones' not in rpc.lvol(vol)
    rpc.fails('bdev_lvol_set_read_only', {'name': rpc.alias('no-such')},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_clone_bdev_and_decouple(rpc):
    image = rpc.unique('image-file')
    rpc.aio(image, 2 * CLUSTER_MIB)
    image_uuid = rpc.bdev(image)['uuid']
    name = rpc.unique('image')
    # image_copy.image_to_volume()
    result = rpc.call('bdev_lvol_clone_bdev', {
        'bdev': image, 'lvs_name': rpc.lvs, 'clone_name': name})
    alias = rpc.alias(name)
    bdev = rpc.bdev(alias)
    assert (bdev['name'], bdev['num_blocks']) == (result,
                                                  2 * CLUSTER // BLOCK)
    assert_shape(bdev['driver_specific']['lvol'],
                 dict(LVOL_SHAPE, external_snapshot_name=str))
    assert rpc.lvol(alias) == dict(
        rpc.lvol(alias), thin_provision=True, num_allocated_clusters=0,
        clone=False, esnap_clone=True, external_snapshot_name=image_uuid)
    assert rpc.bdev(image)['claim_type'] == 'read_many_write_none'
    assert rpc.call('bdev_lvol_decouple_parent', {'name': alias}) is True
    lvol = rpc.lvol(alias)
    assert 'external_snapshot_name' not in lvol
    assert (lvol['esnap_clone'], lvol['thin_provision'],
            lvol['num_allocated_clusters']) == (False, False, 2)
    assert rpc.bdev(image)['claimed'] is False
    assert rpc.free() == TOTAL_DATA_CLUSTERS - 2

    rpc.fails('bdev_lvol_clone_bdev', {'bdev': 'no-such-bdev',
                                       'lvs_name': rpc.lvs,
                                       'clone_name': rpc.unique('i')},
              spdk_exc.SPDKInvalidParams, -32602, 'bdev does not exist')
    rpc.fails('bdev_lvol_clone_bdev', {'bdev': image,
                                       'lvs_name': 'no-such-lvs',
                                       'clone_name': rpc.unique('i')},
              spdk_exc.SPDKInvalidParams, -32602, 'lvs does not exist')
    rpc.fails('bdev_lvol_clone_bdev', {'bdev': image, 'lvs_name': rpc.lvs,
                                       'clone_name': name},
              spdk_exc.SPDKExists, -32602, 'File exists')
    # The image must be a whole number of clusters (the product pads it).
    odd = rpc.unique('odd-file')
    rpc.aio(odd, CLUSTER_MIB + 2)
    rpc.fails('bdev_lvol_clone_bdev', {'bdev': odd, 'lvs_name': rpc.lvs,
                                       'clone_name': rpc.unique('i')},
              spdk_exc.SPDKInvalidParams, -32602, 'Invalid argument')


def check_shallow_copy(rpc, operation_id):
    # image_copy._shallow_copy() polls until the state is final.
    deadline = time.monotonic() + 30
    while True:
        status = rpc.call('bdev_lvol_check_shallow_copy',
                          {'operation_id': operation_id})
        if status['state'] != 'in progress' or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_shallow_copy(rpc):
    vol = rpc.create(rpc.unique('vol'), 8, thin=False)
    target_file = rpc.unique('upload-file')
    rpc.aio(target_file, 8)
    operation = rpc.call('bdev_lvol_start_shallow_copy', {
        'src_lvol_name': vol, 'dst_bdev_name': target_file})
    assert_shape(operation, {'operation_id': int})
    # Only a read-only lvol can be copied; the copy fails in the background.
    assert check_shallow_copy(rpc, operation['operation_id']) == {
        'copied_clusters': 0, 'total_clusters': 2, 'state': 'error',
        'error': 'Operation not permitted'}
    rpc.call('bdev_lvol_set_read_only', {'name': vol})
    operation = rpc.call('bdev_lvol_start_shallow_copy', {
        'src_lvol_name': vol, 'dst_bdev_name': target_file})
    assert check_shallow_copy(rpc, operation['operation_id']) == {
        'copied_clusters': 2, 'total_clusters': 2, 'state': 'complete'}
    # A final state is reported once.
    rpc.fails('bdev_lvol_check_shallow_copy',
              {'operation_id': operation['operation_id']},
              spdk_exc.SPDKNotFound, -19, 'No such device')
    rpc.fails('bdev_lvol_start_shallow_copy', {
        'src_lvol_name': vol, 'dst_bdev_name': 'no-such-bdev'},
        spdk_exc.SPDKNotFound, -32602, 'No such device')
    rpc.fails('bdev_lvol_start_shallow_copy', {
        'src_lvol_name': rpc.alias('no-such'), 'dst_bdev_name': target_file},
        spdk_exc.SPDKNotFound, -19, 'No such device')


def test_aio_bdevs(rpc):
    name = rpc.unique('file')
    path = rpc.aio(name, 8)
    bdev = rpc.bdev(name)
    assert_shape(bdev, BDEV_SHAPE)
    assert (bdev['name'], bdev['aliases'], bdev['product_name'],
            bdev['num_blocks'], bdev['claimed']) == (
        name, [bdev['uuid']], 'AIO disk', 8 * MIB // BLOCK, False)
    assert bdev['driver_specific'] == {'aio': {
        'filename': path, 'block_size_override': True, 'readonly': False,
        'fallocate': False}}
    rpc.fails('bdev_aio_create', {'name': name, 'filename': path,
                                  'block_size': BLOCK},
              spdk_exc.SPDKExists, -17, 'File exists')
    rpc.fails('bdev_aio_create', {'name': rpc.unique('f'),
                                  'filename': path + '.missing',
                                  'block_size': BLOCK},
              spdk_exc.SPDKNotFound, -2, 'No such file or directory')
    assert rpc.call('bdev_aio_delete', {'name': name}) is True
    rpc.fails('bdev_aio_delete', {'name': name}, spdk_exc.SPDKNotFound, -19,
              'No such device')


# -- QoS ----------------------------------------------------------------------

def test_qos_limits_are_rounded(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    # SPDKDriver._apply_qos(): dict(limits, name=alias)
    assert rpc.call('bdev_set_qos_limit', {
        'name': vol, 'rw_ios_per_sec': 1500, 'rw_mbytes_per_sec': 100}) is True
    assert rpc.bdev(vol)['assigned_rate_limits'] == dict(
        NO_LIMITS, rw_ios_per_sec=2000, rw_mbytes_per_sec=100)
    rpc.fails('bdev_set_qos_limit', {'name': rpc.alias('no-such'),
                                     'rw_ios_per_sec': 1000},
              spdk_exc.SPDKNotFound, -19, 'No such device')
    rpc.fails('bdev_set_qos_limit', {'name': vol},
              spdk_exc.SPDKInvalidParams, -22, 'No rate limits specified')


def test_qos_change_needs_an_io_channel(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    rpc.call('bdev_set_qos_limit', {'name': vol, 'rw_ios_per_sec': 1000})
    # Nothing has the bdev open for I/O: every further change collides
    # with the QoS set-up that opening the bdev restarts.
    for change in (dict(NO_LIMITS), {'rw_ios_per_sec': 3000}):
        rpc.fails('bdev_set_qos_limit', dict(change, name=vol),
                  spdk_exc.SPDKBusy, -32602, EAGAIN_QOS)
    assert rpc.bdev(vol)['assigned_rate_limits'] == dict(
        NO_LIMITS, rw_ios_per_sec=1000)
    # Exported, it has channels and changes apply (SPDKDriver.retype()).
    nqn, _nsid = rpc.export(vol)
    assert rpc.call('bdev_set_qos_limit', dict(
        NO_LIMITS, name=vol, rw_ios_per_sec=3500, w_mbytes_per_sec=7)) is True
    assert rpc.bdev(vol)['assigned_rate_limits'] == dict(
        NO_LIMITS, rw_ios_per_sec=4000, w_mbytes_per_sec=7)
    assert rpc.call('bdev_set_qos_limit', dict(NO_LIMITS, name=vol)) is True
    assert rpc.bdev(vol)['assigned_rate_limits'] == NO_LIMITS
    rpc.call('nvmf_delete_subsystem', {'nqn': nqn})
    # QoS was switched off entirely, so the next set-up is a first one.
    assert rpc.call('bdev_set_qos_limit',
                    {'name': vol, 'r_mbytes_per_sec': 10}) is True
    rpc.fails('bdev_set_qos_limit', {'name': vol, 'r_mbytes_per_sec': 20},
              spdk_exc.SPDKBusy, -32602, EAGAIN_QOS)


# -- NVMe-oF ------------------------------------------------------------------

def test_transport(rpc):
    rpc.ensure_transport()
    transports = rpc.call('nvmf_get_transports')
    assert len(transports) == 1
    assert_shape(transports[0], TRANSPORT_SHAPE)
    assert transports[0]['trtype'] == 'TCP'
    assert rpc.call('nvmf_get_transports', {'trtype': 'TCP'}) == transports
    rpc.fails('nvmf_create_transport', {'trtype': 'TCP'},
              spdk_exc.SPDKRPCError, -32603,
              "Transport type 'TCP' already exists")
    rpc.fails('nvmf_get_transports', {'trtype': 'RDMA'},
              spdk_exc.SPDKNotFound, -19, 'No such device')


def test_subsystem_lifecycle(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    volume_id = str(uuid.uuid4())
    nqn, nsid = rpc.export(vol, volume_id)
    assert nsid == 1
    [sub] = rpc.call('nvmf_get_subsystems', {'nqn': nqn})
    assert_shape(sub, SUBSYSTEM_SHAPE)
    assert sub == {
        'nqn': nqn, 'subtype': 'NVMe',
        'listen_addresses': [{'trtype': 'TCP', 'adrfam': 'IPv4',
                              'traddr': '127.0.0.1',
                              'trsvcid': rpc.target.listen_port}],
        'allow_any_host': False, 'hosts': [],
        'serial_number': volume_id.replace('-', '')[:20],
        'model_number': 'OpenStack Cinder SPDK', 'max_namespaces': 1,
        'min_cntlid': 1, 'max_cntlid': 65519,
        # The namespace names the bdev by its name (the lvol's UUID).
        'namespaces': [{'nsid': 1, 'bdev_name': rpc.bdev(vol)['name'],
                        'name': rpc.bdev(vol)['name'],
                        'nguid': volume_id.replace('-', '').upper(),
                        'uuid': volume_id}]}
    assert (rpc.bdev(vol)['claimed'], rpc.bdev(vol)['claim_type']) == (
        True, 'exclusive_write')
    # The discovery subsystem is always listed; the order is by NQN.
    listing = rpc.call('nvmf_get_subsystems')
    assert {'nqn': 'nqn.2014-08.org.nvmexpress.discovery',
            'subtype': 'Discovery', 'listen_addresses': [],
            'allow_any_host': True, 'hosts': []} in listing
    assert sub in listing
    nqns = [s['nqn'] for s in listing]
    assert nqns == sorted(nqns, key=lambda n: n.encode())

    rpc.fails('nvmf_create_subsystem', {
        'nqn': nqn, 'serial_number': '1', 'model_number': 'm',
        'allow_any_host': False, 'max_namespaces': 1},
        spdk_exc.SPDKRPCError, -32603, 'Unable to create subsystem %s' % nqn)
    rpc.fails('nvmf_subsystem_add_ns', {'nqn': nqn, 'namespace': {
        'bdev_name': rpc.create(rpc.unique('vol'), 4)}},
        spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    rpc.fails('nvmf_subsystem_add_listener', {
        'nqn': nqn, 'listen_address': {
            'trtype': 'TCP', 'adrfam': 'IPv4', 'traddr': '127.0.0.1',
            'trsvcid': rpc.target.listen_port}},
        spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    # NVMeoFExports._delete_subsystem()
    assert rpc.call('nvmf_delete_subsystem', {'nqn': nqn}) is True
    assert rpc.bdev(vol)['claimed'] is False
    rpc.fails('nvmf_delete_subsystem', {'nqn': nqn},
              spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    rpc.fails('nvmf_get_subsystems', {'nqn': nqn}, spdk_exc.SPDKNotFound,
              -19, 'No such device')


def test_deleting_an_exported_lvol_removes_its_namespace(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    nqn, _nsid = rpc.export(vol)
    assert rpc.delete(vol) is True
    assert rpc.call('nvmf_get_subsystems', {'nqn': nqn})[0][
        'namespaces'] == []


def test_hosts(rpc):
    vol = rpc.create(rpc.unique('vol'), 4)
    nqn, _nsid = rpc.export(vol)
    first, second = HOST_NQN % uuid.uuid4(), HOST_NQN % uuid.uuid4()
    # NVMeoFExports._add_host()
    assert rpc.call('nvmf_subsystem_add_host',
                    {'nqn': nqn, 'host': first}) is True
    assert rpc.call('nvmf_subsystem_add_host',
                    {'nqn': nqn, 'host': second}) is True
    # Newest first.
    assert rpc.call('nvmf_get_subsystems', {'nqn': nqn})[0]['hosts'] == [
        {'nqn': second}, {'nqn': first}]
    rpc.fails('nvmf_subsystem_add_host', {'nqn': nqn, 'host': first},
              spdk_exc.SPDKRPCError, -32603, 'Internal error')
    rpc.fails('nvmf_subsystem_add_host', {'nqn': nqn + 'x', 'host': first},
              spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    # NVMeoFExports.disallow_host()
    assert rpc.call('nvmf_subsystem_remove_host',
                    {'nqn': nqn, 'host': first}) is True
    rpc.fails('nvmf_subsystem_remove_host', {'nqn': nqn, 'host': first},
              spdk_exc.SPDKRPCError, -32603, 'Internal error')
    rpc.fails('nvmf_subsystem_remove_host', {'nqn': nqn + 'x',
                                             'host': second},
              spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    assert rpc.call('nvmf_get_subsystems', {'nqn': nqn})[0]['hosts'] == [
        {'nqn': second}]


def test_host_nqn_with_a_newline_is_taken_as_is(rpc):
    # Only the reverse domain of an NQN is checked (nvmf_nqn_is_valid()):
    # a trailing newline goes onto the ACL, which is why the driver's
    # naming.validate_nqn() refuses it before SPDK sees it.
    vol = rpc.create(rpc.unique('vol'), 4)
    nqn, _nsid = rpc.export(vol)
    host = 'nqn.2016-06.io.example:host-%s\n' % uuid.uuid4()
    assert rpc.call('nvmf_subsystem_add_host',
                    {'nqn': nqn, 'host': host}) is True
    assert rpc.call('nvmf_get_subsystems', {'nqn': nqn})[0]['hosts'] == [
        {'nqn': host}]
    # The uuid form is checked to its length.
    rpc.fails('nvmf_subsystem_add_host',
              {'nqn': nqn, 'host': HOST_NQN % uuid.uuid4() + '\n'},
              spdk_exc.SPDKRPCError, -32603, 'Internal error')


def test_keyring(rpc):
    loose = rpc.key_file('loose-key', 0o644)
    # KeyFiles.load()
    rpc.fails('keyring_file_add_key', {'name': 'loose', 'path': loose},
              spdk_exc.SPDKRPCError, -1, 'Operation not permitted')
    rpc.fails('keyring_file_add_key', {'name': 'gone',
                                       'path': loose + '.missing'},
              spdk_exc.SPDKNotFound, -2, 'No such file or directory')
    name = rpc.unique('key')
    path = rpc.key_file(name, 0o600)
    assert rpc.call('keyring_file_add_key',
                    {'name': name, 'path': path}) is True
    rpc.fails('keyring_file_add_key', {'name': name, 'path': path},
              spdk_exc.SPDKExists, -17, 'File exists')
    [key] = rpc.call('keyring_get_keys')
    assert_shape(key, KEY_SHAPE)
    assert key == {'name': name, 'module': 'keyring_file', 'removed': False,
                   'probed': False, 'refcnt': 1, 'path': path}

    # A host that authenticates holds the key (NVMeoFExports._add_host()).
    vol = rpc.create(rpc.unique('vol'), 4)
    nqn, _nsid = rpc.export(vol)
    host = HOST_NQN % uuid.uuid4()
    assert rpc.call('nvmf_subsystem_add_host', {
        'nqn': nqn, 'host': host, 'dhchap_key': name}) is True
    assert rpc.call('nvmf_get_subsystems', {'nqn': nqn})[0]['hosts'] == [
        {'nqn': host, 'dhchap_key': name}]
    assert rpc.call('keyring_get_keys')[0]['refcnt'] == 2
    rpc.fails('nvmf_subsystem_add_host', {
        'nqn': nqn, 'host': HOST_NQN % uuid.uuid4(),
        'dhchap_key': 'no-such-key'},
        spdk_exc.SPDKInvalidParams, -32602, 'Invalid parameters')
    # KeyFiles.remove(): removed while in use, it lingers until released.
    assert rpc.call('keyring_file_remove_key', {'name': name}) is True
    assert rpc.call('keyring_get_keys') == [{
        'name': name, 'module': 'keyring_file', 'removed': True,
        'probed': False, 'refcnt': 1}]
    rpc.call('nvmf_subsystem_remove_host', {'nqn': nqn, 'host': host})
    assert rpc.call('keyring_get_keys') == []
    rpc.fails('keyring_file_remove_key', {'name': name},
              spdk_exc.SPDKRPCError, -126, 'Required key not available')


# -- restart ------------------------------------------------------------------

def lvol_state(bdev):
    """What SPDK persists of an lvol (clones come back in blob order)."""
    lvol = dict(bdev['driver_specific']['lvol'])
    if 'clones' in lvol:
        lvol['clones'] = sorted(lvol['clones'])
    return bdev['uuid'], bdev['num_blocks'], lvol


def test_restart_keeps_lvols_only(rpc):
    target = rpc.target
    vol = rpc.create(rpc.unique('vol'), 8, thin=False)
    snap_name = rpc.unique('snap')
    snap = rpc.snapshot(vol, snap_name)
    clone = rpc.clone(snap, rpc.unique('clone'))
    moved = rpc.alias(rpc.unique('moved'))
    with pytest.raises(spdk_exc.SPDKInvalidParams):
        rpc.call('bdev_lvol_rename',
                 {'old_name': snap, 'new_name': moved.split('/')[1]})
    nqn, _nsid = rpc.export(clone)
    key = rpc.unique('key')
    rpc.call('keyring_file_add_key',
             {'name': key, 'path': rpc.key_file(key, 0o600)})
    rpc.call('bdev_set_qos_limit', {'name': vol, 'rw_ios_per_sec': 1000})
    extra = rpc.unique('file')
    rpc.aio(extra, 4)
    before = {alias: lvol_state(rpc.bdev(alias))
              for alias in (vol, moved, clone)}
    free = rpc.free()

    target.restart()

    # The lvols and their relations are back, the failed rename undone.
    for alias, old in before.items():
        assert lvol_state(rpc.bdev(snap if alias == moved else alias)) == old
    assert rpc.free() == free
    assert rpc.lvol(vol)['base_snapshot'] == snap_name
    # Nothing else survived.
    assert rpc.bdev(vol)['assigned_rate_limits'] == NO_LIMITS
    assert rpc.call('nvmf_get_transports') == []
    assert [s['nqn'] for s in rpc.call('nvmf_get_subsystems')] == [
        'nqn.2014-08.org.nvmexpress.discovery']
    assert rpc.call('keyring_get_keys') == []
    rpc.fails('bdev_get_bdevs', {'name': extra}, spdk_exc.SPDKNotFound, -19,
              'No such device')
    assert rpc.bdev(clone)['claimed'] is False
    rpc.fails('nvmf_get_subsystems', {'nqn': nqn}, spdk_exc.SPDKNotFound,
              -19, 'No such device')


# -- the double itself --------------------------------------------------------

def test_fake_counts_calls(rpc):
    if not hasattr(rpc.target, 'calls'):
        pytest.skip('FakeSPDK only: call counting')
    rpc.target.calls.clear()
    rpc.create(rpc.unique('vol'), 4)
    rpc.call('bdev_lvol_get_lvstores')
    with pytest.raises(spdk_exc.SPDKMethodNotFound):
        rpc.call('no_such_method')
    assert rpc.target.calls == {'bdev_lvol_create': 1,
                                'bdev_lvol_get_lvstores': 1,
                                'no_such_method': 1}
