"""Image -> volume through spdk_dd, against the in-process SPDK double.

The double moves no data (the SPDK tier copies real images); here the
spdk_dd process is a stand-in, and what is checked is what the copy makes
in SPDK and that every failure path leaves nothing behind.
"""

import json
import os
import types
from unittest import mock
import uuid

import fixtures
from oslo_concurrency import processutils

from cinder import exception

from cinder_driver import exports
from cinder_driver import image_copy
from cinder_driver import lvols
from spdk_common import memory
from spdk_common import naming
from tests import base
from tests.fixtures import spdk as spdk_fixtures

MIB = 1024 * 1024
PREFIX = 'nqn.2010-10.org.openstack'


class TestExtents(base.TestCase):
    def test_data_extents_and_clusters(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'f')
        with open(path, 'wb') as f:
            f.write(b'x' * MIB)
            f.seek(600 * MIB)
            f.write(b'y' * 4096)
            f.truncate(1024 * MIB)
        extents = image_copy.data_extents(path)
        # File systems report data in their own blocks; at least these.
        self.assertEqual(2, len(extents))
        self.assertEqual(0, extents[0][0])
        self.assertLessEqual(extents[1][0], 600 * MIB)
        self.assertEqual(2, image_copy.clusters_touched(extents, 4 * MIB))
        empty = path + '.empty'
        with open(empty, 'wb') as f:
            f.truncate(8 * MIB)
        self.assertEqual([], image_copy.data_extents(empty))

    def test_clusters_touched_counts_shared_clusters_once(self):
        c = 4 * MIB
        self.assertEqual(0, image_copy.clusters_touched([], c))
        self.assertEqual(1, image_copy.clusters_touched(
            [(0, 10), (100, 200), (c - 1, c)], c))
        self.assertEqual(3, image_copy.clusters_touched(
            [(c - 1, c + 1), (3 * c - 1, 3 * c)], c))
        self.assertEqual(2, image_copy.clusters_touched([(0, c + 1)], c))


class TestFillTouchedClusters(base.TestCase):
    def test_holes_in_data_clusters_become_zeros(self):
        c = 64 * 1024
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'f')
        with open(path, 'wb') as f:
            f.write(b'a' * 4096)
            f.seek(2 * c + 8192)
            f.write(b'b' * 4096)
            f.seek(3 * c)
            f.write(b'c' * 4096)
            f.seek(9 * c)
            f.write(b'd' * 4096)
            f.truncate(9 * c + 8192)
        image_copy.fill_touched_clusters(
            path, image_copy.data_extents(path), c)
        # Clusters 0, 2-3 and 9 are data through and through (the last
        # one grown to its end); 1 and 4-8 stay holes.
        self.assertEqual([(0, c), (2 * c, 4 * c), (9 * c, 10 * c)],
                         image_copy.data_extents(path))
        with open(path, 'rb') as f:
            content = f.read()
        self.assertEqual(10 * c, len(content))
        expected = bytearray(10 * c)
        expected[0:4096] = b'a' * 4096
        expected[2 * c + 8192:2 * c + 12288] = b'b' * 4096
        expected[3 * c:3 * c + 4096] = b'c' * 4096
        expected[9 * c:9 * c + 4096] = b'd' * 4096
        self.assertEqual(bytes(expected), content)


class TestImageToVolume(base.TestCase):
    def setUp(self):
        super().setUp()
        self.target = self.useFixture(
            spdk_fixtures.FakeSPDKTarget(size_mib=4096))
        self.rpc = self.target.client
        self.lvs = self.target.lvstore
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.lvols = lvols.Lvols(self.rpc)
        self.exports = exports.NVMeoFExports(self.rpc, PREFIX,
                                             ['127.0.0.1'], 4420)
        self.copier = image_copy.ImageCopier(self.rpc, self.lvols,
                                             self.exports, cpumask='0x2',
                                             mem_mib=96)
        self.volume = types.SimpleNamespace(id=str(uuid.uuid4()), size=1)
        self.lvols.create(self.lvs, naming.volume_lvol_name(self.volume.id),
                          1, thin=True)
        self.image = b'i' * (5 * MIB + 4096)
        self.useFixture(fixtures.MonkeyPatch(
            'cinder.image.image_utils.fetch_to_raw', self.fetch))
        self.useFixture(fixtures.MonkeyPatch(
            'cinder.image.image_utils.create_temporary_file',
            self.temp_file))
        self.useFixture(fixtures.MonkeyPatch(
            'spdk_common.binaries.find', lambda app: '/spdk/bin/' + app))
        self.runs = []
        self.dd_result = None
        self.dd_output = ('', '')
        self.dd_writes = None       # clusters spdk_dd manages to write
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_concurrency.processutils.execute', self.execute))

    def temp_file(self, *args, **kwargs):
        return os.path.join(self.tmp, '%s%s%s' % (
            kwargs.get('prefix', 'tmp'), uuid.uuid4(),
            kwargs.get('suffix', '')))

    def fetch(self, context, image_service, image_id, path, blocksize,
              size=None):
        self.fetched = True
        with open(path, 'wb') as f:
            f.write(self.image)
            f.truncate(700 * MIB)

    def execute(self, *cmd, **kwargs):
        config = [a for a in cmd if a.endswith('.json')][0]
        with open(config) as f:
            calls = [call for subsystem in json.load(f)['subsystems']
                     for call in subsystem['config']]
        [attach] = [call['params'] for call in calls
                    if call['method'] == 'bdev_nvme_attach_controller']
        # What SPDK shows while spdk_dd runs.
        [sub] = self.rpc.call('nvmf_get_subsystems',
                              {'nqn': attach['subnqn']})
        self.runs.append({'cmd': cmd, 'attach': attach, 'subsystem': sub,
                          'env': kwargs.get('env_variables'),
                          'startup': {call['method']: call['params']
                                      for call in calls}})
        if self.dd_result:
            raise self.dd_result
        # The double stores no data: allocate the clusters the data of the
        # input file falls in, as SPDK does on a thin lvol's first writes.
        source = [a for a in cmd if a.startswith('--if=')][0][5:]
        cluster = 4 * MIB
        clusters = sorted({
            i for start, end in image_copy.data_extents(source)
            for i in range(start // cluster, (end - 1) // cluster + 1)})
        lvol = self.target.fake._bdev(sub['namespaces'][0]['bdev_name'])
        lvol.own |= set(clusters[:self.dd_writes])
        return self.dd_output

    def copy(self, thin=True):
        self.fetched = False
        self.copier.image_to_volume(None, self.volume, self.lvs, thin,
                                    None, 'image-id', MIB)

    def aliases(self):
        return sorted(a for b in self.rpc.call('bdev_get_bdevs')
                      for a in b.get('aliases', []) if '/' in a)

    def subsystems(self):
        return [s['nqn'] for s in self.rpc.call('nvmf_get_subsystems')
                if s['subtype'] == 'NVMe']

    def test_copy_through_a_one_host_loopback_export(self):
        volume_alias = naming.lvol_alias(
            self.lvs, naming.volume_lvol_name(self.volume.id))
        old_uuid = self.rpc.call('bdev_get_bdevs',
                                 {'name': volume_alias})[0]['uuid']
        self.copy()
        [run] = self.runs
        cmd, attach, sub = run['cmd'], run['attach'], run['subsystem']
        self.assertEqual('/spdk/bin/spdk_dd', cmd[0])
        for arg in ('--sparse', '--ob=imagen1', '--no-rpc-server',
                    '--disable-cpumask-locks'):
            self.assertIn(arg, cmd)
        self.assertEqual(['-m', '0x2', '-s', '96'],
                         [cmd[cmd.index('-m')], cmd[cmd.index('-m') + 1],
                          cmd[cmd.index('-s')], cmd[cmd.index('-s') + 1]])
        # Pools sized to -s: it maps 96 MiB, not SPDK's default ~366.
        pools = memory.buffer_pools(96, reactors=1)
        self.assertEqual(pools.large, run['startup']['iobuf_set_options'][
            'large_pool_count'])
        self.assertEqual(pools.bdev_ios, run['startup']['bdev_set_options'][
            'bdev_io_pool_size'])
        self.assertFalse(sub['allow_any_host'])
        self.assertEqual([{'nqn': attach['hostnqn']}], sub['hosts'])
        self.assertTrue(attach['hostnqn'].startswith(
            'nqn.2014-08.org.nvmexpress:uuid:'))
        self.assertEqual('%s:image-%s' % (PREFIX, self.volume.id),
                         sub['nqn'])
        self.assertEqual(('127.0.0.1', '4420'),
                         (attach['traddr'], attach['trsvcid']))
        self.assertIn('LD_LIBRARY_PATH', run['env'])
        # The namespace was a new lvol, which is now the volume's.
        self.assertEqual([volume_alias], self.aliases())
        new = self.rpc.call('bdev_get_bdevs', {'name': volume_alias})[0]
        self.assertNotEqual(old_uuid, new['uuid'])
        self.assertEqual(new['name'], sub['namespaces'][0]['bdev_name'])
        self.assertTrue(new['driver_specific']['lvol']['thin_provision'])
        self.assertEqual(1024 ** 3, new['num_blocks'] * new['block_size'])
        self.assertEqual([], self.subsystems())
        self.assertEqual([], os.listdir(self.tmp))

    def test_thick_type_gets_a_thick_lvol(self):
        self.copy(thin=False)
        # Written whole: its clusters hold whatever they held before.
        self.assertNotIn('--sparse', self.runs[0]['cmd'])
        lvol = self.rpc.call('bdev_get_bdevs', {'name': naming.lvol_alias(
            self.lvs, naming.volume_lvol_name(self.volume.id))})[0][
                'driver_specific']['lvol']
        self.assertFalse(lvol['thin_provision'])

    def test_an_all_zero_image_needs_no_spdk_dd(self):
        self.image = b''
        self.copy()
        self.assertEqual([], self.runs)
        self.assertEqual([naming.lvol_alias(
            self.lvs, naming.volume_lvol_name(self.volume.id))],
            self.aliases())

    def test_failed_spdk_dd_leaves_nothing_behind(self):
        before = self.aliases()
        self.dd_result = processutils.ProcessExecutionError(
            exit_code=1, stdout='',
            stderr='x\n[..] spdk_dd.c:1534:main: *ERROR*: Error occurred '
                   'while performing copy\n')
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.copy)
        self.assertIn('exit code 1', str(exc))
        self.assertIn('Error occurred while performing copy', str(exc))
        self.assertEqual(before, self.aliases())
        self.assertEqual([], self.subsystems())
        self.assertEqual([], os.listdir(self.tmp))

    def test_spdk_dd_failing_silently_is_caught(self):
        """spdk_dd v25.09 exits 0 when writes fail: its log, or the
        clusters the lvol got, tell.
        """
        before = self.aliases()
        self.dd_output = ('', '[..] nvme_qpair.c: 531:spdk_nvme_qpair_print_'
                              'completion: *NOTICE*: [..] INTERNAL DEVICE '
                              'ERROR (00/06) qid:1 cid:6\n')
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.copy)
        self.assertIn('INTERNAL DEVICE ERROR', str(exc))
        self.assertEqual(before, self.aliases())
        self.dd_output = ('', '')
        self.dd_writes = 1
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.copy)
        self.assertIn('1 of the 2 clusters of its data were written',
                      str(exc))
        self.assertEqual(before, self.aliases())
        self.assertEqual([], self.subsystems())

    def test_failed_export_leaves_nothing_behind(self):
        before = self.aliases()
        real_call = self.rpc.call

        def call(method, params=None, **kwargs):
            if method == 'nvmf_subsystem_add_host':
                raise exception.VolumeBackendAPIException(data='boom')
            return real_call(method, params, **kwargs)

        with mock.patch.object(self.rpc, 'call', call):
            self.assertRaises(exception.VolumeBackendAPIException, self.copy)
        self.assertEqual([], self.runs)
        self.assertEqual(before, self.aliases())
        self.assertEqual([], self.subsystems())

    def test_missing_spdk_dd_is_named_before_anything_is_made(self):
        before = self.aliases()
        self.useFixture(fixtures.MonkeyPatch('spdk_common.binaries.find',
                                             lambda app: None))
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.copy)
        self.assertIn('SPDK spdk_dd not found', str(exc))
        self.assertIn('SPDK_BIN_DIR', str(exc))
        self.assertFalse(self.fetched)
        self.assertEqual(before, self.aliases())

    def test_thin_copy_needs_free_clusters_for_the_data_only(self):
        lvs = self.rpc.call('bdev_lvol_get_lvstores')[0]
        # The image's data is two 4 MiB clusters; leave one free.
        self.rpc.call('bdev_lvol_create', {
            'lvs_name': self.lvs, 'lvol_name': 'filler',
            'thin_provision': False,
            'size_in_mib': (lvs['free_clusters'] - 1) * 4})
        before = self.aliases()
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.copy)
        self.assertIn('lvstore %s has 1 free clusters; image image-id '
                      'needs 2' % self.lvs, str(exc))
        self.assertEqual([], self.runs)
        self.assertEqual(before, self.aliases())
        # With two free it goes (a 1 GiB image of 5 MiB data).
        self.rpc.call('bdev_lvol_resize', {
            'name': naming.lvol_alias(self.lvs, 'filler'),
            'size_in_mib': (lvs['free_clusters'] - 2) * 4})
        self.copy()
        self.assertEqual(1, len(self.runs))

    def test_leftovers_of_a_crashed_copy_are_replaced(self):
        temp = 'image-%s' % self.volume.id
        self.rpc.call('bdev_lvol_create', {
            'lvs_name': self.lvs, 'lvol_name': temp, 'size_in_mib': 4,
            'thin_provision': True})
        self.exports.ensure_transport()
        self.rpc.call('nvmf_create_subsystem', {
            'nqn': '%s:%s' % (PREFIX, temp), 'allow_any_host': False})
        self.copy()
        self.assertEqual([naming.lvol_alias(
            self.lvs, naming.volume_lvol_name(self.volume.id))],
            self.aliases())
        self.assertEqual([], self.subsystems())
