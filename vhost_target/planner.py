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

from spdk_common import memory
from vhost_target import mirror
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
    # Attachments SPDK's memory holds beside its pools (the main reactor's
    # node, where SPDK allocates them).
    attachment_capacity: int = 0


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
    least = memory.minimum_memory_mib(len(reactors))
    pools = memory.buffer_pools(max(memory_mib, least), len(reactors))
    if memory_mib < least:
        notes.append('hugepage_mib_per_node=%d is below the %d MiB SPDK '
                     'vhost needs with %d reactor(s); SPDK cannot start.'
                     % (memory_mib, least, len(reactors)))

    return Plan(reactor_cpus=reactors,
                cpumask=cpumask(reactors),
                reactors_by_node=reactors_by_node,
                memory_mib_by_node=memory_mib_by_node,
                page_size_kib=size,
                env_context=_env_context(memory_mib_by_node, topology,
                                         page_mib),
                pages_needed_by_node=pages_needed_by_node,
                startup_config=memory.startup_config(
                    pools, nvme_options(conf)),
                notes=notes,
                explicit=explicit,
                attachment_capacity=memory.attachment_capacity(
                    memory_mib, len(reactors), mirror.rebuild_memory_mib(
                        conf.max_concurrent_rebuilds)))


# bdev_nvme's timeout for I/O commands when admin commands are timed: an
# I/O timeout makes bdev_nvme read the controller's status with a
# blocking call that stalls the whole application for up to 30 s on an
# unreachable TCP target (measured on v25.09), so I/O is left long and
# the keep-alive (an admin command) is what notices a target gone.
IO_COMMAND_TIMEOUT_US = 60 * 1000000


def nvme_options(conf):
    """bdev_nvme's options: a storage target that leaves the keep-alive
    unanswered (a node that hangs, or is cut off the network, holding its
    TCP connections) has its controller reset after about
    target_answer_timeout_sec, so that copies of a replicated volume fail
    over and single copies reconnect, and a reconnect's TCP connect gives
    up after half that. Without them SPDK v25.09 never notices such a
    target.
    """
    if not conf.target_answer_timeout_sec:
        return {}
    timeout_ms = conf.target_answer_timeout_sec * 1000
    # A reconnect's TCP connect to a node cut off the network otherwise
    # waits out the kernel's SYN retries (135 s measured), and a mirror
    # taking the copy out waits for that reconnect with its I/O held.
    return {'keep_alive_timeout_ms': timeout_ms,
            'tcp_connect_timeout_ms': timeout_ms // 2,
            'timeout_admin_us': timeout_ms * 1000 // 2,
            'timeout_us': IO_COMMAND_TIMEOUT_US,
            'action_on_timeout': 'reset'}


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
    lines.append('  attachments the memory holds: %d (about %.2f MiB each '
                 'beside the buffer pools)'
                 % (plan.attachment_capacity, memory.ATTACHMENT_MIB))
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
