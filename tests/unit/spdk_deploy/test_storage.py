from spdk_common import exception as spdk_exc
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
            {'subsystems': [{'subsystem': 'bdev', 'config': [{
                'method': 'bdev_aio_create',
                'params': {'name': 'aio0', 'filename': '/data/lvs.img',
                           'block_size': 512}}]}]}, config)
        self.assertEqual(['aio0'], storage.base_bdevs(config))

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
        config = storage.target_config(aio_file='/f')
        self.assertEqual(['bdev'], [s['subsystem']
                                    for s in config['subsystems']])

    def test_exactly_one_kind_of_device(self):
        self.assertRaises(ValueError, storage.target_config)
        self.assertRaises(ValueError, storage.target_config, '/f', 512,
                          ['0000:01:00.0'])


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
