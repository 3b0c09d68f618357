"""Functional tier: Cinder's VolumeManager drives the driver, and the
driver talks JSON-RPC to the protocol-level SPDK test double."""

from tests.fixtures import spdk as spdk_fixtures
from tests.functional.cinder_driver import scenarios


class TestDriverOnSPDKDouble(scenarios.DriverScenarios,
                             scenarios.CinderTestCase):
    def make_target(self):
        return spdk_fixtures.FakeSPDKTarget(size_mib=4096)
