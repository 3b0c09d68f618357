"""SPDK tier: the same Cinder scenarios as the functional tier, against a
real SPDK nvmf_tgt on a file-backed AIO lvstore."""

import hashlib
import json
import os

import fixtures

from tests.fixtures import spdk as spdk_fixtures
from tests.fixtures import spdk_apps
from tests.functional.cinder_driver import scenarios


class TestDriverOnRealSPDK(scenarios.DriverScenarios,
                           scenarios.CinderTestCase):
    def make_target(self):
        return spdk_fixtures.SPDKTarget(interrupt=True, size_mib=4096)

    def target_port(self):
        return 4520


class TestNVMeoFDataPath(scenarios.DriverTestBase, scenarios.CinderTestCase):
    """A second SPDK process (spdk_dd with bdev_nvme) connects over
    NVMe/TCP on loopback as a given host NQN: the ACL and the bytes."""

    def make_target(self):
        return spdk_fixtures.SPDKTarget(interrupt=True, size_mib=4096)

    def target_port(self):
        return 4521

    def setUp(self):
        super().setUp()
        self.workdir = self.useFixture(fixtures.TempDir()).path

    def dd(self, volume, host_nqn, pattern=None, size=4 * 1024 * 1024):
        """Write ``pattern`` to, or read ``size`` bytes from, the volume."""
        config = os.path.join(self.workdir, 'dd.json')
        with open(config, 'w') as f:
            json.dump({'subsystems': [{'subsystem': 'bdev', 'config': [{
                'method': 'bdev_nvme_attach_controller',
                'params': {'name': 'remote', 'trtype': 'tcp',
                           'adrfam': 'ipv4', 'traddr': '127.0.0.1',
                           'trsvcid': str(self.target_port()),
                           'subnqn': self.driver._exports.nqn(volume.id),
                           'hostnqn': host_nqn,
                           'ctrlr_loss_timeout_sec': 0}}]}]}, f)
        data = os.path.join(self.workdir, 'data')
        if pattern is not None:
            with open(data, 'wb') as f:
                f.write(pattern)
            io = ['--if=' + data, '--ob=remoten1']
        else:
            io = ['--ib=remoten1', '--of=' + data]
        result = spdk_apps.run_spdk_app(
            'spdk_dd', ['--json', config, '--bs=1048576',
                        '--count=%d' % (size // 1048576)] + io)
        self.last_dd = result
        if result.returncode != 0 or pattern is not None:
            return result.returncode
        with open(data, 'rb') as f:
            return f.read()

    def test_acl_and_snapshot_clone_data(self):
        volume = self.create_volume()
        self.driver.create_export(self.ctxt, volume, self.connector())
        self.driver.initialize_connection(volume, self.connector())
        original = os.urandom(4 * 1024 * 1024)
        self.assertEqual(0, self.dd(volume, scenarios.HOST_NQN, original))
        # Another host is not on the ACL: refused at connect.
        self.assertNotEqual(0, self.dd(volume, scenarios.OTHER_NQN,
                                       os.urandom(1024 * 1024),
                                       size=1024 * 1024))
        snapshot = self.snapshot_of(volume)
        self.assertEqual(0, self.dd(volume, scenarios.HOST_NQN,
                                    os.urandom(4 * 1024 * 1024)),
                         self.last_dd.stderr[-3000:])
        clone = self.create_volume_from(snapshot)
        self.driver.create_export(self.ctxt, clone, self.connector())
        self.driver.initialize_connection(clone, self.connector())
        self.assertEqual(hashlib.sha256(original).hexdigest(),
                         hashlib.sha256(self.dd(clone, scenarios.HOST_NQN))
                         .hexdigest())
        # SPDK restarts: the driver's stats task restores the export and the
        # data is still there.
        self.target.restart()
        self.driver.get_volume_stats(refresh=True)
        self.assertEqual(hashlib.sha256(original).hexdigest(),
                         hashlib.sha256(self.dd(clone, scenarios.HOST_NQN))
                         .hexdigest())
        self.driver.terminate_connection(clone, self.connector())
        self.assertNotEqual(0, self.dd(clone, scenarios.HOST_NQN,
                                       os.urandom(1024 * 1024),
                                       size=1024 * 1024))

    def test_revert_brings_back_the_snapshot_bytes(self):
        volume = self.create_volume()
        self.driver.create_export(self.ctxt, volume, self.connector())
        self.driver.initialize_connection(volume, self.connector())
        original = os.urandom(2 * 1024 * 1024)
        self.assertEqual(0, self.dd(volume, scenarios.HOST_NQN, original,
                                    size=len(original)))
        snapshot = self.snapshot_of(volume)
        self.assertEqual(0, self.dd(volume, scenarios.HOST_NQN,
                                    os.urandom(len(original)),
                                    size=len(original)))
        self.driver.terminate_connection(volume, self.connector())
        self.driver.revert_to_snapshot(self.ctxt, volume, snapshot)
        self.driver.initialize_connection(volume, self.connector())
        self.assertEqual(original, self.dd(volume, scenarios.HOST_NQN,
                                           size=len(original)))
