"""The demos of a multi-node cloud (``tools/cloud demo --live-migrate``,
``--evacuate``): a server booted from an SPDK vhost volume leaves its
compute node with Nova's own flows, and must read on the other node what
it wrote before. ``--replicated``: a storage node dies under a server
writing to a volume of two copies.

Both boot from a volume made from the guest image, with no disk in the
instances directory but the read-only config drive: libvirt refuses to
live-migrate a writable file disk that is not on a shared file system it
knows (NFS, CephFS, ...), and the nodes' common instances directory is a
local one.
"""

import configparser
import os
import re
import signal
import subprocess
import tempfile
import time

from spdk_common import naming
from spdk_common import rpc
from tempest_tests.tests import guest as guest_checks
from tools.aio_cloud import capacity
from tools.aio_cloud import cloud
from tools.aio_cloud import configs
from tools.aio_cloud import daemons
from tools.aio_cloud import demo
from tools.aio_cloud import fabric
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import processes
from tools.aio_cloud import resources

PREFIX = demo.PREFIX
TIMEOUT = demo.TIMEOUT

# The guest also prints, every 2 s, the first block of each SPDK disk as
# it reads it then (page cache dropped: from the disk, through whichever
# host serves it now), after its uptime, which orders the lines across the
# migration.
LIVE = 'SPDK-LIVE'
HEARTBEAT = r"""(while true; do
    echo 1 > /proc/sys/vm/drop_caches
    for link in /dev/disk/by-id/virtio-*; do
        dev=$(readlink -f "$link")
        [ -b "$dev" ] || continue
        echo "%s $(cut -d' ' -f1 /proc/uptime) ${link##*/virtio-}" \
            "$(head -c 4096 "$dev" | md5sum | cut -d' ' -f1)" > /dev/console
    done
    sleep 2
done) &
""" % LIVE

# The evacuation demo's guest writes its boot id and a count into the
# second block of each SPDK disk every 2 s, reading the block first: once
# it has written, another boot id there is a write of another guest (the
# one left on the dead node) that reached the volume, reported as
# "foreign".
FENCE = 'SPDK-FENCE'
FENCE_WRITER = r"""(boot=$(cat /proc/sys/kernel/random/boot_id); n=0
while true; do
    for link in /dev/disk/by-id/virtio-*; do
        dev=$(readlink -f "$link")
        [ -b "$dev" ] || continue
        echo 1 > /proc/sys/vm/drop_caches
        seen=$(dd if="$dev" bs=4096 skip=1 count=1 2>/dev/null \
               | head -c 80 | tr -d '\000' | cut -d' ' -f2)
        verdict=ok
        [ "$n" -gt 0 ] && [ "$seen" != "$boot" ] && verdict="foreign:$seen"
        n=$((n + 1))
        echo "%s $boot $n" | dd of="$dev" bs=4096 seek=1 count=1 \
            conv=fsync 2>/dev/null
        echo "%s $(cut -d' ' -f1 /proc/uptime) ${link##*/virtio-} $n" \
            "$verdict" > /dev/console
    done
    sleep 2
done) &
""" % (FENCE, FENCE)


def heartbeats(console, volume_id):
    """[(uptime, checksum)] of the heartbeat lines about a volume."""
    pattern = re.compile(r'^%s (\d+\.\d+) %s (\S+)\s*$' % (
        LIVE, re.escape(guest_checks.serial(volume_id))), re.MULTILINE)
    return [(float(uptime), value)
            for uptime, value in pattern.findall(console)]


def fence_marks(console, volume_id):
    """[(uptime, count, verdict)] of the evacuation guest's lines about a
    volume.
    """
    pattern = re.compile(r'^%s (\d+\.\d+) %s (\d+) (\S+)\s*$' % (
        FENCE, re.escape(guest_checks.serial(volume_id))), re.MULTILINE)
    return [(float(uptime), int(count), verdict)
            for uptime, count, verdict in pattern.findall(console)]


# How many boot volumes a demo makes to have one off a given node.
BOOT_VOLUME_TRIES = 3


class NodeDemo:
    """What both demos do: a boot-from-volume server on one compute node
    whose guest runs the console agent and ``guest_script``, then moves.
    """

    def __init__(self, layout, venv, guest_script):
        self.layout = layout
        self.venv = venv
        self.cli = demo.Client(layout, venv)
        self.nodes = {node.name: node
                      for node in layout_mod.compute_nodes(layout)}
        self.guest_script = guest_script
        self.created = {'server': [], 'volume': [], 'image': []}
        self.timed = demo.Steps()

    def hosts(self, what, why):
        """The compute hosts up and enabled; None (after saying so) when
        fewer than two. Refuses (capacity.ShortError) without hugepages
        for two guests at once (``why``).
        """
        hosts = sorted(s['Host'] for s in self.cli(
            'compute', 'service', 'list', '--service', 'nova-compute')
            if s['State'] == 'up' and s['Status'] == 'enabled')
        if len(hosts) < 2:
            print('demo: %s needs two compute nodes up, this cloud has %s: '
                  'tools/cloud down, then tools/cloud up --compute-nodes 2'
                  % (what, ', '.join(hosts) or 'none'))
            return None
        capacity.check_guests(2, demo.guest_ram_mib(self.cli),
                              '%s (%s, flavor %s)'
                              % (what, why, resources.FLAVOR))
        return hosts

    def boot(self, host, name, avoid_node=None):
        """(server, volume): the volume made from the guest image, the
        server booted from it on ``host``, the pattern written. With
        ``avoid_node``, the volume is made again (at most BOOT_VOLUME_TRIES
        times) while the scheduler puts it on that storage node: each one
        there leaves it less room, and the next goes elsewhere.
        """
        for _try in range(BOOT_VOLUME_TRIES):
            volume = self.timed(
                'volume create --type spdk-vhost --image (boot volume)',
                lambda: self.cli('volume', 'create', '--type', 'spdk-vhost',
                                 '--size', '1', '--image',
                                 resources.GUEST_IMAGE,
                                 '%s-%s-volume' % (PREFIX, name))['id'])
            self.created['volume'].append(volume)
            self.timed('  volume available', lambda: self.cli.wait(
                'volume', volume, 'status', 'available'))
            where = self.cli('volume', 'show',
                             volume)['os-vol-host-attr:host']
            if where.partition('@')[0] != avoid_node:
                break
            print('  on %s, which fails later: made again' % where)
        else:
            raise demo.DemoError('the boot volume went to %s %d times'
                                 % (avoid_node, BOOT_VOLUME_TRIES))
        user_data = tempfile.NamedTemporaryFile('w', suffix='.sh',
                                                delete=False)
        with user_data:
            user_data.write(guest_checks.CONSOLE_AGENT.replace(
                '#!/bin/sh\n', '#!/bin/sh\n' + self.guest_script, 1))
        try:
            server = self.timed(
                'server create on %s from the volume' % host,
                lambda: self.cli(
                    'server', 'create', '--flavor', resources.FLAVOR,
                    '--volume', volume, '--nic', 'none',
                    '--availability-zone', 'nova:' + host,
                    '--user-data', user_data.name,
                    '%s-%s' % (PREFIX, name))['id'])
        finally:
            os.unlink(user_data.name)
        self.created['server'].append(server)
        self.timed('  server ACTIVE', lambda: self.cli.wait(
            'server', server, 'status', 'ACTIVE'))
        return server, volume

    def wait_on(self, server, source, dest, failed):
        """The server's libvirt name once it is ACTIVE on ``dest``;
        ``failed`` says why it is ACTIVE on ``source`` again.
        """
        deadline = time.monotonic() + TIMEOUT
        while True:
            shown = self.cli('server', 'show', server)
            status = shown['status']
            host = shown['OS-EXT-SRV-ATTR:host']
            if status == 'ACTIVE' and host == dest:
                return shown['OS-EXT-SRV-ATTR:instance_name']
            if status == 'ACTIVE' and host == source:
                raise demo.DemoError(
                    'server %s is ACTIVE on %s again: %s (openstack server '
                    'event list %s; log/nova-compute@*.log)'
                    % (server, source, failed, server))
            if status.lower().startswith('error') or (
                    time.monotonic() > deadline):
                raise demo.DemoError('server %s is %s on %s, waiting for '
                                     'ACTIVE on %s'
                                     % (server, status, host, dest))
            time.sleep(1)

    def runs_on(self, instance):
        """The nodes whose libvirtd runs domain ``instance``."""
        return sorted(
            name for name, node in self.nodes.items()
            if instance in subprocess.run(
                ['virsh', '-c', daemons.libvirt_uri(node.libvirt_dir),
                 'list', '--name'], capture_output=True,
                text=True).stdout.split())

    def attached_to(self, volume):
        return [a['host_name'] for a in
                self.cli('volume', 'show', volume)['attachments']]

    def console(self, server):
        return self.cli('console', 'log', 'show', server, parse=False)

    def finish(self, passed):
        try:
            self.timed('delete the server and volume',
                       lambda: demo.delete(self.cli, self.created))
        except demo.DemoError as exc:
            print('demo: clean-up: %s' % exc)
            passed = False
        return self.timed.verdict(passed)


def live_migrate(layout, venv):
    """A server live-migrated by Nova to another compute node
    (``openstack server migrate --live-migration --host``): it must end
    ACTIVE there, served by that node's libvirtd and agent, and read there
    what it wrote before.
    """
    run = NodeDemo(layout, venv, HEARTBEAT)
    # Source and destination QEMU hold the guest's RAM during the copy.
    hosts = run.hosts('live migration', 'the server on two nodes at once')
    if not hosts:
        return run.timed.verdict(False)

    def migrate(server, source, dest):
        # 2.30: a target host without forcing it past the scheduler.
        run.cli('--os-compute-api-version', '2.30', 'server', 'migrate',
                '--live-migration', '--host', dest, server, parse=False)
        return run.wait_on(server, source, dest, 'the migration failed')

    def read_after(server, volume, after):
        deadline = time.monotonic() + TIMEOUT
        while True:
            found = [value for uptime, value in heartbeats(
                run.console(server), volume) if uptime > after]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise demo.DemoError(
                    'server %s printed no "%s" line after the migration in '
                    '%ds' % (server, LIVE, TIMEOUT))
            time.sleep(2)

    passed = False
    try:
        server, volume = run.boot(hosts[0], 'live')
        source = hosts[0]
        dest = next(host for host in hosts if host != source)
        written = run.timed(
            '  guest wrote the pattern: console log checksum',
            lambda: run.cli.console_report(server, 'write', volume))
        run.timed('  guest reads it back (heartbeat)',
                  lambda: read_after(server, volume, 0))
        instance = run.timed('server migrate --live-migration %s -> %s'
                             % (source, dest),
                             lambda: migrate(server, source, dest))
        # Every heartbeat printed from now on comes from the destination.
        before = max([uptime for uptime, _value in heartbeats(
            run.console(server), volume)] or [0.0])
        where = run.runs_on(instance)
        print('  libvirt domain %s runs on: %s' % (instance,
                                                   ', '.join(where)))
        attached = run.attached_to(volume)
        print('  volume attached to: %s' % ', '.join(attached))
        read = run.timed('  guest on %s read the volume: checksum' % dest,
                         lambda: read_after(server, volume, before + 4))
        print('checksum written on %s %s, read on %s %s'
              % (source, written, dest, read))
        passed = (written == read and written != demo.EMPTY_BLOCK_MD5 and
                  where == [dest] and attached == [dest])
    except demo.DemoError as exc:
        print('demo: %s' % exc)
    return run.finish(passed)


# How long the dead node's link stays back up while the evacuated guest
# watches its volume for the old guest's writes.
FENCE_WATCH_S = 20
# The services of a node that "dies": SIGKILL, as a crash. Its SPDK vhost
# and the guest's QEMU stay, cut off with the node's link.
KILLED = ('nova-compute', 'spdk-vhost-target')


def _host_nqn(node):
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(node.agent_conf)
    return conf['spdk_vhost_target']['host_nqn']


def evacuate(layout, venv):
    """A compute node dies under a server (its nova-compute and agent
    killed, its link to the others down; its SPDK vhost and the guest's
    QEMU left running, as on a node cut off): the operator marks its
    service down and evacuates (``openstack server evacuate``). The
    server must rebuild on the other node and read there what it wrote,
    and the dead node must have lost the volume: its host NQN gone from
    the volume's subsystem on the storage node (SPDK's own listing), and,
    once its link is back, no write of its guest reaching the volume
    (the new guest watches for them).
    """
    run = NodeDemo(layout, venv, FENCE_WRITER)
    hosts = run.hosts('evacuation', 'the dead node\'s guest stays')
    if not hosts:
        return run.timed.verdict(False)
    table = processes.ProcessTable(layout.process_table)
    source, dest = hosts[0], hosts[1]
    dead = run.nodes[source]
    killed = []

    def kill_node():
        for service in KILLED:
            entry = table.get(dead.suffix(service))
            os.killpg(entry.pgid, signal.SIGKILL)
            killed.append(entry.name)
        fabric.set_link(dead.name, up=False)

    def evacuate_server(server):
        # 2.11: force the service down; 2.29: evacuate without a host
        # (the scheduler picks).
        run.cli('--os-compute-api-version', '2.11', 'compute', 'service',
                'set', '--down', source, 'nova-compute', parse=False)
        run.cli('--os-compute-api-version', '2.29', 'server', 'evacuate',
                server, parse=False)
        return run.wait_on(server, source, dest, 'the evacuation failed')

    def subsystem_hosts(volume):
        shown = run.cli('volume', 'show', volume)
        node_name = shown['os-vol-host-attr:host'].split('@')[0]
        storage = next(n for n in layout_mod.storage_nodes(layout)
                       if n.name == node_name)
        client = rpc.SPDKClient(storage.rpc_socket)
        try:
            subsystem = next(
                s for s in client.call('nvmf_get_subsystems')
                if s['nqn'] == naming.volume_nqn(configs.NQN_PREFIX, volume))
        finally:
            client.close()
        return [host['nqn'] for host in subsystem['hosts']]

    def marks_after(server, volume, count):
        deadline = time.monotonic() + TIMEOUT
        while True:
            marks = fence_marks(run.console(server), volume)
            if len(marks) >= count:
                return marks
            if time.monotonic() > deadline:
                raise demo.DemoError('server %s printed %d "%s" lines in '
                                     '%ds' % (server, len(marks), FENCE,
                                              TIMEOUT))
            time.sleep(2)

    def revive():
        """The dead node back: its link, agent (which restarts its SPDK
        vhost), nova-compute (which destroys the evacuated guest), and
        its service no longer forced down.
        """
        fabric.set_link(dead.name, up=True)
        # The agent first: nova-compute detaches the evacuated guest's
        # volumes through it when it starts.
        for name in reversed(killed):
            cloud.restart(layout, venv, name)
        run.cli('--os-compute-api-version', '2.11', 'compute', 'service',
                'set', '--up', source, 'nova-compute', parse=False)

    passed = False
    try:
        server, volume = run.boot(source, 'evacuate')
        written = run.timed(
            '  guest wrote the pattern: console log checksum',
            lambda: run.cli.console_report(server, 'write', volume))
        run.timed('  guest writes its marks (block 1)',
                  lambda: marks_after(server, volume, 2))
        old_nqn, new_nqn = _host_nqn(dead), _host_nqn(run.nodes[dest])
        print('  host NQNs allowed on the volume before: %s'
              % ', '.join(subsystem_hosts(volume)))
        run.timed('%s dies: %s killed, link down'
                  % (source, ' and '.join(KILLED)), kill_node)
        instance = run.timed('server evacuate %s -> %s' % (source, dest),
                             lambda: evacuate_server(server))
        where = run.runs_on(instance)
        print('  libvirt domain %s runs on: %s (the dead node\'s guest '
              'counts)' % (instance, ', '.join(where)))
        attached = run.attached_to(volume)
        print('  volume attached to: %s' % ', '.join(attached))
        allowed = subsystem_hosts(volume)
        print('  host NQNs allowed on the volume now: %s'
              % ', '.join(allowed))
        read = run.timed(
            '  guest on %s read the volume: checksum' % dest,
            lambda: run.cli.console_report(server, 'read', volume))
        fabric.set_link(dead.name, up=True)
        seen = len(marks_after(server, volume, 1))
        run.timed('%s link back up, the new guest watches %d s'
                  % (source, FENCE_WATCH_S),
                  lambda: time.sleep(FENCE_WATCH_S))
        marks = marks_after(server, volume, seen + 2)
        foreign = [verdict for _u, _n, verdict in marks if verdict != 'ok']
        print('  new guest wrote %d marks, found %s'
              % (marks[-1][1], ', '.join(foreign) or
                 'no write of the old guest'))
        print('checksum written on %s %s, read on %s %s'
              % (source, written, dest, read))
        passed = (written == read and written != demo.EMPTY_BLOCK_MD5 and
                  attached == [dest] and old_nqn not in allowed and
                  new_nqn in allowed and not foreign and
                  marks[-1][1] > seen)
    except demo.DemoError as exc:
        print('demo: %s' % exc)
    finally:
        try:
            run.timed('%s back: link, %s restarted, service up'
                      % (source, ' and '.join(killed) or 'nothing'), revive)
        except Exception as exc:
            print('demo: reviving %s: %s' % (source, exc))
            passed = False
    return run.finish(passed)


# The replicated demo's guest writes 4 KiB blocks (16 to 271) of the
# replicated disk, direct and synced, one after the other, and prints
# every 2 s how many it wrote and how many failed.
REPLICA = 'SPDK-REPL'
REPLICA_WRITER = r"""(serial=@SERIAL@; n=0; e=0; last=0
link=/dev/disk/by-id/virtio-$serial
while [ ! -b "$(readlink -f $link)" ]; do sleep 1; done
dev=$(readlink -f $link)
while true; do
    if dd if=/dev/urandom of="$dev" bs=4096 count=1 seek=$((16 + n % 256)) \
            oflag=direct conv=fsync 2>/dev/null; then
        n=$((n + 1))
    else
        e=$((e + 1))
    fi
    now=$(cut -d. -f1 /proc/uptime)
    if [ "$now" != "$last" ] && [ $((now % 2)) -eq 0 ]; then
        echo "@MARK@ $now $n $e" > /dev/console
        last=$now
    fi
done) &
""".replace('@MARK@', REPLICA)


def replica_reports(console):
    """The guest's reports: [(its uptime in s, writes, failed writes)]."""
    return [tuple(int(field) for field in found) for found in re.findall(
        r'^%s (\d+) (\d+) (\d+)\s*$' % REPLICA, console, re.MULTILINE)]


def replica_counts(console):
    """(writes, failed writes) of the guest's latest report; None before
    its first.
    """
    found = replica_reports(console)
    return found[-1][1:] if found else None


def last_boot(reports):
    """The reports of the guest's latest boot: those after the last drop
    of its uptime (the console log may keep an earlier boot's).
    """
    start = max((i for i in range(1, len(reports))
                 if reports[i][0] < reports[i - 1][0]), default=0)
    return reports[start:]


def rebooted(reports, uptime_before):
    """The reports of a guest booted again after its report of uptime
    ``uptime_before`` (a hard reboot); None until it reported.
    """
    if not reports or reports[-1][0] >= uptime_before:
        return None
    return last_boot(reports)


def longest_silence(reports, since_writes):
    """The longest time (s) the guest went without a report from its
    report of ``since_writes`` writes on: it reports every 2 s of its
    uptime, between two writes, so a write that waits shows as a longer
    time between reports.
    """
    times = [uptime for uptime, writes, _failed in reports
             if writes >= since_writes]
    return max((b - a for a, b in zip(times, times[1:])), default=0)


def failing_node(storage, copies, backend_host):
    """The storage node the replicated demo fails: one holding a copy of
    the replicated volume (``copies``: its spdk_copies metadata), and not
    the one whose cinder-volume manages the volume (``backend_host``: the
    volume's Cinder host), which must see the agent's reports.
    """
    holders = [pair.partition('=')[0] for pair in copies.split()]
    backend_node = backend_host.partition('@')[0]
    for node in storage:
        if node.name in holders and node.name != backend_node:
            return node
    raise demo.DemoError('no storage node holds a copy of the replicated '
                         'volume (%s) but does not run its back end (%s)'
                         % (copies, backend_host))


def replicated(layout, venv):
    """A storage node dies under a running guest: a volume of type
    spdk-replicated (two copies, one per storage node) attached to a
    server whose guest writes to it all along; the nvmf_tgt of a storage
    node holding a copy (not the boot volume's) is killed (kill -9), and
    later the node's link is taken down (it holds its connections and
    answers nothing). Each time the guest's writes must go on without an
    error, Cinder must show the volume degraded (replication_status
    error, the spdk_copies metadata), and once the node is back the
    compute host's mirror rebuilds the copy and Cinder shows it enabled
    again. Then the nvmf_tgt is killed again and the server hard-rebooted
    while it is dead: Nova attaches the volume on the copy that answers,
    and the rebooted guest writes on it until the node is back and its
    copy rebuilt. With two storage nodes, it is then killed once more and
    the volume detached and attached again while it is dead. With a third
    storage node, that node then dies for good and the operator's
    ``spdk-volume-replicas replace-copy`` puts its copy on the node
    without one, which the mirror rebuilds.
    """
    storage = layout_mod.storage_nodes(layout)
    run = NodeDemo(layout, venv, '')
    if len(storage) < 2:
        print('demo: --replicated needs two storage nodes, this cloud has '
              '%d: tools/cloud down, then tools/cloud up --storage-nodes 2'
              % len(storage))
        return run.timed.verdict(False)
    host = sorted(s['Host'] for s in run.cli(
        'compute', 'service', 'list', '--service', 'nova-compute')
        if s['State'] == 'up')[0]
    table = processes.ProcessTable(layout.process_table)
    # The storage node that fails, and its nvmf_tgt: chosen once the
    # volumes are placed.
    victim = dead = None
    killed, cut = [], []
    # Failed writes of the guest's boots before a reboot.
    earlier_failures = []

    def replication(volume, wanted):
        deadline = time.monotonic() + TIMEOUT
        while True:
            shown = run.cli('volume', 'show', volume)
            if shown['replication_status'] == wanted:
                return shown
            if time.monotonic() > deadline:
                raise demo.DemoError(
                    'volume %s: replication_status %s, waiting for %s'
                    % (volume, shown['replication_status'], wanted))
            time.sleep(2)

    def writes_after(server, count):
        deadline = time.monotonic() + TIMEOUT
        while True:
            counts = replica_counts(run.console(server))
            if counts and counts[0] >= count:
                return counts
            if time.monotonic() > deadline:
                raise demo.DemoError('server %s reported %s writes, waiting '
                                     'for %d' % (server, counts, count))
            time.sleep(2)

    def kill():
        os.killpg(table.get(dead).pgid, signal.SIGKILL)
        killed.append(dead)

    def revive():
        cloud.restart(layout, venv, dead)
        killed.remove(dead)

    def cut_link(up):
        fabric.set_link(victim.name, up=up)
        if up:
            cut.remove(victim.name)
        else:
            cut.append(victim.name)

    def outage(what, fail, repair, before, repaired=None):
        """One outage of the failing storage node; the guest's counts
        after it.
        """
        run.timed(what, fail)
        shown = run.timed('  Cinder shows the volume degraded',
                          lambda: replication(volume, 'error'))
        print('  replication_status %s, spdk_copies: %s'
              % (shown['replication_status'],
                 (shown.get('properties') or {}).get('spdk_copies')))
        during = run.timed('  guest writes go on (20 more)',
                           lambda: writes_after(server, before[0] + 20))
        run.timed('  ' + (repaired or '%s back' % victim.name), repair)
        shown = run.timed('  copy rebuilt: Cinder shows the volume enabled',
                          lambda: replication(volume, 'enabled'))
        print('  spdk_copies: %s'
              % (shown.get('properties') or {}).get('spdk_copies'))
        after = run.timed('  guest writes go on (20 more)',
                          lambda: writes_after(server, during[0] + 20))
        print('  guest writes: %d while degraded, %d after; %d failed in '
              'all; at most %d s between its reports (every 2 s)'
              % (during[0] - before[0], after[0] - during[0], after[1],
                 longest_silence(last_boot(replica_reports(
                     run.console(server))), before[0])))
        return after

    def reboot_while_down(before):
        """The server hard-rebooted while the failing storage node's
        nvmf_tgt is dead: Nova attaches the volume again, on the copy
        that answers (its superblock records the other out of the
        mirror); the rebooted guest writes; the node comes back and its
        copy is rebuilt. The guest's counts after it, from its new boot.
        """
        run.timed('kill -9 %s' % dead, kill)
        run.timed('  Cinder shows the volume degraded',
                  lambda: replication(volume, 'error'))
        uptime = replica_reports(run.console(server))[-1][0]
        run.timed('server reboot --hard (%s still dead)' % dead,
                  lambda: run.cli('server', 'reboot', '--hard', server,
                                  parse=False))
        run.timed('  server ACTIVE', lambda: run.cli.wait(
            'server', server, 'status', 'ACTIVE'))

        def rebooted_writes(count):
            deadline = time.monotonic() + TIMEOUT
            while True:
                found = rebooted(replica_reports(run.console(server)),
                                 uptime)
                if found and found[-1][1] >= count:
                    return found
                if time.monotonic() > deadline:
                    raise demo.DemoError(
                        'server %s: %s since its reboot, waiting for %d '
                        'writes' % (server, found and found[-1], count))
                time.sleep(2)
        during = run.timed('  the rebooted guest writes (20)',
                           lambda: rebooted_writes(20))[-1][1:]
        run.timed('  %s back' % victim.name, revive)
        shown = run.timed('  copy rebuilt: Cinder shows the volume enabled',
                          lambda: replication(volume, 'enabled'))
        print('  spdk_copies: %s'
              % (shown.get('properties') or {}).get('spdk_copies'))
        after = run.timed('  guest writes go on (20 more)',
                          lambda: rebooted_writes(during[0] + 20))
        earlier_failures.append(before[1])
        print('  guest writes: %d failed before the reboot; since it %d '
              'while degraded, %d after, %d failed'
              % (before[1], during[0], after[-1][1] - during[0],
                 after[-1][2]))
        return after[-1][1:]

    def reattach_while_down():
        """The volume detached and attached again while the failing
        node's nvmf_tgt is dead: Cinder exports the copy that answers and
        lets the host in on the other when its node answers; the agent
        mirrors the copy that answers. The guest's counts before the
        detach: its writes fail while the disk is away.
        """
        run.timed('kill -9 %s' % dead, kill)
        run.timed('  Cinder shows the volume degraded',
                  lambda: replication(volume, 'error'))
        counts = replica_counts(run.console(server))
        run.timed('server remove volume (%s still dead)' % dead,
                  lambda: run.cli('server', 'remove', 'volume', server,
                                  volume, parse=False))
        run.timed('  volume available', lambda: run.cli.wait(
            'volume', volume, 'status', 'available'))
        run.timed('server add volume (%s still dead)' % dead,
                  lambda: run.cli('server', 'add', 'volume', server,
                                  volume, parse=False))
        run.timed('  volume in-use', lambda: run.cli.wait(
            'volume', volume, 'status', 'in-use'))
        run.timed('  %s back' % victim.name, revive)
        shown = run.timed('  copy rebuilt: Cinder shows the volume enabled',
                          lambda: replication(volume, 'enabled'))
        print('  spdk_copies: %s'
              % (shown.get('properties') or {}).get('spdk_copies'))
        return counts

    def replace_copy():
        """The operator's command, as run where cinder.conf is."""
        done = subprocess.run(
            [os.path.join(venv, 'bin', 'spdk-volume-replicas'),
             '--config-file', layout.etc('cinder', 'cinder.conf'),
             'replace-copy', volume, '--node', victim.name],
            capture_output=True, text=True, timeout=TIMEOUT)
        if done.returncode:
            raise demo.DemoError('spdk-volume-replicas: %s'
                                 % done.stderr.strip()[-500:])
        return done.stdout.strip()

    def stays_dead(before):
        """With a third storage node: the failing node's copy is replaced
        there while it stays dead; then it comes back.
        """
        said = []
        after = outage('kill -9 %s (it stays dead)' % dead, kill,
                       lambda: said.append(replace_copy()), before,
                       repaired='spdk-volume-replicas replace-copy --node '
                                '%s' % victim.name)
        print('  the command said: %s' % ' '.join(said))
        run.timed('  %s back (its old copy goes)' % victim.name, revive)
        return after

    passed = False
    try:
        volume = run.timed(
            'volume create --type %s (2 copies)' % resources.REPLICATED_TYPE,
            lambda: run.cli('volume', 'create', '--type',
                            resources.REPLICATED_TYPE, '--size', '1',
                            '%s-replicated-data' % PREFIX)['id'])
        run.created['volume'].append(volume)
        run.timed('  volume available', lambda: run.cli.wait(
            'volume', volume, 'status', 'available'))
        shown = run.cli('volume', 'show', volume)
        copies = shown['properties'].get('spdk_copies', '')
        victim = failing_node(storage, copies,
                              shown['os-vol-host-attr:host'])
        dead = victim.suffix('nvmf_tgt')
        print('  replication_status %s, copies %s: %s fails'
              % (shown['replication_status'], copies, victim.name))
        run.guest_script = REPLICA_WRITER.replace(
            '@SERIAL@', guest_checks.serial(volume))
        # Its only copy elsewhere: the hard-rebooted server needs it.
        server, _boot = run.boot(host, 'replicated', avoid_node=victim.name)
        run.timed('server add volume (the replicated one)', lambda: run.cli(
            'server', 'add', 'volume', server, volume, parse=False))
        run.timed('  volume in-use', lambda: run.cli.wait(
            'volume', volume, 'status', 'in-use'))
        written = run.timed(
            '  guest wrote the pattern: console log checksum',
            lambda: run.cli.console_report(server, 'write', volume))
        counts = run.timed('  guest writes (20 or more)',
                           lambda: writes_after(server, 20))
        counts = outage('kill -9 %s' % dead, kill, revive, counts)
        counts = outage('%s link down' % victim.name,
                        lambda: cut_link(False), lambda: cut_link(True),
                        counts)
        counts = reboot_while_down(counts)
        if len(storage) > 2:
            counts = stays_dead(counts)
        else:
            # Last: the guest's writes fail while its disk is away.
            counts = reattach_while_down()
        after = counts
        read = run.timed('  guest reads the pattern: console log checksum',
                         lambda: run.cli.console_report(server, 'read',
                                                        volume))
        print('checksum written %s, read %s' % (written, read))
        passed = (after[1] + sum(earlier_failures) == 0 and written == read
                  and written != demo.EMPTY_BLOCK_MD5)
    except demo.DemoError as exc:
        print('demo: %s' % exc)
    finally:
        for name in cut:
            fabric.set_link(name, up=True)
        for name in killed:
            try:
                cloud.restart(layout, venv, name)
            except Exception as exc:
                print('demo: restarting %s: %s' % (name, exc))
                passed = False
    return run.finish(passed)
