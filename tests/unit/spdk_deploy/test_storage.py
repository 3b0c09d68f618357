from spdk_common import exception as spdk_exc
from spdk_common import memory
from spdk_deploy import storage
from tests import base


class FakeClient:
    def __init__(self, lvstores=()):
        self.lvstores = list(lvstores)
        self.calls = []

    def call(self, method, params=None):
        self.calls.append((method, params))
        if method == 'bdev_lvol_get_lvstores':
            return [{'name': name} for name in self.lvstores]
        return None


class TestTargetConfig(base.TestCase):
    def test_aio_file(self):
        config = storage.target_config(aio_file='/data/lvs.img')
        self.assertEqual(
            {'subsystems': [
                {'subsystem': 'bdev', 'config': [{
                    'method': 'bdev_aio_create',
                    'params': {'name': 'aio0', 'filename': '/data/lvs.img',
                               'fallocate': True,
                               'block_size': 512}}]},
                {'subsystem': 'nvmf', 'config': [{
                    'method': 'nvmf_set_max_subsystems',
                    'params': {'max_subsystems': 8192}}]}]}, config)
        self.assertEqual(['aio0'], storage.base_bdevs(config))

    def test_room_for_thousands_of_exports_by_default(self):
        # One subsystem per exported volume; SPDK's own default (1024,
        # the discovery subsystem among them) is too few.
        config = storage.target_config(aio_file='/f')
        self.assertGreaterEqual(storage.max_exports(config), 4000)
        self.assertEqual(8191, storage.max_exports(config))

    def test_max_subsystems_is_set(self):
        config = storage.target_config(aio_file='/f', max_subsystems=4096)
        self.assertEqual(4095, storage.max_exports(config))
        nvmf = [s for s in config['subsystems'] if s['subsystem'] == 'nvmf']
        self.assertEqual([{'method': 'nvmf_set_max_subsystems',
                           'params': {'max_subsystems': 4096}}],
                         nvmf[0]['config'])

    def test_max_subsystems_must_leave_room_for_a_volume(self):
        for value in (0, 1, -5):
            self.assertRaises(ValueError, storage.target_config, '/f',
                              max_subsystems=value)
        self.assertEqual(1, storage.max_exports(
            storage.target_config('/f', max_subsystems=2)))

    def test_max_exports_of_an_older_config(self):
        # A config written before the nvmf section: SPDK's default.
        old = {'subsystems': [{'subsystem': 'bdev', 'config': []}]}
        self.assertEqual(1023, storage.max_exports(old))

    def test_nvme_devices_one_lvstore_each(self):
        config = storage.target_config(
            nvme_pci=['0000:01:00.0', '0000:02:00.0'])
        bdevs = storage.base_bdevs(config)
        self.assertEqual(['nvme0n1', 'nvme1n1'], bdevs)
        self.assertEqual({'lvs0': 'nvme0n1', 'lvs1': 'nvme1n1'},
                         storage.lvstore_names(bdevs, 'lvs'))
        self.assertEqual('0000:02:00.0', config['subsystems'][0]['config'][
            1]['params']['traddr'])

    def test_no_transport_in_the_config(self):
        # The Cinder driver detects an SPDK restart by the missing
        # transport; a config that re-created it would hide restarts.
        for config in (storage.target_config(aio_file='/f'),
                       storage.target_config(nvme_pci=['0000:01:00.0'],
                                             max_subsystems=16384)):
            methods = [entry['method'] for s in config['subsystems']
                       for entry in s['config']]
            self.assertNotIn('nvmf_create_transport', methods)
            self.assertEqual(['nvmf_set_max_subsystems'],
                             [m for m in methods if m.startswith('nvmf_')])

    def test_exactly_one_kind_of_device(self):
        self.assertRaises(ValueError, storage.target_config)
        self.assertRaises(ValueError, storage.target_config, '/f', 512,
                          ['0000:01:00.0'])


class TestTargetMemory(base.TestCase):
    def test_idle_target_gets_its_pools(self):
        self.assertEqual(memory.DEFAULT_POOLS_FOOTPRINT_MIB,
                         storage.target_memory_mib(0))

    def test_grows_with_connected_queue_pairs(self):
        one = storage.target_memory_mib(1000)
        two = storage.target_memory_mib(2000)
        # 2 queue pairs of 0.77 MiB each per connection
        self.assertAlmostEqual(1540, two - one, delta=2)
        self.assertEqual(0, one % 2)     # whole 2 MiB hugepages
        self.assertGreater(storage.target_memory_mib(1000, queue_pairs=9),
                           one)

    def test_bad_counts(self):
        self.assertRaises(ValueError, storage.target_memory_mib, -1)
        self.assertRaises(ValueError, storage.target_memory_mib, 10,
                          queue_pairs=0)


class TestLvstores(base.TestCase):
    def test_creates_only_missing_ones_with_one_listing(self):
        client = FakeClient(lvstores=['lvs0'])
        created = storage.ensure_lvstores(
            client, {'lvs0': 'nvme0n1', 'lvs1': 'nvme1n1'})
        self.assertEqual(['lvs1'], created)
        self.assertEqual(
            [('bdev_lvol_get_lvstores', None),
             ('bdev_lvol_create_lvstore',
              {'bdev_name': 'nvme1n1', 'lvs_name': 'lvs1'})], client.calls)

    def test_wait_gives_up_when_nothing_listens(self):
        self.assertRaises(spdk_exc.SPDKUnavailable, storage.wait_for_target,
                          '/nonexistent/spdk.sock', 0.2, interval=0.05)
