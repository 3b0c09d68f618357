"""``up``, ``down`` and ``status`` of the all-in-one cloud."""

import collections
import contextlib
import functools
import glob
import json
import os
import shutil
import subprocess
import sys
import time

from spdk_common import binaries
from tools.aio_cloud import capacity
from tools.aio_cloud import daemons
from tools.aio_cloud import fabric
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import processes
from tools.aio_cloud import resources
from tools.aio_cloud import services as services_mod

HUGEPAGE_DIR = capacity.HUGETLBFS


# nova-compute waits on the conductor and RabbitMQ when it stops; the agent
# stops its SPDK vhost itself. The rest go newest first.
STOP_FIRST = ('nova-compute', 'spdk-vhost-target')


class CloudError(Exception):
    pass


@contextlib.contextmanager
def step(name):
    """Print a step with its duration; the caller sees failures."""
    print('%-44s' % name, end=' ', flush=True)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        print('FAILED after %.1f s' % (time.monotonic() - start), flush=True)
        raise
    print('%6.1f s' % (time.monotonic() - start), flush=True)


def _check_traversable(path):
    """QEMU runs as libvirt-qemu and must reach the state directory."""
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent):
        if not os.stat(parent).st_mode & 0o001:
            raise CloudError('%s is not traversable by others (QEMU runs as '
                             'libvirt-qemu): choose another --state-dir'
                             % parent)
        parent = os.path.dirname(parent)


def prepare_state(layout):
    os.makedirs(layout.root, exist_ok=True)
    os.chmod(layout.root, 0o711)
    _wipe_state(layout)
    for sub in ('etc', 'run', 'log', 'lib', 'lock', 'cache'):
        os.makedirs(layout.path(sub), exist_ok=True)
    # Configuration holds passwords; logs are for root too.
    os.chmod(layout.path('etc'), 0o700)
    os.chmod(layout.path('log'), 0o700)
    # QEMU reads instance files and config drives here.
    os.chmod(layout.path('lib'), 0o711)
    with open(layout.run('hugepages-before.json'), 'w') as f:
        json.dump(sorted(os.listdir(HUGEPAGE_DIR))
                  if os.path.isdir(HUGEPAGE_DIR) else [], f)


def _wipe_state(layout):
    for name in os.listdir(layout.root):
        if name in layout.KEPT:
            continue
        path = layout.path(name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def up(layout, venv, compute_nodes=1, storage_nodes=1):
    message = binaries.missing_message()
    if message:
        raise CloudError(message)
    table = processes.ProcessTable(layout.process_table)
    running = table.running()
    if running:
        if len(running) < len(table.entries()):
            raise CloudError('the cloud in %s is partly running (%d of %d '
                             'processes; tools/cloud status): tools/cloud '
                             'down first' % (layout.root, len(running),
                                             len(table.entries())))
        print('the cloud is already up (tools/cloud status; tools/cloud '
              'down to stop it)')
        return
    try:
        # Ports, hugepages (the pool is raised to what the cloud needs),
        # memory: tools/cloud made these checks already, before installing.
        capacity.check_up(compute_nodes=compute_nodes,
                          storage_nodes=storage_nodes,
                          record=layout.pool_record)
    except capacity.ShortError as exc:
        raise CloudError(str(exc)) from exc
    started = time.monotonic()
    with step('prepare %s' % layout.root):
        _check_traversable(layout.root)
        prepare_state(layout)
        # Before the nodes' namespaces, which see the mounts of their start.
        mounted = capacity.mount_hugetlbfs(layout.hugetlbfs_record)
        layout_mod.save_nodes(layout, compute_nodes, storage_nodes)
        secret = layout_mod.load_or_create_secrets(layout)
    if mounted:
        print('  mounted hugetlbfs at %s (down unmounts it)'
              % capacity.HUGETLBFS)
    svc = services_mod.Services(layout, venv, secret)
    try:
        for name, action in _up_steps(layout, secret, svc):
            with step(name):
                action()
    except BaseException as exc:  # Ctrl-C too: nothing half-made is left
        print('up failed: %s' % (str(exc) or type(exc).__name__),
              file=sys.stderr)
        print('stopping what was started', file=sys.stderr)
        down(layout, delete_resources=False)
        if isinstance(exc, Exception):
            raise CloudError('up failed: %s' % exc) from exc
        raise
    resources.write_adminrc(layout, secret)
    print('cloud up in %.1f s; for the CLI: . %s'
          % (time.monotonic() - started, layout.adminrc))


def _up_steps(layout, secret, svc):
    """[(what, action)] of ``up``, in order: the one-host cloud's storage
    and compute steps, or one step per node of a multi-node cloud.
    """
    steps = [
        ('network: bridge %s, control plane on %s'
         % (fabric.BRIDGE, fabric.CONTROL_ADDRESS), fabric.create_bridge)
    ] if layout.multi_node else []
    steps += [
        ('MariaDB', svc.start_mariadb),
        ('RabbitMQ', svc.rabbitmq.start),
        ('keystone (fernet, bootstrap)', svc.start_keystone),
        ('identity: service users and endpoints',
         lambda: resources.create_identity(layout, secret)),
        ('placement', svc.start_placement),
        ('glance (file store)', svc.start_glance),
        ('neutron API (no agents)', svc.start_neutron),
        ('nova api, conductor, scheduler', svc.start_nova_control),
        ('cinder api, scheduler', svc.start_cinder_control)]
    storage, compute = svc.storage_nodes, svc.compute_nodes
    if storage[0].name:
        # Every node's spdk-storage-node before any cinder-volume: the
        # replicated back end asks each node's service at its start.
        steps += [('%s: nvmf_tgt on %s, spdk-storage-node'
                   % (node.name, node.address),
                   functools.partial(svc.start_storage_node, node))
                  for node in storage]
        steps += [('%s: cinder-volume' % node.name,
                   functools.partial(svc.start_cinder_volume, node))
                  for node in storage]
    else:
        steps += [('SPDK nvmf_tgt (AIO bdev, lvstore)',
                   svc.start_storage_target),
                  ('cinder-volume (SPDK driver)', svc.start_cinder_volume)]
    if compute[0].name:
        steps += [('%s: namespaces, libvirtd, agent, nova' % node.name,
                   functools.partial(svc.start_compute_node, node))
                  for node in compute]
    else:
        steps += [('libvirtd (private mount namespace)', svc.start_libvirtd),
                  ('spdk-vhost-target agent + SPDK vhost',
                   svc.start_vhost_agent),
                  ('nova-compute (SPDKLibvirtDriver)',
                   svc.start_nova_compute)]
    return steps + [
        ('compute host%s discovered' % ('s' if len(compute) > 1 else ''),
         svc.discover_compute_host),
        ('guest image in glance',
         lambda: resources.create_guest_image(layout, secret)),
        ('hugepage flavor, SPDK volume types',
         lambda: resources.create_flavor_and_types(layout, secret)),
        ('services up in the APIs',
         lambda: wait_services_up(layout, secret)),
        ('every recorded process still running',
         lambda: _all_running(layout))]


def _all_running(layout):
    """A process that died after its readiness check (SPDK exits when
    another SPDK holds its CPU's lock) fails ``up`` rather than leaving a
    cloud that ``status`` shows partly down.
    """
    table = processes.ProcessTable(layout.process_table)
    stopped = sorted({e.name for e in table.entries()} -
                     {e.name for e in table.running()})
    if stopped:
        raise CloudError('stopped after starting: %s (see their logs in %s)'
                         % (', '.join(stopped), layout.path('log')))


def require_up(layout):
    """For the commands that use the cloud: a clear error when it is not
    (fully) up.
    """
    table = processes.ProcessTable(layout.process_table)
    entries = table.entries()
    running = table.running()
    if not entries or not os.path.exists(layout.adminrc):
        raise CloudError('no cloud in %s: tools/cloud up first' % layout.root)
    if len(running) < len(entries):
        down_now = sorted({e.name for e in entries} -
                          {e.name for e in running})
        raise CloudError('the cloud is not fully up, stopped: %s '
                         '(tools/cloud status)' % ', '.join(down_now))


def wait_services_up(layout, secret, timeout=120):
    """Every service up in its API: one nova-compute per compute node,
    one cinder-volume per storage node.
    """
    conn = resources.connect(layout, secret)
    computes, storages = layout_mod.node_counts(layout)
    wanted = collections.Counter({
        'nova-compute': computes, 'nova-conductor': 1, 'nova-scheduler': 1,
        'cinder-scheduler': 1, 'cinder-volume': storages})
    deadline = time.monotonic() + timeout
    try:
        while True:
            up_now = collections.Counter(
                s.binary for s in list(conn.compute.services()) +
                list(conn.block_storage.services())
                if s.state == 'up' and s.status == 'enabled')
            missing = wanted - up_now
            if not missing:
                return
            if time.monotonic() > deadline:
                raise CloudError('services not up after %ds: %s'
                                 % (timeout, ', '.join(
                                     sorted(missing.elements()))))
            time.sleep(2)
    finally:
        conn.close()


def _delete_resources(layout):
    """Servers and volumes go the normal way while the cloud runs: libvirt
    domains, vhost controllers, exports and lvols with them.
    """
    with open(layout.secrets_file) as f:
        secret = json.load(f)
    conn = resources.connect(layout, secret)
    try:
        servers = list(conn.compute.servers(all_projects=True))
        for server in servers:
            conn.compute.delete_server(server, force=True)
        for server in servers:
            conn.compute.wait_for_delete(server, wait=180)
        snapshots = list(conn.block_storage.snapshots(all_projects=True))
        for snapshot in snapshots:
            conn.block_storage.delete_snapshot(snapshot, force=True)
        for snapshot in snapshots:
            conn.block_storage.wait_for_delete(snapshot, wait=180)
        volumes = list(conn.block_storage.volumes(all_projects=True))
        for volume in volumes:
            conn.block_storage.delete_volume(volume, force=True)
        for volume in volumes:
            conn.block_storage.wait_for_delete(volume, wait=180)
    finally:
        conn.close()


def _remove_hugepage_files(layout):
    before_file = layout.run('hugepages-before.json')
    if not os.path.exists(before_file) or not os.path.isdir(HUGEPAGE_DIR):
        return []
    with open(before_file) as f:
        before = set(json.load(f))
    removed = []
    for name in sorted(set(os.listdir(HUGEPAGE_DIR)) - before):
        path = os.path.join(HUGEPAGE_DIR, name)
        if name.startswith('spdk_pid'):
            pid = name[len('spdk_pid'):].split('map_')[0]
            if pid.isdigit() and processes.alive(int(pid)):
                continue
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
        removed.append(name)
    return removed


def _stop_entry(svc, table, entry):
    """Stop one recorded process group; False if it would not go."""
    if entry.name == 'rabbitmq':
        svc.rabbitmq.shutdown()
    return table.stop(entry)


def down(layout, delete_resources=True):
    """Stop everything ``up`` started, newest first, nova-compute before
    what it waits on; leave only the logs and the guest image cache.
    """
    if not os.path.isdir(layout.root):
        print('nothing to stop: %s does not exist' % layout.root)
        return
    table = processes.ProcessTable(layout.process_table)
    entries = table.entries()
    names = {e.name for e in table.running()}
    problems = []
    if delete_resources and {'keystone', 'nova-api', 'cinder-api',
                             'nova-compute'} <= {processes.base_name(n)
                                                 for n in names}:
        with step('delete servers and volumes'):
            try:
                _delete_resources(layout)
            except Exception as exc:  # the cloud may be half broken
                problems.append('could not delete servers/volumes through '
                                'the API: %s' % exc)
    svc = services_mod.Services(layout, '', {})
    for node in svc.compute_nodes:
        if node.suffix('libvirtd') in names:
            with step('destroy remaining libvirt domains%s'
                      % (' of %s' % node.name if node.name else '')):
                svc.libvirtd(node).destroy_domains()
    # Strays first: one may be a service the recorded ones wait on, as
    # nova-compute is stopped first.
    problems += _stop_strays(layout, table, guests_known=True)
    for entry in processes.stop_order(entries, STOP_FIRST):
        if entry.name not in names:
            continue
        with step('stop %s (pid %d)' % (entry.name, entry.pid)):
            if not _stop_entry(svc, table, entry):
                problems.append('%s (pid %d) did not stop'
                                % (entry.name, entry.pid))
    # Anything still using the state directory now, a guest too.
    problems += _stop_strays(layout, table, guests_known=False)
    # Read before the state (and the record of the nodes) goes.
    multi_node = layout.multi_node
    if multi_node:
        with step('remove the network namespaces and bridge %s'
                  % fabric.BRIDGE):
            problems += fabric.remove()
    with step('remove hugepage files, sockets, state'):
        removed = _remove_hugepage_files(layout)
        _wipe_state(layout)
    if removed:
        print('  removed from %s: %s' % (HUGEPAGE_DIR, ', '.join(removed)))
    problem = capacity.unmount_hugetlbfs(layout.hugetlbfs_record)
    if problem:
        problems.append(problem)
    restored = capacity.restore_pool(layout.pool_record)
    if restored is not None:
        print('  hugepage pool back to the %d pages it had before up'
              % restored)
    problems += leftovers(layout, multi_node)
    if problems:
        raise CloudError('down left: ' + '; '.join(problems))
    print('cloud down; logs kept in %s' % layout.path('log'))


STRAY_GRACE = 10.0
# How a stray refers to the state directory, in words.
_HOW = {'argv': 'its command line names %s', 'cwd': 'works in %s',
        'open file': 'has a file of %s open'}


def guest_pids(layout):
    """QEMU processes of the private libvirtds (their pid files)."""
    pids = set()
    for path in (glob.glob(layout.path('libvirt', 'run', 'qemu', '*.pid'))
                 + glob.glob(layout.path('nodes', '*', 'libvirt', 'run',
                                         'qemu', '*.pid'))):
        try:
            with open(path) as f:
                pids.add(int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return pids


def _stop_strays(layout, table, guests_known):
    problems = []
    for pid, name, how in strays(layout, table, guests_known):
        with step('stop stray %s (pid %d, %s)' % (name, pid, how)):
            if processes.stop_pids([pid] + sorted(
                    processes.descendants([pid]) - {pid}),
                    grace=STRAY_GRACE):
                problems.append('stray %s (pid %d) did not stop'
                                % (name, pid))
    return problems


def strays(layout, table=None, guests_known=True):
    """[(pid, command, how)] of processes that use the state directory
    but are not in the process table: a service an operator restarted by
    hand, or one a crashed ``up`` or ``down`` lost.
    """
    table = table or processes.ProcessTable(layout.process_table)
    known = table.known_pids()
    if guests_known:
        known |= processes.descendants(guest_pids(layout))
    found = processes.find_strays(
        layout.root, known, ignored=[layout.path(d) for d in layout.KEPT])
    return [(pid, name, _HOW[how] % layout.root)
            for pid, name, how in found]


def leftovers(layout, multi_node=False):
    """What would show that ``down`` left something behind
    (``multi_node``: a multi-node cloud's network too).
    """
    found = ['port %s still listening' % busy
             for busy in capacity.busy_ports()]
    if multi_node:
        found += fabric.present()
    with open('/proc/mounts') as f:
        found += ['mount %s' % line.split()[1] for line in f
                  if layout.root in line]
    loops = subprocess.run(['losetup', '-a'], capture_output=True,
                           text=True).stdout
    found += ['loop device %s' % line.split(':')[0]
              for line in loops.splitlines() if layout.root in line]
    return found


def status(layout):
    table = processes.ProcessTable(layout.process_table)
    entries = table.entries()
    found = strays(layout, table) if os.path.isdir(layout.root) else []
    for pid, name, how in found:
        print('stray: %s (pid %d) is not in the process table but %s; '
              'tools/cloud down stops it' % (name, pid, how))
    if not entries:
        print('no cloud in %s' % layout.root)
        return False
    running = {e.name for e in table.running()}
    width = max([18] + [len(e.name) for e in entries])
    print('%-*s %-8s %-5s %-6s %8s %9s  %s'
          % (width, 'process', 'pid', 'state', 'port', 'RSS MiB', 'huge MiB',
             'log'))
    total = huge_total = 0
    holders = processes.hugetlb_holders()
    for e in entries:
        rss = processes.group_rss_mib(e.pgid)
        huge = processes.group_hugetlb_mib(e.pgid, holders)
        total += rss
        huge_total += huge
        print('%-*s %-8d %-5s %-6s %8.0f %9.0f  %s' % (
            width, e.name, e.pid, 'up' if e.name in running else 'DOWN',
            e.port or '', rss, huge, e.log))
    print('%d of %d up, %.0f MiB resident (process groups, guests '
          'included), %.0f MiB of hugepages of their own'
          % (len(running), len(entries), total, huge_total))
    pool = capacity.read_pool()
    print('2 MiB hugepages: %d MiB free of %d MiB (%d reserved)'
          % (pool.free * capacity.PAGE_MIB, pool.total * capacity.PAGE_MIB,
             pool.reserved * capacity.PAGE_MIB))
    print('CLI: . %s' % layout.adminrc)
    return len(running) == len(entries) and not found


# Restarted together: the agent starts SPDK vhost.
RESTART_TOGETHER = (('spdk-vhost-target', 'spdk-vhost'),)


def restart(layout, venv, name):
    """Stop one service's recorded process group as ``down`` does, start
    it again as ``up`` does, and record the new process.
    """
    table = processes.ProcessTable(layout.process_table)
    entries = table.entries()
    if not entries:
        raise CloudError('no cloud in %s: tools/cloud up first' % layout.root)
    valid = [e.name for e in entries]
    if name not in valid:
        raise CloudError('unknown service %r; valid names: %s'
                         % (name, ', '.join(valid)))
    base, at, node_name = name.partition('@')
    if base == 'namespaces':
        raise CloudError('%s holds the namespaces its node\'s services run '
                         'in: restart those, or the cloud' % name)
    together = tuple(member + at + node_name for member in next(
        (group for group in RESTART_TOGETHER if base in group), (base,)))
    secret = layout_mod.load_or_create_secrets(layout)
    svc = services_mod.Services(layout, venv, secret)

    def node(nodes):
        return next(n for n in nodes if n.name == (node_name or None))

    stopping = [e for e in processes.stop_order(entries, STOP_FIRST)
                if e.name in together]
    for entry in stopping:
        with step('stop %s (pid %d)' % (entry.name, entry.pid)):
            if not _stop_entry(svc, table, entry):
                raise CloudError('%s (pid %d) did not stop'
                                 % (entry.name, entry.pid))
    specs = {e.name: table.spec(e.name) for e in stopping}
    table.forget(together)
    with step('start %s' % ' and '.join(together)):
        if base == 'libvirtd':
            svc.start_libvirtd(node(svc.compute_nodes))
        elif base in RESTART_TOGETHER[0]:
            svc.start_vhost_agent(node(svc.compute_nodes))
        elif base == 'nvmf_tgt':
            # With the socket's mode and the lvstore check after it.
            svc.start_storage_target(node(svc.storage_nodes))
        else:
            _start_again(svc, name, specs[name])
    for entry in table.entries():
        if entry.name in together:
            print('%s now pid %d' % (entry.name, entry.pid))


HTTP_SERVICES = ('keystone', 'placement', 'glance-api', 'neutron-api',
                 'nova-api', 'cinder-api')


def _start_again(svc, name, spec):
    if spec is None:
        raise CloudError('no record of how %s was started' % name)
    proc = svc.table.start(name, spec['argv'], spec['log'], env=spec['env'],
                           port=spec['port'], cwd=spec['cwd'],
                           stop_timeout=spec['stop_timeout'])
    if name == 'rabbitmq':
        check = svc.rabbitmq.ready
    elif name in HTTP_SERVICES:
        check = (lambda: services_mod.http_answers(svc.layout.url(name)))
    elif spec['port']:
        check = (lambda: daemons.port_open(spec['port'], svc.layout.host))
    else:
        # A daemon without a port: alive a few seconds after its start.
        started = time.monotonic()
        check = (lambda: time.monotonic() - started > 3)
    daemons.wait_for(name, check, 90, spec['log'], proc)
