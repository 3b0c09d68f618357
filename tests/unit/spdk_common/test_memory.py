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

    def test_attachment_capacity_is_what_the_pools_leave(self):
        # 469 attachments were seen to fit at 1024 MiB with one reactor.
        self.assertEqual(456, memory.attachment_capacity(1024, 1))
        self.assertLess(memory.attachment_capacity(1024, 1), 469)
        self.assertEqual(0, memory.attachment_capacity(
            memory.minimum_memory_mib(1) - 1, 1))
        self.assertGreater(memory.attachment_capacity(2048, 1),
                           2 * memory.attachment_capacity(1024, 1))

    def test_memory_kept_for_rebuilds_holds_no_attachment(self):
        # Two running rebuilds of 16 windows of 2 MiB: 64 MiB.
        self.assertEqual(456 - 61, memory.attachment_capacity(1024, 1, 64))
        self.assertEqual(0, memory.attachment_capacity(1024, 1, 10 ** 6))
