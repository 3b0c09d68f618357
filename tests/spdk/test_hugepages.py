"""SPDK tier: the hugepages SPDK really maps agree with what Nova is told
to reserve (``spdk-openstack-config nova-options``) and with what the test
fixtures reserve for it.

Measured per process (``/proc/<pid>/smaps_rollup``), so other SPDK
processes on the host do not disturb the figures.
"""

from testtools import content

from spdk_common import memory
from spdk_deploy import nova
from tests import base
from tests.fixtures import spdk as spdk_fixtures
from tests.spdk import test_vhost_agent

MIB = 1024 * 1024
VOLUMES = 4


def mapped_hugepage_mib(pid):
    """Hugepage memory a process maps (hugetlbfs pages it has touched)."""
    kib = 0
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            if line.split(':')[0] in ('Shared_Hugetlb', 'Private_Hugetlb'):
                kib += int(line.split()[1])
    return kib / 1024


class TestAgentSPDKMapsWhatNovaReserves(test_vhost_agent.AgentTestBase):
    def reserved_mib(self):
        settings = nova.settings(self.plan, self.host)
        return sum(pages * size / 1024
                   for sizes in settings.reserved_huge_pages.values()
                   for size, pages in sizes.items())

    def test_mapped_memory_stays_within_the_reservation(self):
        given = sum(self.plan.memory_mib_by_node.values())
        # SPDK's default pools alone would map more than this.
        self.assertLess(given, memory.DEFAULT_POOLS_FOOTPRINT_MIB)
        self.assertEqual(given, self.reserved_mib())
        self.assertLessEqual(mapped_hugepage_mib(self.keeper.pid), given)
        # Attachments allocate more (NVMe/TCP queue pairs, vhost
        # controllers): still within the limit, and each one serves.
        for _ in range(VOLUMES):
            volume, info = self.exported_vhost_volume()
            self.agent.attach_volume(volume.id, info)
            self.assertEqual(1024 ** 3, self.agent.extend_volume(volume.id))
        mapped = mapped_hugepage_mib(self.keeper.pid)
        self.addDetail('mapped-mib', content.text_content(
            '%.0f of %d MiB after %d attachments' % (mapped, given,
                                                     VOLUMES)))
        self.assertLessEqual(mapped, given)


class TestFixtureReservesWhatSPDKMaps(base.TestCase):
    def test_default_pools_footprint(self):
        target = self.useFixture(spdk_fixtures.SPDKTarget(mem_mib=128))
        target.client.call('nvmf_create_transport', {'trtype': 'TCP'})
        mapped = mapped_hugepage_mib(target.pid)
        self.assertLessEqual(mapped, spdk_fixtures.footprint_mib(128))
        # The measured figure is the footprint, not a loose upper bound.
        self.assertGreater(mapped, spdk_fixtures.footprint_mib(128) - 16)
