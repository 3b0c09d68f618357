"""Functional tier: Cinder's VolumeManager drives the driver, and the
driver talks JSON-RPC to the protocol-level SPDK test double."""

from tests.fixtures import spdk as spdk_fixtures
from tests.functional.cinder_driver import scenarios


class TestDriverOnSPDKDouble(scenarios.DriverScenarios,
                             scenarios.CinderTestCase):
    def make_target(self):
        return spdk_fixtures.FakeSPDKTarget(size_mib=4096)

    def test_stats_cost_the_same_rpcs_at_any_volume_count(self):
        counts = []
        for total in (3, 30):
            while len(self.rpc.call('bdev_lvol_get_lvols')) < total:
                self.create_volume()
            self.driver.get_volume_stats(refresh=True)  # settle
            self.target.calls.clear()
            self.driver.get_volume_stats(refresh=True)
            counts.append(dict(self.target.calls))
        self.assertEqual(counts[0], counts[1])
        # Lvstores and lvols; a restart is noticed by the connection.
        self.assertEqual(2, sum(counts[0].values()), counts[0])
