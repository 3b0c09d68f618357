"""Which CPUs and how much hugepage memory SPDK's vhost app gets, per node.

The compute-side SPDK polls its reactor CPUs at 100% (the userspace
NVMe/TCP initiator has no interrupt mode), so those CPUs must be kept away
from Nova's guests, and each reactor should have hugepage memory on its own
NUMA node. :func:`plan` turns the ``[spdk_vhost_target]`` options and the
host topology into that layout; :func:`format_plan` explains it, with the
nova.conf settings that leave SPDK its CPUs and pages.
"""

import dataclasses
import math

from oslo_log import log as logging

from vhost_target import topology as topo

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Plan:
    """The reactor and memory layout SPDK's vhost app is started with.

    ``env_context`` goes to SPDK's ``--env-context`` (passed through to
    DPDK's EAL); it carries ``--socket-mem``, so SPDK's own ``-s`` (which
    becomes EAL's ``-m``) must not be given as well: EAL refuses both. It
    also carries ``--socket-limit``: ``--socket-mem`` alone is only what
    DPDK maps up front, and SPDK's default buffer pools grow it to ~362 MiB
    whatever it says. With the limit, SPDK maps at most
    ``memory_mib_by_node``, which is what Nova is told to reserve; the
    ``startup_config`` sizes the pools to fit in it.
    """
    reactor_cpus: list
    cpumask: str
    reactors_by_node: dict
    memory_mib_by_node: dict
    page_size_kib: int
    env_context: str
    pages_needed_by_node: dict
    # SPDK's --json start-up config: the buffer pools sized to the memory.
    startup_config: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    # True when reactor_cpus came from the config, not from the topology.
    explicit: bool = False


def cpumask(cpus):
    """SPDK ``-m`` mask of a set of CPUs: ``{2,3,8,9}`` -> ``0x30c``."""
    return hex(sum(1 << cpu for cpu in set(cpus)))


def _ordered_candidates(node, topology):
    """CPUs of a node in the order reactors take them.

    Isolated CPUs first (the scheduler leaves them alone, so a polling
    reactor disturbs nothing), then the highest-numbered (by convention the
    host keeps its housekeeping on the low ones); CPU 0 last, because
    interrupts and kernel threads that cannot move live there.
    """
    usable = node.cpus & topology.online
    isolated = usable & topology.isolated
    return (sorted(isolated - {0}, reverse=True) +
            sorted(usable - isolated - {0}, reverse=True) +
            sorted(usable & {0}))


def _choose_reactors(conf, topology, notes):
    size = conf.hugepage_size_kib
    chosen = []
    for node in topology.nodes.values():
        if node.pages(size).total <= 0:
            notes.append('NUMA node %d has no %d kB hugepages: no reactors '
                         'there (guests on that node reach SPDK across '
                         'nodes).' % (node.id, size))
            continue
        candidates = _ordered_candidates(node, topology)
        others = [cpu for cpu in candidates if cpu != 0]
        # CPU 0 only when the node has nothing else: better a reactor there
        # than a node with hugepages but no reactor.
        picked = others[:conf.reactors_per_node] or candidates[:1]
        if not picked:
            notes.append('NUMA node %d has %d kB hugepages but no online '
                         'CPU: no reactors there.' % (node.id, size))
            continue
        if len(picked) < conf.reactors_per_node:
            notes.append('NUMA node %d gets %d reactor(s) instead of '
                         'reactors_per_node=%d: it has no more usable CPUs%s.'
                         % (node.id, len(picked), conf.reactors_per_node,
                            ' (CPU 0 is left to the host)'
                            if 0 in candidates and 0 not in picked else ''))
        chosen.extend(picked)
    return chosen


def plan(conf, topology):
    """The :class:`Plan` of a ``[spdk_vhost_target]`` group on a host.

    :param conf: the option group (``CONF.spdk_vhost_target``).
    :param topology: a :class:`vhost_target.topology.HostTopology`.
    :raises ValueError: when ``reactor_cpus`` is not a valid cpulist.
    """
    notes = []
    size = conf.hugepage_size_kib
    explicit = bool(conf.reactor_cpus and conf.reactor_cpus.strip())
    if explicit:
        try:
            reactors = sorted(topo.parse_cpulist(conf.reactor_cpus))
        except ValueError as e:
            raise ValueError('[spdk_vhost_target] reactor_cpus: %s' % e)
        if not reactors:
            explicit = False
    if not explicit:
        reactors = sorted(_choose_reactors(conf, topology, notes))

    reactors_by_node = {}
    for cpu in reactors:
        node = topology.node_of(cpu)
        if node is None:
            notes.append('Reactor CPU %d is on no NUMA node of this host: '
                         'it does not exist.' % cpu)
            continue
        reactors_by_node.setdefault(node, []).append(cpu)
    reactors_by_node = dict(sorted(reactors_by_node.items()))

    # DPDK takes whole pages: round SPDK's memory up to the page size so
    # that the memory and page counts shown agree with what it reserves.
    page_mib = size / 1024
    pages = math.ceil(conf.hugepage_mib_per_node / page_mib)
    memory_mib = int(pages * page_mib)
    if memory_mib != conf.hugepage_mib_per_node:
        notes.append('hugepage_mib_per_node=%d is rounded up to %d MiB: '
                     'whole %d kB pages.'
                     % (conf.hugepage_mib_per_node, memory_mib, size))
    memory_mib_by_node = {node: memory_mib for node in reactors_by_node}
    pages_needed_by_node = {node: pages for node in reactors_by_node}

    if not reactors:
        notes.append('No reactor CPUs: no NUMA node has %d kB hugepages and '
                     'reactor_cpus is unset. SPDK cannot start.' % size)
    pools = buffer_pools(memory_mib, len(reactors))
    if pools is None:
        notes.append('hugepage_mib_per_node=%d is below the %d MiB SPDK '
                     'vhost needs with %d reactor(s); SPDK cannot start.'
                     % (memory_mib, minimum_memory_mib(len(reactors)),
                        len(reactors)))
        pools = buffer_pools(minimum_memory_mib(len(reactors)),
                             len(reactors))

    return Plan(reactor_cpus=reactors,
                cpumask=cpumask(reactors),
                reactors_by_node=reactors_by_node,
                memory_mib_by_node=memory_mib_by_node,
                page_size_kib=size,
                env_context=_env_context(memory_mib_by_node, topology,
                                         page_mib),
                pages_needed_by_node=pages_needed_by_node,
                startup_config=_startup_config(pools),
                notes=notes,
                explicit=explicit)


def _env_context(memory_mib_by_node, topology, page_mib):
    """``--socket-mem`` and ``--socket-limit``, one value per node index.

    The lists are positional (the n-th value is node n's), so nodes without
    reactors, and gaps in node numbering, still need theirs: 0 MiB mapped
    up front, and a limit of one page (DPDK reads a limit of 0 as "no
    limit", and SPDK's allocations may fall over to any node when their
    own is full).
    """
    if not memory_mib_by_node:
        return ''
    last = max(list(topology.nodes) + list(memory_mib_by_node))
    nodes = range(last + 1)
    return '--socket-mem=%s --socket-limit=%s' % (
        ','.join(str(memory_mib_by_node.get(node, 0)) for node in nodes),
        ','.join(str(memory_mib_by_node.get(node, math.ceil(page_mib)))
                 for node in nodes))


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


def _pools_mib(pools):
    return (pools.small * IOBUF_SMALL_KIB + pools.large * IOBUF_LARGE_KIB +
            pools.bdev_ios * BDEV_IO_KIB) / 1024


def minimum_memory_mib(reactors):
    """The least ``hugepage_mib_per_node`` SPDK vhost starts with."""
    smallest = BufferPools(MIN_SMALL_BUFFERS, MIN_LARGE_BUFFERS,
                           MIN_BDEV_IOS, 0)
    return math.ceil(SPDK_FIXED_MIB + SPDK_PER_REACTOR_MIB * reactors +
                     2 * _pools_mib(smallest))


def buffer_pools(memory_mib, reactors):
    """SPDK's buffer pools for ``memory_mib`` of hugepages on the main
    reactor's node; None when the memory is below the minimum.

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


def _startup_config(pools):
    return {'subsystems': [
        {'subsystem': 'iobuf', 'config': [{
            'method': 'iobuf_set_options',
            'params': {'small_pool_count': pools.small,
                       'large_pool_count': pools.large}}]},
        {'subsystem': 'bdev', 'config': [{
            'method': 'bdev_set_options',
            'params': {'bdev_io_pool_size': pools.bdev_ios,
                       'bdev_io_cache_size': pools.bdev_io_cache}}]},
    ]}


def least_loaded_core(plan, nodes, load_by_cpu):
    """Reactor CPU for a new vhost controller.

    :param plan: the running :class:`Plan`.
    :param nodes: NUMA node ids of the instance (empty: no preference).
    :param load_by_cpu: {cpu: number of controllers it already serves}.
    :returns: ``(cpu, fallback)``; ``fallback`` is True when no reactor is
        on the instance's nodes and a reactor of another node was chosen,
        which costs cross-node memory traffic: callers should report it.
    :raises ValueError: when the plan has no reactor CPUs.
    """
    if not plan.reactor_cpus:
        raise ValueError('The SPDK plan has no reactor CPUs')
    wanted = set(nodes or ())
    local = [cpu for node, cpus in plan.reactors_by_node.items()
             if node in wanted for cpu in cpus]
    fallback = bool(wanted) and not local
    candidates = local or plan.reactor_cpus
    # Ties go to the lowest CPU so that choices are repeatable.
    cpu = min(candidates, key=lambda c: (load_by_cpu.get(c, 0), c))
    return cpu, fallback


def _hugepage_summary(node):
    if not node.hugepages:
        return 'none'
    return '; '.join('%d kB %d total/%d free' % (size, pool.total, pool.free)
                     for size, pool in sorted(node.hugepages.items()))


def format_plan(plan, topology):
    """Human-readable host layout, SPDK plan and nova.conf suggestions."""
    lines = ['Host',
             '  online CPUs: %s' % (topo.format_cpulist(topology.online) or
                                    'none'),
             '  isolated CPUs (isolcpus=): %s'
             % (topo.format_cpulist(topology.isolated) or 'none')]
    for node in topology.nodes.values():
        lines.append('  NUMA node %d: CPUs %s; hugepages: %s'
                     % (node.id, topo.format_cpulist(node.cpus) or 'none',
                        _hugepage_summary(node)))

    lines += ['',
              'SPDK vhost layout (%s)' % ('reactor_cpus' if plan.explicit
                                          else 'reactors_per_node'),
              '  reactor CPUs: %s (-m %s)'
              % (topo.format_cpulist(plan.reactor_cpus) or 'none',
                 plan.cpumask)]
    for node, cpus in plan.reactors_by_node.items():
        lines.append('  NUMA node %d: reactors %s, %d MiB in %d x %d kB '
                     'hugepages'
                     % (node, topo.format_cpulist(cpus),
                        plan.memory_mib_by_node[node],
                        plan.pages_needed_by_node[node], plan.page_size_kib))
    lines.append('  env context: %s' % (plan.env_context or 'none'))
    for subsystem in plan.startup_config.get('subsystems', ()):
        for call in subsystem['config']:
            lines.append('  start-up: %s %s' % (
                call['method'], ' '.join('%s=%s' % item for item in
                                         sorted(call['params'].items()))))
    for note in plan.notes:
        lines.append('  note: %s' % note)

    guest_cpus = topology.online - set(plan.reactor_cpus)
    lines += ['',
              'Suggested nova.conf',
              '[compute]',
              '# Guests must not run on the reactor CPUs (%s): take '
              'cpu_dedicated_set'
              % (topo.format_cpulist(plan.reactor_cpus) or 'none'),
              '# and cpu_shared_set only from these CPUs, each CPU in at '
              'most one set,',
              '# and leave some of them to the host:',
              'cpu_dedicated_set = %s' % topo.format_cpulist(guest_cpus),
              '# cpu_shared_set = <part of the CPUs above>',
              '[DEFAULT]',
              '# Keep SPDK\'s hugepages away from guests:']
    for node, pages in plan.pages_needed_by_node.items():
        lines.append('reserved_huge_pages = node:%d,size:%d,count:%d'
                     % (node, plan.page_size_kib, pages))
    return '\n'.join(lines) + '\n'
