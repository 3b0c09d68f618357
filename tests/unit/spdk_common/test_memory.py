"""Buffer pools sized to an SPDK application's hugepage memory."""

from spdk_common import memory
from tests import base


class TestBufferPools(base.TestCase):
    def test_pools_fit_in_the_memory_with_room_for_attachments(self):
        for mib in (128, 256, 1024, 4096):
            for reactors in (1, 2, 8):
                pools = memory.buffer_pools(mib, reactors)
                fixed = (memory.SPDK_FIXED_MIB +
                         memory.SPDK_PER_REACTOR_MIB * reactors)
                self.assertLessEqual(memory.pools_mib(pools),
                                     (mib - fixed) / 2)
                self.assertGreaterEqual(pools.bdev_ios,
                                        pools.bdev_io_cache * (reactors + 1))

    def test_below_the_minimum_there_are_no_pools(self):
        minimum = memory.minimum_memory_mib(1)
        self.assertIsNone(memory.buffer_pools(minimum - 1, 1))
        self.assertIsNotNone(memory.buffer_pools(minimum, 1))
