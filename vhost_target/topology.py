"""The compute host's CPU, NUMA and hugepage layout, as the kernel shows it.

Everything is read from files under a root directory (``/`` in production,
a captured tree in tests): ``sys/devices/system/node`` for NUMA nodes and
their hugepage pools, ``sys/devices/system/cpu/online`` for online CPUs and
``proc/cmdline`` for ``isolcpus=``.
"""

import dataclasses
import glob
import os
import re
import shlex

from oslo_log import log as logging

from spdk_common import exception as spdk_exc

LOG = logging.getLogger(__name__)

DEFAULT_ROOT = '/'

_NODE_DIR = 'sys/devices/system/node'
_CPU_ONLINE = 'sys/devices/system/cpu/online'
_GLOBAL_HUGEPAGES = 'sys/kernel/mm/hugepages'
_CMDLINE = 'proc/cmdline'

_NODE_NAME = re.compile(r'^node(\d+)\Z')
_HUGEPAGES_NAME = re.compile(r'^hugepages-(\d+)kB\Z')
# One cpulist element: "N", "N-M", or the kernel's grouped form
# "N-M:used/group" (e.g. "0-15:2/4" = 0,1,4,5,8,9,12,13).
_CPULIST_ITEM = re.compile(
    r'^(\d+)(?:-(\d+)(?::(\d+)(?:/(\d+))?)?)?\Z')


def parse_cpulist(text):
    """Set of CPUs of a kernel cpulist such as ``"0-3,8,10-11"``.

    Accepts what sysfs, ``/proc/cmdline`` and operators write: surrounding
    whitespace and newlines, spaces after commas, an empty string (no
    CPUs), and the kernel's grouped ranges ``N-M:used/group``. A stride
    without a group size (``"0-3:2"``) is not kernel syntax; it is ignored
    (the whole range is taken) with a warning rather than refused.

    :raises ValueError: for anything else, naming the offending element.
    """
    if text is None:
        raise ValueError('Invalid cpulist None: expected a string such as '
                         '"0-3,8,10-11"')
    cpus = set()
    for item in str(text).split(','):
        item = item.strip()
        if not item:
            # "0-3," and "" happen in hand-written lists; nothing to add.
            continue
        match = _CPULIST_ITEM.match(item)
        if not match:
            raise ValueError(
                'Invalid cpulist %r: %r is not a CPU number or a range of '
                'them (expected e.g. "0-3,8,10-11")' % (text, item))
        first, last, used, group = match.groups()
        first = int(first)
        last = first if last is None else int(last)
        if last < first:
            raise ValueError(
                'Invalid cpulist %r: range %r ends before it starts'
                % (text, item))
        if used is not None and group is None:
            LOG.warning('Ignoring the stride in cpulist element %s of %s: '
                        'the kernel only accepts N-M:used/group; taking '
                        'the whole range.', item, text)
            used = None
        if used is None:
            cpus.update(range(first, last + 1))
            continue
        used, group = int(used), int(group)
        if used == 0 or group == 0 or used > group:
            raise ValueError(
                'Invalid cpulist %r: in %r the used count must be between '
                '1 and the group size' % (text, item))
        cpus.update(cpu for cpu in range(first, last + 1)
                    if (cpu - first) % group < used)
    return frozenset(cpus)


def format_cpulist(cpus):
    """Kernel-style cpulist of a set of CPUs: ``{0,1,2,3,8}`` -> ``0-3,8``."""
    ranges = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ','.join(str(first) if first == last else '%d-%d' % (first, last)
                    for first, last in ranges)


@dataclasses.dataclass(frozen=True)
class HugePages:
    """One hugepage pool: pages configured and pages not yet in use."""
    total: int
    free: int


@dataclasses.dataclass(frozen=True)
class Node:
    """A NUMA node: its CPUs and its hugepage pools by page size (KiB)."""
    id: int
    cpus: frozenset
    hugepages: dict = dataclasses.field(default_factory=dict)

    def pages(self, size_kib):
        """Pool of one page size; an empty pool when the size is absent."""
        return self.hugepages.get(size_kib, HugePages(0, 0))


@dataclasses.dataclass(frozen=True)
class HostTopology:
    """NUMA nodes by id, online CPUs and CPUs isolated with isolcpus=."""
    nodes: dict
    online: frozenset
    isolated: frozenset = frozenset()

    def node_of(self, cpu):
        """NUMA node id of a CPU, or None when no node lists it."""
        for node in self.nodes.values():
            if cpu in node.cpus:
                return node.id
        return None


def _read(path):
    with open(path) as f:
        return f.read()


def _read_int(path):
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        # A pool file that vanished or is unreadable counts as empty: the
        # checks then report missing pages instead of crashing.
        LOG.debug('Cannot read %s; counting it as 0', path)
        return 0


def _read_hugepages(directory):
    """{size_kib: HugePages} of the ``hugepages-<size>kB`` dirs in one dir."""
    pools = {}
    if not os.path.isdir(directory):
        return pools
    for name in os.listdir(directory):
        match = _HUGEPAGES_NAME.match(name)
        if not match:
            continue
        pool = os.path.join(directory, name)
        pools[int(match.group(1))] = HugePages(
            total=_read_int(os.path.join(pool, 'nr_hugepages')),
            free=_read_int(os.path.join(pool, 'free_hugepages')))
    return dict(sorted(pools.items()))


def parse_isolcpus(cmdline):
    """CPUs isolated by ``isolcpus=`` on a kernel command line.

    ``isolcpus=`` takes optional flags before the list
    (``isolcpus=nohz,domain,managed_irq,2-3``); the kernel skips unknown
    flags, and so does this. ``nohz_full=`` alone does not isolate CPUs
    from the scheduler and is not counted. Arguments after ``--`` belong to
    init, not the kernel. The kernel refuses a second, different isolcpus=,
    so the first one counts.
    """
    try:
        words = shlex.split(cmdline)
    except ValueError:
        # Unbalanced quotes: the kernel still boots; split plainly.
        words = cmdline.split()
    for word in words:
        if word == '--':
            break
        if not word.startswith('isolcpus='):
            continue
        value = word[len('isolcpus='):]
        # Flags are alphabetic words followed by a comma; the CPU list
        # starts at the first element that begins with a digit.
        while value and value[0].isalpha() and ',' in value:
            value = value.split(',', 1)[1]
        if value and value[0].isalpha():
            LOG.warning('isolcpus=%s has flags but no CPU list; the kernel '
                        'isolates nothing', word[len('isolcpus='):])
            return frozenset()
        try:
            return parse_cpulist(value)
        except ValueError as e:
            LOG.warning('Ignoring unparsable %s: %s', word, e)
            return frozenset()
    return frozenset()


def read_topology(root=DEFAULT_ROOT):
    """Read the host's :class:`HostTopology` from files under ``root``.

    Without NUMA node directories (kernels built without NUMA, some
    containers) the host is one node 0 holding every online CPU and the
    global hugepage pools.

    :raises TopologyError: when neither node directories nor the online
        CPU list exist under ``root``.
    """
    online_path = os.path.join(root, _CPU_ONLINE)
    online = None
    if os.path.exists(online_path):
        online = parse_cpulist(_read(online_path))

    nodes = {}
    for path in glob.glob(os.path.join(root, _NODE_DIR, 'node*')):
        match = _NODE_NAME.match(os.path.basename(path))
        if not match or not os.path.isdir(path):
            continue
        node_id = int(match.group(1))
        cpulist = os.path.join(path, 'cpulist')
        # Memory-only nodes (CXL, some NVDIMM setups) have an empty list.
        cpus = (parse_cpulist(_read(cpulist)) if os.path.exists(cpulist)
                else frozenset())
        nodes[node_id] = Node(
            id=node_id, cpus=cpus,
            hugepages=_read_hugepages(os.path.join(path, 'hugepages')))

    if online is None:
        if not nodes:
            raise spdk_exc.TopologyError(
                'No CPU topology under %s: neither %s nor %s exists. Is '
                'sysfs mounted?' % (root, _NODE_DIR, _CPU_ONLINE))
        # Without the online list, trust the nodes: every listed CPU.
        online = frozenset().union(*(n.cpus for n in nodes.values()))
    if not nodes:
        nodes[0] = Node(
            id=0, cpus=online,
            hugepages=_read_hugepages(os.path.join(root, _GLOBAL_HUGEPAGES)))

    isolated = frozenset()
    cmdline = os.path.join(root, _CMDLINE)
    if os.path.exists(cmdline):
        isolated = parse_isolcpus(_read(cmdline))
    return HostTopology(nodes=dict(sorted(nodes.items())), online=online,
                        isolated=isolated)
