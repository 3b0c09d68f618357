"""What the cloud needs of the host, checked before it is used.

``up`` needs free 2 MiB hugepages for SPDK's ``nvmf_tgt`` and ``vhost`` and
for the guests the demo and tempest boot, memory for its services and its
loopback ports; every guest needs free hugepages for its flavor's RAM on
the compute node when it is created (QEMU fails the boot with "unable to
map backing store for guest RAM: Cannot allocate memory" otherwise, and
Nova only counts its own instances against the pool). Each check refuses
with one line that names what is short and how to get it.

SPDK can map more hugepage memory than its ``-s`` says (DPDK grows its
heap when SPDK's buffer pools do not fit): what each process maps beyond
``-s`` is measured on the running cloud (``tools/cloud status``, column
``huge MiB``: the hugepage files each process group maps that no other
process maps) and kept in :data:`SPDK_MAPPED_BEYOND_SOCKET_MEM`.

Standard library only: ``tools/cloud`` runs this with Debian's Python
before it installs anything (``python3 -m tools.aio_cloud.capacity``).
"""

import argparse
import collections
import math
import os
import socket
import subprocess
import sys

from tools.aio_cloud import fabric
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import processes

PAGE_MIB = 2
POOL_DIR = '/sys/kernel/mm/hugepages/hugepages-2048kB'
POOL_SIZE = os.path.join(POOL_DIR, 'nr_hugepages')
HUGETLBFS = '/dev/hugepages'

# What each SPDK process maps beyond its -s, measured with SPDK v25.09 on
# the 2-core Debian 12 host: the hugetlbfs mappings of its own
# (/proc/<pid>/smaps, files no other process maps) of the running cloud,
# idle, after the demo (image copies included), through tempest and with a
# guest attached. nvmf_tgt -s 512 (AIO bdev, lvstore, --interrupt-mode):
# 512 MiB. SPDK vhost -s 256 as the agent starts it (--socket-limit and
# buffer pools sized to fit): 256 MiB of its own; its HugetlbPages also
# counts the RAM of every guest it serves (512 MiB with one 256 MiB
# guest), which is the guest's. Before the agent sized its pools, vhost
# mapped 362 MiB more than -s.
SPDK_MAPPED_BEYOND_SOCKET_MEM = {'nvmf_tgt': 0, 'spdk-vhost': 0}
# The cloud's services without SPDK's hugepages: 2349 MiB resident idle,
# 2710 MiB after the demo and tempest (tools/cloud status, shared pages
# counted in each process, so an upper bound).
SERVICES_MIB = 2800
# What each node beyond the first adds, measured with tools/cloud status
# on the multi-node cloud (RSS of its process groups, hugepages aside):
# a compute node's nova-compute, agent, SPDK vhost and libvirtd; a storage
# node's cinder-volume and nvmf_tgt.
COMPUTE_NODE_MIB = 500
STORAGE_NODE_MIB = 350

Pool = collections.namedtuple('Pool', 'total free reserved surplus')


class ShortError(Exception):
    """Something the cloud needs is short; the message is one line."""


def pages(mib):
    return int(math.ceil(mib / PAGE_MIB))


def spdk_need_mib(app, socket_mem_mib):
    """What an SPDK process of the cloud maps, from its ``-s``."""
    return socket_mem_mib + SPDK_MAPPED_BEYOND_SOCKET_MEM[app]


def up_needs(nvmf_mib=layout_mod.NVMF_MEM_MIB,
             vhost_mib=layout_mod.VHOST_MEM_MIB,
             guests=layout_mod.MAX_GUESTS,
             guest_mib=layout_mod.FLAVOR_RAM_MB,
             dd_mib=layout_mod.SPDK_DD_MEM_MIB, compute_nodes=1,
             storage_nodes=1):
    """[(text, MiB)] of the hugepage memory of a running cloud: one
    nvmf_tgt per storage node, one SPDK vhost per compute node.
    """
    needs = [('nvmf_tgt', storage_nodes,
              spdk_need_mib('nvmf_tgt', nvmf_mib)),
             ('SPDK vhost', compute_nodes,
              spdk_need_mib('spdk-vhost', vhost_mib))]
    return [('%s%s %d MiB' % (name, ' %d x' % count if count > 1 else '',
                              mib), count * mib)
            for name, count, mib in needs] + [
        ('%d guests x %d MiB' % (guests, guest_mib), guests * guest_mib),
        ('spdk_dd %d MiB' % dd_mib, dd_mib)]


def read_pool(pool_dir=POOL_DIR):
    values = {}
    for field, name in (('total', 'nr_hugepages'), ('free', 'free_hugepages'),
                        ('reserved', 'resv_hugepages'),
                        ('surplus', 'surplus_hugepages')):
        try:
            with open(os.path.join(pool_dir, name)) as f:
                values[field] = int(f.read())
        except OSError:
            values[field] = 0
    return Pool(**values)


def usable_mib(pool):
    """Free pages nobody has reserved yet (a mapping reserves its pages
    before it touches them).
    """
    return max(pool.free - pool.reserved, 0) * PAGE_MIB


def holders(proc='/proc'):
    """[(pid, command, MiB)] of the processes that map hugepages, most
    first.
    """
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, 'status')) as f:
                status = dict(line.split(':', 1) for line in f
                              if ':' in line)
        except OSError:
            continue
        kib = int(status.get('HugetlbPages', '0 kB').split()[0])
        if kib:
            found.append((int(entry), _program(proc, entry, status),
                          kib // 1024))
    return sorted(found, key=lambda h: (-h[2], h[0]))


def _program(proc, pid, status):
    """The program's name: SPDK renames its main thread reactor_0."""
    try:
        with open(os.path.join(proc, pid, 'cmdline'), 'rb') as f:
            argv0 = f.read().split(b'\0')[0].decode(errors='replace')
    except OSError:
        argv0 = ''
    program = os.path.basename(argv0)
    if program and not program.startswith(('python', 'perl', 'ruby')):
        return program
    return status['Name'].strip()


def _held(found, limit=4):
    if not found:
        return 'none held by processes'
    text = ', '.join('pid %d %s %d MiB' % h for h in found[:limit])
    if len(found) > limit:
        text += ', %d more' % (len(found) - limit)
    return 'held: ' + text


def shortfall(purpose, needs, pool, found):
    """The one line for ``needs`` ([(text, MiB)]) against ``pool``, or
    None when they fit.
    """
    need = sum(mib for _text, mib in needs)
    have = usable_mib(pool)
    if have >= need:
        return None
    grow_to = pool.total + pages(need - have)
    return ('2 MiB hugepages short for %s: need %d MiB free (%s), %d MiB '
            'free of %d MiB (%s); short %d MiB: stop what holds them or '
            'raise the pool: echo %d > %s'
            % (purpose, need, ' + '.join(text for text, _mib in needs),
               have, pool.total * PAGE_MIB, _held(found), need - have,
               grow_to, POOL_SIZE))


def grow_pool(total_pages, pool_size=POOL_SIZE, record=None):
    """Raise the pool to ``total_pages`` (never lower it); the kernel may
    give fewer. The size it had goes to ``record`` (the first time), for
    :func:`restore_pool`.
    """
    with open(pool_size) as f:
        before = int(f.read())
    if before >= total_pages:
        return
    try:
        with open(pool_size, 'w') as f:
            f.write(str(total_pages))
    except OSError:
        return  # not root, or no memory: the check says what is short
    if record and not os.path.exists(record):
        os.makedirs(os.path.dirname(record), exist_ok=True)
        with open(record, 'w') as f:
            f.write(str(before))


def restore_pool(record, pool_size=POOL_SIZE):
    """Give back what :func:`grow_pool` raised: the pool goes back to
    the size in ``record`` (pages others hold stay theirs: the kernel
    frees only free pages). Returns the size, or None without a record.
    """
    try:
        with open(record) as f:
            before = int(f.read())
    except FileNotFoundError:
        return None
    with open(pool_size, 'w') as f:
        f.write(str(before))
    os.unlink(record)
    return before


def hugetlbfs_mounted(mounts='/proc/mounts'):
    with open(mounts) as f:
        return any(fields[1] == HUGETLBFS and fields[2] == 'hugetlbfs'
                   for fields in (line.split() for line in f))


def mount_hugetlbfs(record):
    """Mount hugetlbfs at :data:`HUGETLBFS` when nothing is mounted there
    (a new machine: systemd mounts it on a booted one), for SPDK and QEMU;
    ``record`` says so to :func:`unmount_hugetlbfs`.
    """
    if hugetlbfs_mounted():
        return False
    os.makedirs(HUGETLBFS, exist_ok=True)
    subprocess.run(['mount', '-t', 'hugetlbfs', '-o', 'pagesize=2M',
                    'hugetlbfs', HUGETLBFS], check=True,
                   capture_output=True)
    with open(record, 'w') as f:
        f.write(HUGETLBFS)
    return True


def unmount_hugetlbfs(record):
    """Unmount what :func:`mount_hugetlbfs` mounted; an error in words,
    or None.
    """
    if not os.path.exists(record):
        return None
    result = subprocess.run(['umount', HUGETLBFS], capture_output=True,
                            text=True)
    if result.returncode and hugetlbfs_mounted():
        return 'hugetlbfs at %s: %s' % (HUGETLBFS, result.stderr.strip())
    os.unlink(record)
    return None


def mem_available_mib(meminfo='/proc/meminfo'):
    with open(meminfo) as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) // 1024
    return 0


def busy_ports(ports=None, address=layout_mod.HOST):
    """'name port' of the ``ports`` ({name: port} on ``address``, all of
    :data:`layout.PORTS` by default) where something listens.
    """
    busy = []
    for name, port in sorted((layout_mod.PORTS if ports is None
                              else ports).items(), key=lambda item: item[1]):
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((address, port)) == 0:
                busy.append('%s %d' % (name, port))
    return busy


def check_up(needs=None, grow=True, compute_nodes=1, storage_nodes=1,
             record=None):
    """Before ``up`` starts anything: ports, hugepages, memory;
    ``record`` keeps the pool's size if it is raised (``down`` restores
    it).
    """
    busy = busy_ports()
    if busy:
        raise ShortError('ports in use on %s: %s (another cloud, or a '
                         'leftover process? tools/cloud status and down, '
                         'or stop what listens there)'
                         % (layout_mod.HOST, ', '.join(busy)))
    if (compute_nodes, storage_nodes) != (1, 1):
        in_the_way = fabric.in_the_way()
        if in_the_way:
            raise ShortError('the multi-node network (%s) is in the way: '
                             '%s (another multi-node cloud? tools/cloud '
                             'down)' % (fabric.SUBNET, ', '.join(in_the_way)))
    needs = needs or up_needs(compute_nodes=compute_nodes,
                              storage_nodes=storage_nodes)
    need_pages = pages(sum(mib for _text, mib in needs))
    if grow:
        # The pool is made big enough for the cloud alone; pages other
        # users hold are theirs, not taken from the host behind them.
        grow_pool(need_pages, record=record)
    message = shortfall('the cloud', needs, read_pool(), holders())
    if message:
        raise ShortError(message)
    available = mem_available_mib()
    wanted = services_mib(compute_nodes, storage_nodes)
    if available < wanted:
        raise ShortError('memory short for the cloud: its services need '
                         'about %d MiB, MemAvailable is %d MiB: stop other '
                         'work or lower the hugepage pool (%s)'
                         % (wanted, available, POOL_SIZE))


def services_mib(compute_nodes=1, storage_nodes=1):
    """Memory the cloud's services need, hugepages aside."""
    return (SERVICES_MIB + (compute_nodes - 1) * COMPUTE_NODE_MIB +
            (storage_nodes - 1) * STORAGE_NODE_MIB)


def check_guests(count, ram_mib, purpose, image_copy=False):
    """Before a server is created: free hugepages on this compute node for
    ``count`` guests of ``ram_mib`` (and the driver's spdk_dd when an image
    is copied to a volume meanwhile).
    """
    needs = [('%d guest%s x %d MiB' % (count, 's' if count > 1 else '',
                                       ram_mib), count * ram_mib)]
    if image_copy:
        needs.append(('spdk_dd %d MiB' % layout_mod.SPDK_DD_MEM_MIB,
                      layout_mod.SPDK_DD_MEM_MIB))
    message = shortfall(purpose, needs, read_pool(), holders())
    if message:
        raise ShortError(message)


def _node_count(text):
    count = int(text)
    if not 1 <= count <= layout_mod.MAX_NODES:
        raise argparse.ArgumentTypeError('from 1 to %d, not %s'
                                         % (layout_mod.MAX_NODES, text))
    return count


def add_node_options(parser):
    """``up``'s options, here and in ``tools/cloud``'s own parser."""
    parser.add_argument('--compute-nodes', type=_node_count, default=1,
                        help='compute nodes, each in namespaces of its own '
                             '(default: 1, the one-host cloud\'s)')
    parser.add_argument('--storage-nodes', type=_node_count, default=1,
                        help='storage nodes: nvmf_tgt and cinder-volume '
                             '(default: 1)')


def main(argv=None):
    """``python3 -m tools.aio_cloud.capacity [--state-dir DIR] up``: the
    checks ``tools/cloud up`` makes before installing anything. Silent when the
    cloud in DIR already runs (``up`` then says so).
    """
    parser = argparse.ArgumentParser(prog='tools/cloud')
    parser.add_argument('--state-dir', default=layout_mod.DEFAULT_STATE_DIR)
    parser.add_argument('command')
    add_node_options(parser)
    args, _rest = parser.parse_known_args(argv)
    layout = layout_mod.Layout(args.state_dir)
    if processes.ProcessTable(layout.process_table).running():
        return 0
    try:
        check_up(compute_nodes=args.compute_nodes,
                 storage_nodes=args.storage_nodes,
                 record=layout.pool_record)
    except ShortError as exc:
        print('tools/cloud %s: %s' % (args.command, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
