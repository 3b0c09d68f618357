"""How much hugepage memory an SPDK application maps, and buffer pools
that make it fit in what it is given.

Shared by the compute-node agent (SPDK vhost, held to its memory by DPDK's
``--socket-limit``), the Cinder driver (its short-lived ``spdk_dd``) and the
deployment tools (what Nova must reserve). The figures are SPDK v25.09's,
measured in ``/proc/<pid>/smaps_rollup``; ``tests/spdk/test_hugepages.py``
holds them against real SPDK.
"""

import dataclasses
import math

# What an SPDK v25.09 application with its default buffer pools maps,
# whatever a smaller -s says (362-366 MiB measured in smaps_rollup for
# vhost and nvmf_tgt at -s 64 to 256, also with a TCP transport and 20
# exports); with -s above it, it maps -s.
DEFAULT_POOLS_FOOTPRINT_MIB = 366
# What SPDK vhost v25.09 maps, measured on its hugepages with the smallest
# pools below: DPDK's and SPDK's own structures, and each reactor's.
SPDK_FIXED_MIB = 64
SPDK_PER_REACTOR_MIB = 2
# One element of each pool: iobuf's small_bufsize (8 KiB) and large_bufsize
# (132 KiB) as SPDK sets them, and a spdk_bdev_io with its bdev_nvme
# context (measured: 15360 more cost 26 MiB).
IOBUF_SMALL_KIB = 8
IOBUF_LARGE_KIB = 132
BDEV_IO_KIB = 1.75
# The smallest pools SPDK vhost was seen to start and serve I/O with.
MIN_SMALL_BUFFERS = 512
MIN_LARGE_BUFFERS = 64
MIN_BDEV_IOS = 1024
# Shares of the pool budget; the pools get half of what the fixed part
# leaves, the other half is for what attachments allocate (NVMe/TCP queue
# pairs, vhost controllers).
SMALL_SHARE, LARGE_SHARE, BDEV_IO_SHARE = 0.3, 0.5, 0.2


@dataclasses.dataclass
class BufferPools:
    small: int
    large: int
    bdev_ios: int
    bdev_io_cache: int


def pools_mib(pools):
    return (pools.small * IOBUF_SMALL_KIB + pools.large * IOBUF_LARGE_KIB +
            pools.bdev_ios * BDEV_IO_KIB) / 1024


def minimum_memory_mib(reactors):
    """The least ``hugepage_mib_per_node`` SPDK vhost starts with."""
    smallest = BufferPools(MIN_SMALL_BUFFERS, MIN_LARGE_BUFFERS,
                           MIN_BDEV_IOS, 0)
    return math.ceil(SPDK_FIXED_MIB + SPDK_PER_REACTOR_MIB * reactors +
                     2 * pools_mib(smallest))


# What one attachment allocates in SPDK vhost v25.09 beside the pools: an
# NVMe/TCP controller (admin and one I/O queue pair) and a vhost-user-blk
# controller. Measured by benchmarks/storage_scale.py: with
# hugepage_mib_per_node=1024 and one reactor, 469 attachments fit in the
# 479 MiB the pools leave, and the 470th failed (vhost_create_blk_controller
# answered "Input/output error").
ATTACHMENT_MIB = 1.05


def attachment_capacity(memory_mib, reactors, reserved_mib=0):
    """How many attachments fit in ``memory_mib`` beside the buffer pools
    :func:`buffer_pools` sizes for it and ``reserved_mib`` kept for other
    uses (running rebuilds).
    """
    if memory_mib < minimum_memory_mib(reactors):
        return 0
    beside_pools = (memory_mib - SPDK_FIXED_MIB -
                    SPDK_PER_REACTOR_MIB * reactors) / 2 - reserved_mib
    return max(0, int(beside_pools / ATTACHMENT_MIB))


def buffer_pools(memory_mib, reactors):
    """SPDK's buffer pools for an application given ``memory_mib`` of
    hugepages (on its main core's node); None when that is below the
    minimum.

    SPDK's defaults (8192 small and 1024 large iobuf buffers, 65535
    bdev_io) alone map ~300 MiB; sized here instead, the whole process fits
    in what DPDK's ``--socket-limit`` allows.
    """
    if memory_mib < minimum_memory_mib(reactors):
        return None
    budget_kib = (memory_mib - SPDK_FIXED_MIB -
                  SPDK_PER_REACTOR_MIB * reactors) * 1024 / 2
    bdev_ios = max(int(budget_kib * BDEV_IO_SHARE / BDEV_IO_KIB),
                   MIN_BDEV_IOS)
    return BufferPools(
        small=max(int(budget_kib * SMALL_SHARE / IOBUF_SMALL_KIB),
                  MIN_SMALL_BUFFERS),
        large=max(int(budget_kib * LARGE_SHARE / IOBUF_LARGE_KIB),
                  MIN_LARGE_BUFFERS),
        bdev_ios=bdev_ios,
        # SPDK wants the pool to hold every thread's cache (reactors and
        # the app thread) and more; its default cache is 256.
        bdev_io_cache=min(256, bdev_ios // (2 * (reactors + 1))))


def startup_config(pools, bdev_nvme_options=None):
    """SPDK's start-up JSON config: the buffer pools, and bdev_nvme's
    options (which SPDK takes only before its first NVMe controller).
    """
    config = {'subsystems': [
        {'subsystem': 'iobuf', 'config': [{
            'method': 'iobuf_set_options',
            'params': {'small_pool_count': pools.small,
                       'large_pool_count': pools.large}}]},
        {'subsystem': 'bdev', 'config': [{
            'method': 'bdev_set_options',
            'params': {'bdev_io_pool_size': pools.bdev_ios,
                       'bdev_io_cache_size': pools.bdev_io_cache}}]},
    ]}
    if bdev_nvme_options:
        config['subsystems'][1]['config'].append({
            'method': 'bdev_nvme_set_options', 'params': bdev_nvme_options})
    return config
