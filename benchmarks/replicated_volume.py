"""Replicated volumes: what the mirror costs a write, how fast a copy is
rebuilt, and what a storage node's death costs a guest.

Prints figures, asserts nothing. Needs what the SPDK tier's
tests/spdk/test_replicated_volume.py needs (real SPDK with its
``bdevperf`` example and ``spdk_dd``, root, hugepages, libvirt, QEMU and
the test guest's packages). Run from the repository root:

    .venv/bin/python -m benchmarks.replicated_volume [--rounds N]
        [--seconds S] [--rebuilds N] [--part all|mirror|failover]

Parts 1 and 2, storage: two ``nvmf_tgt`` in interrupt mode, one per copy
(storage nodes), each copy a 1 GiB thin lvol exported with the driver's
own export code (``NVMeoFExports`` with ``node``), as the SPDK tier's
harness makes them (its ``Copy``); the initiator (bdevperf, then spdk_dd)
polls a core of its own. Placement: each storage node has its own CPU in
production, so with three cores or more each target gets a core of its
own (0 and 1) and the initiator core 2. The initiator cannot sleep:
SPDK v25.09's bdev_nvme refuses interrupt mode for any transport but PCIe
("Interrupt mode is only supported with PCIe transport"), so it takes a
core whole, and on a two-core host the targets share core 0 and the
initiator polls core 1: a mirrored write's two halves are then served one
after the other, where two storage nodes serve them at once (a target on
the initiator's core instead shares it with a poller that never yields).
The single bdev and the mirror are measured under the same placement.
bdevperf has the memory of the agent's SPDK vhost at the agent's default
``hugepage_mib_per_node`` (``--socket-mem``/``--socket-limit`` and the
buffer pools ``spdk_common.memory`` sizes for it, as ``planner.plan``
starts it), so that the rebuild's buffers come out of what the agent's
SPDK really has.

1. ``write_latency_ratio``: SPDK's ``bdevperf`` (``-z``, driven over its
   RPC socket) writes 4 KiB blocks at random offsets at queue depth 1.
   The mirror is made in bdevperf by the agent's own code against
   bdevperf's RPC socket: ``VhostTarget._connect`` (one ``bdev_nvme``
   controller per copy, with the agent's replica timeouts) and
   ``Mirror.assemble`` (raid1 with a superblock), bdevperf started with
   the agent's ``bdev_nvme_set_options`` (``planner.nvme_options``). The
   baseline is a single NVMe/TCP bdev (the agent's single-copy
   parameters) to a third 1 GiB lvol on the first copy's target. Each
   round measures both (1 s warm-up, then ``--seconds``), in alternating
   order; the figure is the median average latency of the mirror over the
   median of the single bdev (``paired_ratio``: the median of each
   round's own mirror/single ratio). Every lvol is written whole first
   (from a file of random bytes, with ``spdk_dd`` over NVMe/TCP), so no
   write allocates a cluster.
2. ``rebuild_mib_s``: while bdevperf writes to the mirror, the second
   copy's controller is detached (the copy leaves the mirror and misses
   writes); once the writes stopped it is connected again with the agent's
   ``VhostTarget.reconnect_copy``, SPDK's examine finds the mirror's
   superblock on it and re-adds it, and raid1 rebuilds it: a copy of the
   whole mirror (1 GiB less the superblock's region), read from the first
   copy's target and written to the second's, of bytes really on their
   disks (the random fill); no writes go on during the rebuild. The time
   runs from the reconnect (connect and examine included) until
   ``bdev_raid_get_bdevs``, polled every 20 ms, shows no ``process`` and
   both copies in sync; the figure is the mirror's size over it (the
   median of ``--rebuilds``), with the agent's rebuild options
   (``Mirror.set_rebuild_bandwidth`` of its default
   ``rebuild_max_bandwidth_mib_sec``, which also sets its rebuild
   window, ``mirror.REBUILD_WINDOW_KIB``); ``rebuild_unbounded_mib_s`` is
   the same with no bound.
   ``raw_copy_mib_s``: once bdevperf is gone, ``spdk_dd`` copies the
   same bytes (the mirror's data region, 1 MiB blocks, spdk_dd's default
   queue depth of 2) from the first copy's namespace to the second's over
   NVMe/TCP, as SPDK's own copy between the same two kinds of bdevs, on
   the initiator's core; its own average speed (the median of
   ``--rebuilds`` copies).
3. ``failover_stall_s``: the SPDK tier's replicated-volume harness (its
   ``ReplicatedTestBase``, whose fixtures clean up everything: two
   polling ``nvmf_tgt`` for the copies on core 0, health checks every
   0.5 s, the agent's other options at their defaults but for the
   harness' ``hugepage_mib_per_node`` of 256) with the agent's
   supervised SPDK vhost (core 1) serving the mirror to a TCG
   guest that writes and fsyncs a numbered 512-byte record per block
   (``VERIFY_LOOP``); one copy's ``nvmf_tgt`` gets kill -9, the agent
   reports the volume degraded, the target is started again and the
   agent puts the copy back and reports it rebuilt; then the guest reads
   every record back. ``failover_stall_s`` is the guest's longest gap
   between two completed writes over all that; ``baseline_gap_s`` the
   same over a window of the same length without a failure, afterwards;
   ``io_errors`` the failed writes plus the records not read back. The
   SPDK vhost's log gives the times of its reconnects, of the copy's
   removal from the mirror and of the rebuild after the kill.

Every part cleans up what it started (SPDK processes by PID, work
directories, the guest and libvirtd) also when it fails, and the
hugepages the run added go back at the end.
"""

import argparse
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import unittest
import uuid

import fixtures
from oslo_config import cfg
import testtools

from cinder_driver import exports as nvmf_exports
from cinder_driver import lvols as spdk_lvols
from spdk_common import binaries
from spdk_common import connection
from spdk_common import exception as spdk_exc
from spdk_common import memory as spdk_memory
from spdk_common import naming
from spdk_common import rpc
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import hugepages
from tests.fixtures import privsep
from tests.fixtures import spdk as spdk_fixtures
from tests.functional.cinder_driver import scenarios
from tests.spdk import test_replicated_volume as replicated
from vhost_target import config
from vhost_target import mirror as mirror_mod
from vhost_target import planner
from vhost_target import state
from vhost_target import validation
from vhost_target import vhost

# Ports of the copies' targets here; the guest part uses the harness'.
PORT = 4570
# Where things run. Each copy's storage node has CPUs of its own in
# production, and the compute node its own. SPDK's NVMe/TCP initiator must
# poll (v25.09's bdev_nvme refuses interrupt mode for any transport but
# PCIe: "Interrupt mode is only supported with PCIe transport"), so the
# initiator (bdevperf, spdk_dd) takes a core whole. With three cores or
# more each target (interrupt mode) gets a core of its own and the
# initiator a third; on two cores the targets share core 0 and the
# initiator polls core 1, and a mirrored write's two halves are served one
# after the other on core 0.
CORES = os.cpu_count() or 1
if CORES >= 3:
    TARGET_CPUMASKS = ('0x1', '0x2')
    INITIATOR_CPUMASK = '0x4'
else:
    TARGET_CPUMASKS = ('0x1', '0x1')
    INITIATOR_CPUMASK = '0x2' if CORES > 1 else '0x1'
DD_MEM_MIB = 128
TARGET_MIB = 4096
MIB = 1 << 20
COPY_BLOCK = MIB
FILL_CHUNK = 16 * MIB
REBUILD_TIMEOUT = 300.0
POLL_INTERVAL = 0.02
DD_SPEED = re.compile(rb'average (\d+) ([kMGT]?)Bps')
UNITS = {b'': 1.0 / MIB, b'k': 1.0 / 1024, b'M': 1.0, b'G': 1024.0,
         b'T': 1024.0 ** 2}

# The figures of this run, by key, as the parts measure them.
FIGURES = {}


def agent_group(workdir):
    """The agent's [spdk_vhost_target] options, its defaults."""
    conf = cfg.ConfigOpts()
    config.register(conf)
    conf([], default_config_files=[])
    conf.set_override('state_dir', os.path.join(workdir, 'state'),
                      group=config.GROUP)
    conf.set_override('socket_dir', os.path.join(workdir, 'sockets'),
                      group=config.GROUP)
    return conf.spdk_vhost_target


def attachment(volume_id, info):
    """The agent's Attachment for a connection_info, as attach_volume
    makes it.
    """
    request = validation.attach(volume_id, info, [0], None)
    return state.Attachment(
        volume_id=request.volume_id, target_nqn=request.target_nqn,
        portals=request.portals, host_nqn=request.host_nqn, cpu=1,
        numa_nodes=request.numa_nodes, replicas=request.replicas)


class Bdevperf:
    """SPDK's bdevperf in -z mode: it runs a test when its RPC socket
    says so, on every bdev nobody claimed.

    Its memory is the agent's SPDK vhost's on a one-node host with one
    reactor, as ``planner.plan`` makes it: ``memory_mib`` of hugepages
    (``--socket-mem`` and ``--socket-limit``) and buffer pools sized to
    fit (``spdk_common.memory``), so that a rebuild's buffers come out of
    what the agent's SPDK really has.
    """

    def __init__(self, workdir, bdev_nvme_options, memory_mib):
        nvmf_tgt = binaries.find('nvmf_tgt')
        build = os.path.dirname(os.path.dirname(nvmf_tgt))
        self.binary = os.path.join(build, 'examples', 'bdevperf')
        self.socket_path = os.path.join(workdir, 'bdevperf.sock')
        self.log_path = os.path.join(workdir, 'bdevperf.log')
        self.config_path = os.path.join(workdir, 'bdevperf.json')
        self.memory_mib = memory_mib
        with open(self.config_path, 'w') as f:
            json.dump(spdk_memory.startup_config(
                spdk_memory.buffer_pools(memory_mib, 1),
                bdev_nvme_options), f)
        self.proc = None
        self.client = None

    def available(self):
        return os.access(self.binary, os.X_OK)

    def start(self):
        hugepages.reserve(self.memory_mib,
                          'bdevperf of %d MiB' % self.memory_mib)
        argv = [self.binary, '--no-pci', '-m', INITIATOR_CPUMASK,
                '--env-context', '--socket-mem=%d --socket-limit=%d' % (
                    self.memory_mib, self.memory_mib),
                '-r', self.socket_path,
                '--disable-cpumask-locks', '--json', self.config_path,
                '-z', '-q', '1', '-o', '4096', '-w', 'randwrite',
                '-t', '5', '-f']
        # posix_spawn, as the SPDK fixtures start SPDK (eventlet).
        self.proc = spdk_fixtures._Process(
            argv, binaries.environment(self.binary), self.log_path)
        self.client = rpc.SPDKClient(self.socket_path, timeout=30)
        deadline = time.monotonic() + spdk_fixtures.STARTUP_TIMEOUT
        while True:
            try:
                self.client.call('spdk_get_version', timeout=5.0)
                return
            except spdk_exc.SPDKUnavailable:
                pass
            if (self.proc.poll() is not None
                    or time.monotonic() > deadline):
                raise RuntimeError('bdevperf did not start:\n%s'
                                   % self.log()[-2000:])
            time.sleep(0.05)

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def unclaimed(self):
        return {b['name'] for b in self.client.call('bdev_get_bdevs')
                if not b['claimed']}

    def run(self, bdev, seconds, workload='randwrite', queue_depth=1,
            io_size=4096):
        """bdevperf's result of one test on ``bdev``, once it is the only
        bdev nobody claimed (deletes and examine finish after their RPCs
        answer).
        """
        deadline = time.monotonic() + spdk_fixtures.STARTUP_TIMEOUT
        while self.unclaimed() != {bdev}:
            if time.monotonic() > deadline:
                raise RuntimeError('bdevperf would test %s, not %s alone'
                                   % (sorted(self.unclaimed()), bdev))
            time.sleep(POLL_INTERVAL)
        answer = self.client.call('perform_tests', {
            'time_in_sec': seconds, 'workload_type': workload,
            'queue_depth': queue_depth, 'io_size': str(io_size)},
            timeout=seconds + 60)
        [result] = answer['results']
        return result

    def stop(self):
        if self.proc is not None:
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(spdk_fixtures.STOP_TIMEOUT)
            self.proc = None
        if self.client is not None:
            time.sleep(spdk_fixtures.RETIRE_DELAY)
            self.client.close()
            self.client = None


def dd_config(path, controllers):
    """spdk_dd's --json: one NVMe/TCP controller per (name, port, NQN);
    without examine, which would assemble a mirror from the superblock
    and claim its copies.
    """
    methods = [{'method': 'bdev_set_options',
                'params': {'bdev_auto_examine': False}}]
    for name, port, nqn in controllers:
        methods.append({'method': 'bdev_nvme_attach_controller', 'params': {
            'name': name, 'trtype': 'tcp', 'adrfam': 'ipv4',
            'traddr': '127.0.0.1', 'trsvcid': str(port), 'subnqn': nqn,
            'hostnqn': scenarios.HOST_NQN}})
    with open(path, 'w') as f:
        json.dump({'subsystems': [{'subsystem': 'bdev',
                                   'config': methods}]}, f)
    return path


def spdk_dd(args):
    """(MiB/s spdk_dd reports, wall seconds) of one spdk_dd run."""
    binary = binaries.find('spdk_dd')
    if binary is None:
        raise RuntimeError('spdk_dd not found next to the SPDK target')
    hugepages.reserve(spdk_fixtures.footprint_mib(DD_MEM_MIB),
                      'spdk_dd -s %d' % DD_MEM_MIB)
    # As tests/fixtures/spdk_apps.run_spdk_app runs it, on the initiator's
    # core.
    cmd = [binary, '--no-pci', '-s', str(DD_MEM_MIB), '-m', INITIATOR_CPUMASK,
           '--disable-cpumask-locks', '--no-rpc-server'] + list(args)
    started = time.monotonic()
    result = subprocess.run(cmd, env=binaries.environment(binary),
                            capture_output=True, timeout=600)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError('spdk_dd %s failed (%d): %s' % (
            ' '.join(args), result.returncode,
            result.stderr[-2000:].decode(errors='replace')))
    speeds = DD_SPEED.findall(result.stdout)
    if not speeds:
        raise RuntimeError('spdk_dd printed no average speed: %r'
                           % result.stdout[-500:])
    value, unit = speeds[-1]
    return int(value) * UNITS[unit], wall


class MirrorBenchmark(testtools.TestCase):
    """Parts 1 and 2: bdevperf on the mirror and on a single copy, the
    rebuild, and spdk_dd's copy.
    """

    rounds = 5
    seconds = 5
    rebuilds = 2
    outage_seconds = 3

    def setUp(self):
        super().setUp()
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.volume_id = str(uuid.uuid4())
        self.single_id = str(uuid.uuid4())
        self.copies = []
        for index in range(2):
            target = self.useFixture(spdk_fixtures.SPDKTarget(
                lvstore='lvs%d' % index, size_mib=TARGET_MIB,
                interrupt=True, cpumask=TARGET_CPUMASKS[index]))
            copy = replicated.Copy(target, PORT + index, self.volume_id)
            copy.export(scenarios.HOST_NQN)
            self.copies.append(copy)
        # The single copy: a volume of one copy, exported as the driver
        # exports those (no node), from the first copy's target.
        client = self.copies[0].target.client
        lvstore = self.copies[0].target.lvstore
        spdk_lvols.Lvols(client).create(
            lvstore, naming.volume_lvol_name(self.single_id),
            replicated.VOLUME_GIB, thin=True)
        self.single = nvmf_exports.NVMeoFExports(
            client, replicated.NQN_PREFIX, ['127.0.0.1'], PORT)
        self.single.ensure_transport()
        self.single.export(self.single_id, naming.lvol_alias(
            lvstore, naming.volume_lvol_name(self.single_id)))
        self.single.allow_host(self.single_id, scenarios.HOST_NQN)
        self.group = agent_group(self.workdir)
        self.mirror_attachment = attachment(
            self.volume_id, connection.spdk_vhost_replicated_info(
                [c.replica() for c in self.copies], self.volume_id,
                scenarios.HOST_NQN))
        self.single_attachment = attachment(
            self.single_id, connection.spdk_vhost_info(
                self.single.nqn(self.single_id),
                [('127.0.0.1', str(PORT), 'tcp')], self.single_id,
                scenarios.HOST_NQN))

    # -- the initiator's side, through the agent's code ----------------

    def attach_single(self):
        [(name, nqn, portals)] = self.single_attachment.targets()
        return self.vhost._connect(self.single_attachment, name, nqn,
                                   portals, None, [])

    def detach_single(self):
        [(name, _nqn, _portals)] = self.single_attachment.targets()
        self.vhost.disconnect(name)

    def attach_mirror(self):
        """The steps of VhostTarget._attach up to the vhost controller."""
        targets = self.mirror_attachment.targets()
        for name, nqn, portals in targets:
            self.vhost._connect(self.mirror_attachment, name, nqn, portals,
                                None, [])
        name, _created = self.vhost.mirror.assemble(
            self.volume_id, [name for name, _nqn, _portals in targets])
        return name

    def detach_mirror(self):
        self.vhost.mirror.delete(naming.raid_bdev_name(self.volume_id))
        for name, _nqn, _portals in self.mirror_attachment.targets():
            self.vhost.disconnect(name)

    # -- the parts -----------------------------------------------------

    def fill(self):
        """Every lvol written whole, from a file of random bytes."""
        data = os.path.join(self.workdir, 'fill.bin')
        chunk = os.urandom(FILL_CHUNK)
        with open(data, 'wb') as f:
            for _ in range(replicated.VOLUME_GIB * 1024 * MIB // FILL_CHUNK):
                f.write(chunk)
        speeds = []
        for index, (port, nqn) in enumerate(
                [(c.port, c.exports.nqn(self.volume_id))
                 for c in self.copies]
                + [(PORT, self.single.nqn(self.single_id))]):
            config_path = dd_config(
                os.path.join(self.workdir, 'fill%d.json' % index),
                [('dst', port, nqn)])
            speeds.append(spdk_dd(['--json', config_path, '--if=' + data,
                                   '--ob=dstn1', '--bs=%d' % COPY_BLOCK]))
        os.unlink(data)
        print('fill (spdk_dd, file to lvol over NVMe/TCP): %s MiB/s'
              % ', '.join('%.0f' % s for s, _w in speeds))

    def latency(self):
        samples = {'single': [], 'mirror': []}
        steps = {'single': (self.attach_single, self.detach_single),
                 'mirror': (self.attach_mirror, self.detach_mirror)}
        for round_ in range(self.rounds):
            order = ('single', 'mirror') if round_ % 2 == 0 else (
                'mirror', 'single')
            for kind in order:
                attach, detach = steps[kind]
                bdev = attach()
                self.bdevperf.run(bdev, 1)
                result = self.bdevperf.run(bdev, self.seconds)
                detach()
                samples[kind].append(result)
        for kind in ('single', 'mirror'):
            print('%-6s 4 KiB randwrite QD1 avg latency us: %s' % (
                kind, ', '.join('%.1f' % r['avg_latency_us']
                                for r in samples[kind])))
        median = statistics.median
        single = median(r['avg_latency_us'] for r in samples['single'])
        mirror = median(r['avg_latency_us'] for r in samples['mirror'])
        # The same from each round's own pair, measured back to back: less
        # moved by other load on the host that comes and goes.
        paired = median(m['avg_latency_us'] / s['avg_latency_us']
                        for s, m in zip(samples['single'], samples['mirror']))
        FIGURES.update(
            write_latency_ratio=mirror / single, paired_ratio=paired,
            single_write_us=single, mirror_write_us=mirror,
            latency_io_failed=sum(r.get('io_failed', 0)
                                  for rs in samples.values() for r in rs))

    def rebuild_once(self, name, mib_sec):
        """(seconds from the reconnect to both copies in sync, seconds of
        the rebuild process seen, writes failed meanwhile).
        """
        mirror = self.vhost.mirror
        mirror.set_rebuild_bandwidth(mib_sec)
        members = [naming.namespace_bdev_name(n) for n, _q, _p
                   in self.mirror_attachment.targets()]
        results, failures = [], []

        def write():
            try:
                results.append(self.bdevperf.run(name,
                                                 self.outage_seconds + 1))
            except Exception as exc:    # raised below, in the test
                failures.append(exc)
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(1)
        # The second copy leaves the mirror while the writes go on.
        out_name, _nqn, _portals = self.mirror_attachment.targets()[1]
        self.vhost.disconnect(out_name)
        writer.join()
        if failures:
            raise failures[0]
        states = mirror_mod.copy_states(mirror.get(name), members)
        if states[members[1]] != mirror_mod.MISSING:
            raise RuntimeError('the copy did not leave the mirror: %s'
                               % states)
        put_back = time.monotonic()
        self.vhost.reconnect_copy(self.mirror_attachment, 1)
        first_seen = last_seen = None
        deadline = put_back + REBUILD_TIMEOUT
        while True:
            raid = mirror.get(name)
            now = time.monotonic()
            if raid and raid.get('process'):
                first_seen = first_seen or now
                last_seen = now
            states = mirror_mod.copy_states(raid, members)
            if (not (raid or {}).get('process')
                    and set(states.values()) == {mirror_mod.IN_SYNC}):
                break
            if now > deadline:
                raise RuntimeError('no rebuild within %ss: %s'
                                   % (REBUILD_TIMEOUT, raid))
            time.sleep(POLL_INTERVAL)
        seen = (last_seen - first_seen) if first_seen else float('nan')
        failed = sum(r.get('io_failed', 0) for r in results)
        return now - put_back, seen, failed

    def rebuild(self):
        name = self.attach_mirror()
        mirror_bytes = self.vhost.size_bytes(self.volume_id, True)
        bound = self.group.rebuild_max_bandwidth_mib_sec
        figures = {}
        for mib_sec in (bound, 0):
            runs = [self.rebuild_once(name, mib_sec)
                    for _ in range(self.rebuilds)]
            figures[mib_sec] = runs
            print('rebuild of %d MiB, bound %s MiB/s: %s' % (
                mirror_bytes // MIB, mib_sec or 'none', ', '.join(
                    '%.2fs (process seen %.2fs, %d writes failed)' % r
                    for r in runs)))
        [bdev] = self.bdevperf.client.call('bdev_get_bdevs', {'name': name})
        # Where the mirror's data start on each copy, past the superblock.
        self.data_offset = {
            b['name']: b['data_offset'] * bdev['block_size']
            for b in self.vhost.mirror.get(name)['base_bdevs_list']}
        self.mirror_bytes = mirror_bytes
        median = statistics.median
        mib = mirror_bytes / MIB
        FIGURES.update(
            rebuild_mib_s=mib / median(s for s, _p, _f in figures[bound]),
            rebuild_unbounded_mib_s=mib / median(
                s for s, _p, _f in figures[0]),
            rebuild_bound_mib_s=bound, mirror_mib=mib,
            rebuild_io_failed=sum(f for runs in figures.values()
                                  for _s, _p, f in runs))

    def raw_copy(self):
        """spdk_dd: the mirror's data region of the first copy onto the
        second's (the rebuilt copy holds the same bytes already).
        """
        members = [naming.namespace_bdev_name(n) for n, _q, _p
                   in self.mirror_attachment.targets()]
        offsets = {self.data_offset[m] for m in members}
        [offset] = offsets
        if offset % COPY_BLOCK or self.mirror_bytes % COPY_BLOCK:
            raise RuntimeError('the data region (%d + %d) is not in %d '
                               'byte blocks' % (offset, self.mirror_bytes,
                                                COPY_BLOCK))
        config_path = dd_config(
            os.path.join(self.workdir, 'copy.json'),
            [('a', c.port, c.exports.nqn(self.volume_id))
             for c in self.copies[:1]]
            + [('b', c.port, c.exports.nqn(self.volume_id))
               for c in self.copies[1:]])
        runs = [spdk_dd(['--json', config_path, '--ib=an1', '--ob=bn1',
                         '--bs=%d' % COPY_BLOCK,
                         '--skip=%d' % (offset // COPY_BLOCK),
                         '--seek=%d' % (offset // COPY_BLOCK),
                         '--count=%d' % (self.mirror_bytes // COPY_BLOCK)])
                for _ in range(self.rebuilds)]
        print('raw copy of %d MiB (spdk_dd, NVMe/TCP to NVMe/TCP): %s' % (
            self.mirror_bytes // MIB, ', '.join(
                '%.0f MiB/s (%.2fs with its start)' % r for r in runs)))
        FIGURES.update(raw_copy_mib_s=statistics.median(s for s, _w in runs))

    def test_benchmark(self):
        self.fill()
        self.bdevperf = Bdevperf(self.workdir,
                                 planner.nvme_options(self.group),
                                 self.group.hugepage_mib_per_node)
        if not self.bdevperf.available():
            self.skipTest('bdevperf not found at %s' % self.bdevperf.binary)
        self.addCleanup(self.bdevperf.stop)
        self.bdevperf.start()
        self.vhost = vhost.VhostTarget(self.bdevperf.client, self.group)
        self.latency()
        self.rebuild()
        self.bdevperf.stop()
        self.raw_copy()


# SPDK's log lines that tell how the mirror went on without a copy.
SPDK_EVENTS = (('Resetting controller failed', 'reconnect failed'),
               ('Failing base bdev', 'copy taken out of the mirror'),
               ('Started rebuild', 'rebuild started'),
               ('Finished rebuild', 'rebuild finished'))
SPDK_STAMP = re.compile(r'^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]')


def spdk_timeline(log_path, since):
    """[(seconds after ``since`` (time.time()), event)] from an SPDK
    application's log.
    """
    events = []
    with open(log_path, errors='replace') as f:
        for line in f:
            stamp = SPDK_STAMP.match(line)
            if not stamp:
                continue
            when = time.mktime(time.strptime(
                stamp.group(1).split('.')[0], '%Y-%m-%d %H:%M:%S')) + float(
                    '0.' + stamp.group(1).split('.')[1])
            if when < since:
                continue
            for words, event in SPDK_EVENTS:
                if words in line:
                    events.append((when - since, event))
    return events


def runs_of(timeline):
    """The timeline in words, an event that repeats once per run
    (SPDK retries a failed copy's connection every 10 ms).
    """
    words = []
    for _key, run in itertools.groupby(timeline, key=lambda e: e[1]):
        run = list(run)
        if len(run) == 1:
            words.append('%s +%.2fs' % (run[0][1], run[0][0]))
        else:
            words.append('%s x%d +%.2f-%.2fs' % (run[0][1], len(run),
                                                 run[0][0], run[-1][0]))
    return words


class FailoverBenchmark(replicated.ReplicatedTestBase):
    """Part 3: the agent, its SPDK vhost and a guest; one copy's target
    killed.
    """

    down_seconds = 3

    def test_benchmark(self):
        path = self.agent.attach_volume(self.volume_id, self.info,
                                        numa_nodes=[0])
        self.boot_guest(path)
        started = time.monotonic()
        self.guest_run(guest_fixtures.VERIFY_LOOP)
        time.sleep(3)
        killed = time.monotonic()
        killed_at = time.time()
        self.replicas[1].kill()
        self.wait_for('attachment.degraded',
                      lambda: self.event('degraded'))
        degraded_s = time.monotonic() - killed
        time.sleep(self.down_seconds)
        restarted = time.monotonic()
        self.replicas[1].start(scenarios.HOST_NQN)
        self.mirrored_after(0)
        mirrored_s = time.monotonic() - restarted
        states = self.copy_states()
        time.sleep(2)
        window = time.monotonic() - started
        gap, count, errors, bad = self.verify()
        print('failover: kill -9 of a copy\'s nvmf_tgt; agent reported it '
              'degraded after %.2fs; target restarted %.1fs later; copy '
              'back in sync after %.2fs (%s)' % (
                  degraded_s, self.down_seconds, mirrored_s,
                  ', '.join(states)))
        print('SPDK vhost after the kill: %s' % '; '.join(
            runs_of(spdk_timeline(
                os.path.join(self.group.state_dir, 'spdk-vhost.log'),
                killed_at))))
        print('guest across it (%.1fs): %d records, %d failed writes, %d '
              'not read back, longest gap between writes %.2fs' % (
                  window, count, errors, bad, gap))
        self.guest_run(guest_fixtures.VERIFY_LOOP)
        time.sleep(window)
        base_gap, base_count, base_errors, base_bad = self.verify()
        print('guest without a failure (%.1fs): %d records, %d failed '
              'writes, %d not read back, longest gap %.2fs' % (
                  window, base_count, base_errors, base_bad, base_gap))
        first, second = self.sha256_of_copies()
        FIGURES.update(
            failover_stall_s=gap, io_errors=errors + bad,
            baseline_gap_s=base_gap, degraded_report_s=degraded_s,
            copy_rebuilt_s=mirrored_s, guest_records=count,
            copies_identical=int(first == second))


KEYS = ('write_latency_ratio', 'rebuild_mib_s', 'raw_copy_mib_s',
        'failover_stall_s', 'io_errors', 'paired_ratio',
        'rebuild_unbounded_mib_s',
        'rebuild_bound_mib_s', 'single_write_us', 'mirror_write_us',
        'baseline_gap_s', 'degraded_report_s', 'copy_rebuilt_s',
        'mirror_mib', 'latency_io_failed', 'rebuild_io_failed',
        'copies_identical')


def shown(value):
    if value is None:
        return 'n/a'
    if isinstance(value, float):
        return '%.3f' % value
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5,
                        help='latency rounds (each bdev once per round)')
    parser.add_argument('--seconds', type=int, default=5,
                        help='seconds of each latency measurement')
    parser.add_argument('--rebuilds', type=int, default=2,
                        help='rebuilds (and raw copies) of each kind')
    parser.add_argument('--part', choices=('all', 'mirror', 'failover'),
                        default='all',
                        help='bdevperf and spdk_dd only (1, 2), or the '
                             'guest only (3)')
    args = parser.parse_args()
    MirrorBenchmark.rounds = args.rounds
    MirrorBenchmark.seconds = args.seconds
    MirrorBenchmark.rebuilds = args.rebuilds
    started = time.monotonic()
    load = os.getloadavg()[0]
    # The agent's root work goes through its privsep daemon.
    privsep.start()
    try:
        suite = unittest.TestSuite(
            [MirrorBenchmark('test_benchmark')] * (args.part != 'failover')
            + [FailoverBenchmark('test_benchmark')] * (args.part != 'mirror'))
        result = unittest.TextTestRunner(stream=sys.stderr,
                                         verbosity=0).run(suite)
    finally:
        privsep.stop()
        hugepages.give_back()
    print('benchmark took %.0fs; host load average (1 min) %.1f at the '
          'start, %.1f at the end' % (time.monotonic() - started, load,
                                      os.getloadavg()[0]))
    print(' '.join('%s=%s' % (key, shown(FIGURES.get(key)))
                   for key in KEYS))
    return 0 if result.wasSuccessful() and not result.skipped else 1


if __name__ == '__main__':
    sys.exit(main())
