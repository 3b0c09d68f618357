"""A storage node with thousands of exports: latency, memory, restarts.

Prints figures, asserts nothing. Needs real SPDK (nvmf_tgt, vhost and the
``bdevperf`` example, found like the SPDK test tier finds them), root for
hugepages, 2 cores. Run from the repository root; on a host where other
SPDK applications run, give this run a private /var/tmp (SPDK's CPU lock
files):

    unshare -m sh -c 'mount -t tmpfs tmpfs /var/tmp && exec \\
        .venv/bin/python -m benchmarks.storage_scale [--exports N] \\
        [--agent-attachments M]'

The storage target is ``nvmf_tgt`` started the way the deployment starts
it: the startup config of ``spdk-openstack-config storage-target-config``
(its base bdev and ``nvmf_set_max_subsystems``, no transport), interrupt
mode on core 1. Everything else goes through the Cinder driver, built as
cinder-volume builds it.

* ``exports``: volumes created (``create_volume``), exported
  (``create_export``) and with one host allowed (``initialize_connection``
  with a connector carrying that host's ``nqn``), as Cinder's volume
  manager calls them on an attach.
* ``create_export_ms_p50``: the median of ``create_export`` plus
  ``initialize_connection``, one volume at a time, for the last 30 volumes
  (N-30 to N-1 exports present); ``create_export_ratio``: that over the
  same median for the first 10 volumes (0 to 9 present), same run. The
  bulk in between is exported by 16 threads.
* ``stats_ms``: ``get_volume_stats(refresh=True)`` at N exports, median
  of 5.
* ``rss_mib``: nvmf_tgt's resident memory at N exports
  (``/proc/<pid>/smaps_rollup``); its hugepages are printed beside it.
* ``restart_stall_s`` and ``replay_s``: the benchmark plays systemd. With
  an SPDK initiator reading two of the volumes, the first and the last
  made (``bdevperf`` on core 0 at nice 10: it polls, bdev_nvme over TCP
  has no interrupt mode; a ``bdev_nvme`` controller per volume as the
  allowed host, ``ctrlr_loss_timeout_sec=-1``, ``reconnect_delay_sec=1``,
  unlimited ``bdev_retry_count``; one 4 KiB read at a time on each,
  capped at 1000 IO/s by bdev QoS), nvmf_tgt is killed (SIGKILL) and
  started again at once with the same config. The driver is then left
  alone: it has to notice the restart and replay its exports itself.
  ``replay_s`` runs from the restarted target answering RPCs to SPDK's own
  ``nvmf_get_subsystems`` listing showing every export with its namespace,
  listener and host (the full listing is taken once cheap per-NQN probes
  of the last-made exports find them complete, so it is late by at most
  one listing). ``restart_stall_s`` runs from the kill to the first read
  that completes again (bdevperf's ``bdev_get_iostat``, polled every
  10 ms), minus the target's own start-up (spawn to answering RPCs), which
  is printed apart; the worse of the two volumes (both are printed). If the
  driver has done nothing ``--watch-wait`` s after the target answers (no
  transport created), the benchmark calls ``get_volume_stats(refresh=True)``
  as cinder-volume's periodic task would; both figures are then counted
  from that call, and the last line says ``replay_trigger=stats`` instead
  of ``driver``.
* ``agent_replay_s``: the compute side. The spdk-vhost-target agent (its
  ``VhostAgent`` under its ``Supervisor``, SPDK vhost polling core 1)
  attaches ``--agent-attachments`` of the exported volumes, each an NVMe/TCP
  controller plus a vhost-user-blk controller; SPDK vhost is killed
  (SIGKILL) and the figure runs until the supervisor has restarted it and
  the agent's replay has returned, every controller back (checked with
  ``vhost_get_controllers``). It includes the supervisor's 0.5 s back-off.
  When vhost runs out of memory before all are attached, the figure is for
  those that fit, and the line says how many (``agent_attachments``).

The last line is machine-readable.
"""

import argparse
import concurrent.futures
import grp
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from cinder import context
from cinder import objects

from benchmarks import vhost_attach
from benchmarks import volume_ops
from spdk_common import binaries
from spdk_common import exception as spdk_exc
from spdk_common import rpc
from spdk_deploy import storage
from tests.fixtures import hugepages
from tests.fixtures import spdk as spdk_fixtures
from tests.fixtures import storage_target
from vhost_target import agent as vhost_agent
from vhost_target import planner
from vhost_target import privileged
from vhost_target import state
from vhost_target import supervisor
from vhost_target import topology
from vhost_target import vhost

HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:%s' % uuid.uuid4()
PORT = 4750
SAMPLES_LOW, SAMPLES_HIGH = 10, 30
BULK_WORKERS = 16
PROBES = 20
IOSTAT_INTERVAL = 0.01
RESTART_TIMEOUT = 300.0
# nvmf_tgt's hugepages: what it starts with, and room to grow for the
# NVMe/TCP queue pairs of the agent's controllers.
TARGET_MEM_MIB = 512
TARGET_HEADROOM_MIB = 1536
INITIATOR_MEM_MIB = 256
READER_NICE = 10


def make_driver(socket_path, lvstore, workdir):
    """The driver as cinder-volume builds it, on this benchmark's port."""
    return volume_ops.make_driver(
        socket_path, lvstore, workdir, spdk_target_port=PORT,
        spdk_state_dir=os.path.join(workdir, 'state'))


def memory(pid, client=None):
    """{'rss_mib', 'hugetlb_mib'[, 'heap_alloc_mib']} of an SPDK process."""
    found = {}
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('Rss', 'Private_Hugetlb', 'Shared_Hugetlb'):
                found[key] = int(value.split()[0]) / 1024
    result = {'rss_mib': found.get('Rss', 0),
              'hugetlb_mib': (found.get('Private_Hugetlb', 0) +
                              found.get('Shared_Hugetlb', 0))}
    if client is not None:
        # DPDK's heap: what SPDK allocated of its hugepages.
        dump = client.call('env_dpdk_get_mem_stats')['filename']
        alloc = 0
        with open(dump) as f:
            for line in f:
                line = line.strip().rstrip(',')
                if line.startswith('Alloc_size:'):
                    alloc += int(line.split(':')[1])
        result['heap_alloc_mib'] = alloc / 2 ** 20
    return result


def median_ms(samples):
    return statistics.median(samples) * 1000


class Exports:
    """Volumes through the driver, the way Cinder's volume manager calls
    it on an attach.
    """

    def __init__(self, drv, lvstore):
        self.drv = drv
        self.ctxt = context.get_admin_context()
        self.host = 'bench@spdk#%s' % lvstore
        self.connector = {'nqn': HOST_NQN, 'host': 'compute1',
                          'initiator': None, 'multipath': False}
        self.volumes = []
        self.infos = {}
        self.rpcs = 0

    def create_volumes(self, count):
        vols = [objects.Volume(self.ctxt, id=str(uuid.uuid4()),
                               host=self.host, size=1, volume_type_id=None)
                for _ in range(count)]
        with concurrent.futures.ThreadPoolExecutor(BULK_WORKERS) as pool:
            list(pool.map(self.drv.create_volume, vols))
        self.volumes.extend(vols)

    def export(self, vol):
        sent = self.drv._client.calls_sent
        start = time.perf_counter()
        self.drv.create_export(self.ctxt, vol, self.connector)
        info = self.drv.initialize_connection(vol, self.connector)
        elapsed = time.perf_counter() - start
        self.rpcs = self.drv._client.calls_sent - sent
        self.infos[vol.id] = info
        return elapsed

    def export_all(self):
        """Latencies (s) of the first and of the last exports."""
        vols = self.volumes
        low = [self.export(v) for v in vols[:SAMPLES_LOW]]
        bulk = vols[SAMPLES_LOW:len(vols) - SAMPLES_HIGH]
        with concurrent.futures.ThreadPoolExecutor(BULK_WORKERS) as pool:
            list(pool.map(self.export, bulk))
        high = [self.export(v)
                for v in vols[max(len(vols) - SAMPLES_HIGH, SAMPLES_LOW):]]
        return low, high

    def nqn(self, vol):
        return self.infos[vol.id]['data']['target_nqn']


def complete(subsystem):
    return bool(subsystem.get('namespaces') and
                subsystem.get('listen_addresses') and
                HOST_NQN in {h['nqn'] for h in subsystem.get('hosts', [])})


def all_back(client, nqns):
    listing = client.call('nvmf_get_subsystems')
    present = {s['nqn']: s for s in listing}
    return all(n in present and complete(present[n]) for n in nqns)


def probes_back(client, nqns):
    for nqn in nqns:
        try:
            found = client.call('nvmf_get_subsystems', {'nqn': nqn})
        except spdk_exc.SPDKRPCError:
            return False
        if not (found and complete(found[0])):
            return False
    return True


def transport_present(client):
    return any(t.get('trtype', '').upper() == 'TCP'
               for t in client.call('nvmf_get_transports'))


class Reader:
    """bdevperf reading exported volumes through bdev_nvme, one controller
    (``nvme<i>``) each.
    """

    def __init__(self, workdir, nqns):
        build = os.path.dirname(os.path.dirname(binaries.find('nvmf_tgt')))
        self.binary = os.path.join(build, 'examples', 'bdevperf')
        self.socket_path = os.path.join(workdir, 'bdevperf.sock')
        self.config_path = os.path.join(workdir, 'bdevperf.json')
        self.log_path = os.path.join(workdir, 'bdevperf.log')
        self.bdevs = ['nvme%dn1' % i for i in range(len(nqns))]
        methods = [{'method': 'bdev_nvme_set_options',
                    'params': {'bdev_retry_count': -1}}]
        for i, nqn in enumerate(nqns):
            methods.append({'method': 'bdev_nvme_attach_controller',
                            'params': {'name': 'nvme%d' % i, 'trtype': 'tcp',
                                       'adrfam': 'ipv4',
                                       'traddr': '127.0.0.1',
                                       'trsvcid': str(PORT), 'subnqn': nqn,
                                       'hostnqn': HOST_NQN,
                                       'ctrlr_loss_timeout_sec': -1,
                                       'reconnect_delay_sec': 1}})
            methods.append({'method': 'bdev_set_qos_limit',
                            'params': {'name': self.bdevs[i],
                                       'rw_ios_per_sec': 1000}})
        with open(self.config_path, 'w') as f:
            json.dump({'subsystems': [{'subsystem': 'bdev',
                                       'config': methods}]}, f)
        self.proc = None
        self.client = None

    def available(self):
        return os.access(self.binary, os.X_OK)

    def start(self):
        hugepages.reserve(spdk_fixtures.footprint_mib(INITIATOR_MEM_MIB),
                          'bdevperf -s %d' % INITIATOR_MEM_MIB)
        with open(self.log_path, 'w') as log:
            self.proc = subprocess.Popen(
                [self.binary, '--no-pci', '-m', '0x1',
                 '-s', str(INITIATOR_MEM_MIB), '-r', self.socket_path,
                 '--disable-cpumask-locks', '--json', self.config_path,
                 '-q', '1', '-o', '4096', '-w', 'randread', '-t', '3600',
                 '-f'],
                env=binaries.environment(self.binary), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        # It polls (bdev_nvme over TCP has no interrupt mode): below the
        # driver, which shares its core.
        os.setpriority(os.PRIO_PROCESS, self.proc.pid, READER_NICE)
        self.client = rpc.SPDKClient(self.socket_path, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if all(self.reads().values()):
                    return
            except (spdk_exc.SPDKException, KeyError):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        with open(self.log_path, errors='replace') as log:
            tail = log.read()[-2000:]
        raise RuntimeError('bdevperf did not start reading:\n%s' % tail)

    def reads(self):
        """{bdev: reads completed}."""
        stats = self.client.call('bdev_get_iostat')
        found = {b['name']: b['num_read_ops'] for b in stats['bdevs']}
        return {bdev: found[bdev] for bdev in self.bdevs}

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.client is not None:
            self.client.close()


class ReadWatch(threading.Thread):
    """Records when each bdev's reads complete again after ``armed``."""

    def __init__(self, reader):
        super().__init__(daemon=True)
        self.reader = reader
        self.armed = None
        self.resumed = {}
        self.stop = threading.Event()

    def run(self):
        frozen = None
        while not self.stop.wait(IOSTAT_INTERVAL):
            asked = time.monotonic()
            try:
                reads = self.reader.reads()
            except (spdk_exc.SPDKException, KeyError):
                continue
            # Only counts read after the target died: it cannot complete
            # a read from then on until it is back.
            if self.armed is None or asked < self.armed:
                continue
            if frozen is None:
                frozen = reads
                continue
            now = time.monotonic()
            for bdev, count in reads.items():
                if count > frozen[bdev]:
                    self.resumed.setdefault(bdev, now)
            if len(self.resumed) == len(reads):
                return


def measure_restart(target, drv, exports, reader, watch_wait):
    """kill -9 and restart of nvmf_tgt; the driver left alone."""
    nqns = [exports.nqn(v) for v in exports.volumes]
    probes = nqns[-PROBES:] + nqns[:1]
    watch = None
    if reader is not None:
        watch = ReadWatch(reader)
        watch.start()

    def dead():
        if watch is not None:
            watch.armed = time.monotonic()
    killed, spawned, answering = target.timed_restart(dead)
    startup = answering - spawned
    client = target.client
    trigger, triggered = 'driver', answering
    while time.monotonic() - answering < watch_wait:
        if transport_present(client):
            break
        time.sleep(0.05)
    else:
        trigger, triggered = 'stats', time.monotonic()
        threading.Thread(target=drv.get_volume_stats, kwargs={
            'refresh': True}, daemon=True).start()
    deadline = time.monotonic() + RESTART_TIMEOUT
    done = None
    while time.monotonic() < deadline:
        if probes_back(client, probes) and all_back(client, nqns):
            done = time.monotonic()
            break
        time.sleep(0.1)
    replay_s = None if done is None else done - triggered
    stalls = {}
    if watch is not None:
        watch.join(max(deadline - time.monotonic(), 1))
        watch.stop.set()
        stalls = {bdev: (watch.resumed[bdev] - killed - startup -
                         (triggered - answering)) if bdev in watch.resumed
                  else None for bdev in reader.bdevs}
    values = list(stalls.values())
    worst = (None if not values or None in values else max(values))
    return {'startup_s': startup, 'replay_s': replay_s,
            'restart_stall_s': worst, 'stalls': stalls, 'trigger': trigger}


def measure_agent(exports, count, memory_mib, target):
    """Attach ``count`` volumes through the agent, kill SPDK vhost, time
    the agent's replay. Returns a dict of figures.
    """
    started = privileged.start()
    top = tempfile.mkdtemp(prefix='scale-agent-')
    group = vhost_attach.agent_conf(
        top, grp.getgrgid(os.getgid()).gr_name, memory_mib)
    host = topology.read_topology()
    plan = planner.plan(group, host)
    hugepages.reserve(sum(plan.memory_mib_by_node.values()),
                      'SPDK vhost of the agent')
    desired = state.DesiredState(group.state_dir)
    desired.load()
    client = rpc.SPDKClient(group.rpc_socket, timeout=120)
    agent = vhost_agent.VhostAgent(vhost.VhostTarget(client, group),
                                   desired, plan, host, host_nqn=HOST_NQN)
    keeper = supervisor.Supervisor(group, plan, on_ready=agent.replay)
    keeper.start()
    result = {'asked': count}
    try:
        before = memory(target.pid, target.client)
        attached, error = 0, None
        for vol in exports.volumes[:count]:
            info = dict(exports.infos[vol.id], driver_volume_type='spdk_vhost')
            try:
                agent.attach_volume(vol.id, info, numa_nodes=[0])
            except Exception as exc:    # reported, not raised
                error = '%s: %s' % (type(exc).__name__, exc)
                break
            attached += 1
        result.update(attached=attached, error=error)
        after = memory(target.pid, target.client)
        result['target_mib_per_connection'] = {
            k: (after[k] - before[k]) / max(attached, 1) for k in after}
        result['vhost_memory'] = memory(keeper.pid, client)
        if attached:
            killed = time.monotonic()
            os.kill(keeper.pid, signal.SIGKILL)
            deadline = killed + RESTART_TIMEOUT
            while keeper.restarts < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            replayed = time.monotonic()
            back = len(client.call('vhost_get_controllers'))
            result.update(replay_s=replayed - killed, back=back)
    finally:
        keeper.stop()
        client.close()
        if started:
            privileged.default.stop()
        shutil.rmtree(top, ignore_errors=True)
    return result


def fmt(value):
    if value is None:
        return 'n/a'
    return '%.3f' % value if isinstance(value, float) else str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--exports', type=int, default=4000)
    parser.add_argument('--agent-attachments', type=int, default=500)
    parser.add_argument('--agent-mib', type=int, default=2048,
                        help="SPDK vhost's hugepage_mib_per_node")
    parser.add_argument('--max-subsystems', type=int,
                        default=storage.DEFAULT_MAX_SUBSYSTEMS)
    parser.add_argument('--watch-wait', type=float, default=10.0,
                        help='seconds the driver gets to replay on its own')
    args = parser.parse_args()
    if not (spdk_fixtures.spdk_available()
            and spdk_fixtures.spdk_available('vhost')):
        print(spdk_fixtures.SKIP_MESSAGE)
        return 2
    if os.cpu_count() >= 2:
        os.sched_setaffinity(0, {0})
    try:
        return run(args)
    finally:
        hugepages.give_back()


def run(args):
    with storage_target.DeployedTarget(
            args.max_subsystems, cpumask='0x2', interrupt=True,
            size_mib=65536, mem_mib=TARGET_MEM_MIB) as target:
        hugepages.reserve(TARGET_HEADROOM_MIB, 'nvmf_tgt growing')
        idle = memory(target.pid, target.client)
        drv = make_driver(target.socket_path, target.lvstore, target.workdir)
        exports = Exports(drv, target.lvstore)
        started = time.perf_counter()
        exports.create_volumes(args.exports)
        created_s = time.perf_counter() - started
        started = time.perf_counter()
        low, high = exports.export_all()
        exported_s = time.perf_counter() - started
        stats = []
        for _ in range(5):
            start = time.perf_counter()
            drv.get_volume_stats(refresh=True)
            stats.append(time.perf_counter() - start)
        at_n = memory(target.pid, target.client)
        listing_start = time.perf_counter()
        listing = target.client.call('nvmf_get_subsystems')
        listing_ms = (time.perf_counter() - listing_start) * 1000
        listing_bytes = len(json.dumps(listing))

        print('%-34s %12s' % ('figure', 'value'))
        rows = [
            ('volumes created (s)', created_s),
            ('exports made (s)', exported_s),
            ('export+host ms, 0-9 present', median_ms(low)),
            ('export+host ms, %d present' % (args.exports - SAMPLES_HIGH),
             median_ms(high)),
            ('RPCs per export+host (last)', exports.rpcs),
            ('get_volume_stats ms', median_ms(stats)),
            ('nvmf_get_subsystems ms', listing_ms),
            ('nvmf_get_subsystems KiB', listing_bytes / 1024),
            ('nvmf_tgt RSS MiB, idle', idle['rss_mib']),
            ('nvmf_tgt RSS MiB, N exports', at_n['rss_mib']),
            ('nvmf_tgt hugetlb MiB, idle', idle['hugetlb_mib']),
            ('nvmf_tgt hugetlb MiB, N exports', at_n['hugetlb_mib']),
            ('DPDK heap alloc MiB, idle', idle['heap_alloc_mib']),
            ('DPDK heap alloc MiB, N exports', at_n['heap_alloc_mib']),
        ]
        for name, value in rows:
            print('%-34s %12.2f' % (name, value))
        sys.stdout.flush()

        # The first and the last volume made: replayed early and late.
        reader = Reader(target.workdir,
                        [exports.nqn(exports.volumes[0]),
                         exports.nqn(exports.volumes[-1])])
        if reader.available():
            before = memory(target.pid, target.client)
            reader.start()
            after = memory(target.pid, target.client)
            print('nvmf_tgt DPDK heap MiB per bdevperf controller (admin '
                  'and one I/O queue pair): %.3f' % (
                      (after['heap_alloc_mib'] - before['heap_alloc_mib']) /
                      len(reader.bdevs)))
        else:
            print('bdevperf not found at %s: restart_stall_s not measured'
                  % reader.binary)
            reader = None
        try:
            restart = measure_restart(target, drv, exports, reader,
                                      args.watch_wait)
        finally:
            if reader is not None:
                reader.stop()
        print('restart: target start-up %.2f s; replay %s s (%s); I/O '
              'stall s, first and last volume: %s' % (
                  restart['startup_s'], fmt(restart['replay_s']),
                  restart['trigger'],
                  ', '.join(fmt(restart['stalls'].get(b))
                            for b in getattr(reader, 'bdevs', ()))))
        sys.stdout.flush()

        agent = measure_agent(exports, min(args.agent_attachments,
                                           args.exports),
                              args.agent_mib, target)
        print('agent: %(attached)d of %(asked)d attached' % agent +
              ('' if not agent['error'] else ' (then: %s)' % agent['error']))
        print('agent: nvmf_tgt per connected controller: %s' % ', '.join(
            '%s %.3f' % kv for kv in
            sorted(agent['target_mib_per_connection'].items())))
        print('agent: SPDK vhost memory: %s' % ', '.join(
            '%s %.1f' % kv for kv in sorted(agent['vhost_memory'].items())))
        print('agent: replay after SIGKILL %s s, %s controllers back'
              % (fmt(agent.get('replay_s')), agent.get('back')))

    figures = [
        ('exports', len(exports.infos)),
        ('restart_stall_s', restart['restart_stall_s']),
        ('create_export_ms_p50', median_ms(high)),
        ('create_export_ratio', median_ms(high) / median_ms(low)),
        ('replay_s', restart['replay_s']),
        ('agent_replay_s', agent.get('replay_s')),
        ('stats_ms', median_ms(stats)),
        ('rss_mib', at_n['rss_mib']),
        ('agent_attachments', agent['attached']),
        ('replay_trigger', restart['trigger']),
    ]
    print(' '.join('%s=%s' % (k, fmt(v)) for k, v in figures))
    return 0


if __name__ == '__main__':
    sys.exit(main())
