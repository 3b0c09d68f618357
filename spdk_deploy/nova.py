"""nova.conf settings and placement provider config of a compute node
that runs spdk-vhost-target.

The agent's :mod:`vhost_target.planner` decides which CPUs and how much
hugepage memory SPDK takes; everything here follows from that plan so that
Nova never places a guest on a polling reactor or counts SPDK's pages as
free for guests.
"""

import collections
import dataclasses
import math

from spdk_common import memory

from vhost_target import topology as topo

COMPUTE_DRIVER = 'spdk_libvirt.SPDKLibvirtDriver'
# Flavors that need vhost-user disks ask placement for this trait, so that
# they land only on compute nodes that run the agent.
VHOST_TRAIT = 'CUSTOM_SPDK_VHOST'
PROVIDER_CONFIG_SCHEMA = '1.0'


@dataclasses.dataclass
class NovaSettings:
    """The nova.conf values of one compute node."""
    cpu_shared_set: frozenset
    cpu_dedicated_set: frozenset
    # {node: {page size KiB: pages}}
    reserved_huge_pages: dict

    def options(self, provider_config_dir=None):
        """``(section, option, [values])`` in the order nova.conf gets them.

        ``reserved_huge_pages`` is multi-valued: one value per node and
        page size. An empty ``cpu_dedicated_set`` is left out: Nova would
        then report no PCPU inventory at all, which is what an unset option
        means too.
        """
        options = [('DEFAULT', 'compute_driver', [COMPUTE_DRIVER]),
                   ('compute', 'cpu_shared_set',
                    [topo.format_cpulist(self.cpu_shared_set)])]
        if self.cpu_dedicated_set:
            options.append(('compute', 'cpu_dedicated_set',
                            [topo.format_cpulist(self.cpu_dedicated_set)]))
        options.append(('DEFAULT', 'reserved_huge_pages', [
            'node:%d,size:%d,count:%d' % (node, size, count)
            for node, sizes in sorted(self.reserved_huge_pages.items())
            for size, count in sorted(sizes.items())]))
        if provider_config_dir:
            options.append(('compute', 'provider_config_location',
                            [provider_config_dir]))
        return options


def _split_node(cpus, dedicated_per_node):
    """(shared, dedicated) of one node's guest CPUs.

    The lowest CPUs stay shared: CPU 0 and its neighbours carry the host's
    housekeeping and interrupts, which pinned guests should not share.
    At least one CPU stays shared so that unpinned flavors still fit.
    """
    ordered = sorted(cpus)
    wanted = (len(ordered) // 2 if dedicated_per_node is None
              else dedicated_per_node)
    count = max(0, min(wanted, len(ordered) - 1))
    split = len(ordered) - count
    return frozenset(ordered[:split]), frozenset(ordered[split:])


def node_of_cpus(cpus, topology):
    """NUMA node of the first of ``cpus`` that a node lists, or 0."""
    for cpu in sorted(cpus):
        node = topology.node_of(cpu)
        if node is not None:
            return node
    return 0


def settings(plan, topology, dedicated_per_node=None,
             storage_target_cpus=frozenset(), storage_target_mib=0,
             storage_target_polls=False):
    """:class:`NovaSettings` that leave SPDK its CPUs and hugepages.

    :param plan: the agent's :class:`vhost_target.planner.Plan`.
    :param topology: the host's :class:`vhost_target.topology.HostTopology`.
    :param dedicated_per_node: guest CPUs per NUMA node for pinned guests
        (``cpu_dedicated_set``); default half of each node's guest CPUs.
    :param storage_target_cpus: CPUs of an ``nvmf_tgt`` on the same host
        (all-in-one); empty when there is none.
    :param storage_target_mib: its hugepage memory, reserved on the NUMA
        node of its first CPU, where DPDK allocates it.
    :param storage_target_polls: whether it polls its CPUs (no
        ``--interrupt-mode``); they are then kept from guests like the
        reactors.
    :raises ValueError: when SPDK leaves no online CPU to guests.
    """
    excluded = set(plan.reactor_cpus)
    if storage_target_polls:
        excluded |= set(storage_target_cpus)
    guests = topology.online - excluded
    if not guests:
        raise ValueError(
            'No CPU left for guests: the online CPUs %s are all taken by '
            'SPDK (%s). Give SPDK fewer CPUs.'
            % (topo.format_cpulist(topology.online),
               topo.format_cpulist(excluded) or 'none'))
    shared, dedicated = set(), set()
    for node in topology.nodes.values():
        node_shared, node_dedicated = _split_node(
            guests & node.cpus, dedicated_per_node)
        shared |= node_shared
        dedicated |= node_dedicated

    reserved = collections.defaultdict(dict)
    for node, pages in plan.pages_needed_by_node.items():
        reserved[node][plan.page_size_kib] = pages
    if storage_target_mib:
        node = node_of_cpus(storage_target_cpus or plan.reactor_cpus,
                            topology)
        # nvmf_tgt runs with SPDK's default buffer pools: below their
        # footprint it maps that, not its -s.
        mapped = max(storage_target_mib,
                     memory.DEFAULT_POOLS_FOOTPRINT_MIB)
        pages = math.ceil(mapped * 1024 / plan.page_size_kib)
        sizes = reserved[node]
        sizes[plan.page_size_kib] = sizes.get(plan.page_size_kib, 0) + pages
    return NovaSettings(cpu_shared_set=frozenset(shared),
                        cpu_dedicated_set=frozenset(dedicated),
                        reserved_huge_pages=dict(reserved))


def provider_config(traits=(VHOST_TRAIT,)):
    """Nova's provider config (schema 1.0) adding ``traits`` to this node.

    ``$COMPUTE_NODE`` is Nova's name for the compute node provider of the
    host reading the file, so one file fits every compute node whatever
    its hypervisor hostname.
    """
    return {'meta': {'schema_version': PROVIDER_CONFIG_SCHEMA},
            'providers': [{'identification': {'uuid': '$COMPUTE_NODE'},
                           'traits': {'additional': list(traits)}}]}
