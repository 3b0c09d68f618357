"""Attach latency and crash recovery of the spdk-vhost-target agent.

Prints figures, asserts nothing. Needs real SPDK (nvmf_tgt and vhost, found
like the SPDK test tier finds them), root, hugepages, and for the recovery
to guest I/O libvirt, QEMU and the test guest's packages. Run from the
repository root:

    .venv/bin/python -m benchmarks.vhost_attach [--samples N]

Storage: nvmf_tgt in interrupt mode on core 0, lvols exported per volume
with a host ACL. Compute: the agent's supervised SPDK vhost polling core 1.
Attach latency is agent.attach_volume (RPC call to socket ready, including
the socket's owner/mode and the fsync'd state file) against the raw RPC
sequence for the same attach, interleaved, medians. Agent restart: the
agent (supervisor, agent, state) is stopped and started again, taking over
the running SPDK, while the guest writes and fsyncs 4 KiB blocks in a loop;
``agent_restart_stall_s`` is the guest's longest gap between two writes
across it. Recovery: SIGKILL to SPDK vhost with volumes attached, until the
agent has replayed them, and until a guest's pending write completes.
"""

import argparse
import grp
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid

import fixtures
from oslo_config import cfg

from spdk_common import naming
from spdk_common import rpc
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import spdk as spdk_fixtures
from vhost_target import agent as vhost_agent
from vhost_target import config
from vhost_target import planner
from vhost_target import privileged
from vhost_target import state
from vhost_target import supervisor
from vhost_target import topology
from vhost_target import vhost

HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:%s' % uuid.uuid4()
PORT = '4540'


def export(storage, lvstore, name):
    """A volume exported the way the Cinder driver does it."""
    call = storage.client.call
    call('bdev_lvol_create', {'lvs_name': lvstore, 'lvol_name': name,
                              'size_in_mib': 1024, 'thin_provision': True})
    nqn = 'nqn.2010-10.org.openstack:%s' % name
    call('nvmf_create_subsystem', {'nqn': nqn, 'allow_any_host': False,
                                   'max_namespaces': 1})
    call('nvmf_subsystem_add_ns', {'nqn': nqn, 'namespace': {
        'bdev_name': naming.lvol_alias(lvstore, name)}})
    call('nvmf_subsystem_add_listener', {'nqn': nqn, 'listen_address': {
        'trtype': 'TCP', 'adrfam': 'IPv4', 'traddr': '127.0.0.1',
        'trsvcid': PORT}})
    call('nvmf_subsystem_add_host', {'nqn': nqn, 'host': HOST_NQN})
    return {'driver_volume_type': 'spdk_vhost',
            'data': {'target_nqn': nqn, 'host_nqn': HOST_NQN,
                     'portals': [('127.0.0.1', PORT, 'tcp')],
                     # The agent takes Cinder's volume ids (UUIDs) only.
                     'vol_uuid': str(uuid.uuid5(uuid.NAMESPACE_URL, name))}}


def agent_conf(top, socket_group, memory_mib=256):
    """The agent's options for a benchmark under ``top``: SPDK vhost on
    the last online CPU with ``memory_mib`` of hugepages.
    """
    conf = cfg.ConfigOpts()
    config.register(conf)
    conf([], default_config_files=[])
    cpus = sorted(topology.read_topology().online)
    for name, value in (('rpc_socket', os.path.join(top, 'rpc', 'spdk.sock')),
                        ('socket_dir', os.path.join(top, 'sockets')),
                        ('state_dir', os.path.join(top, 'state')),
                        ('socket_group', socket_group),
                        ('reactor_cpus', str(cpus[-1])),
                        ('hugepage_mib_per_node', memory_mib),
                        ('reconnect_delay_sec', 1)):
        conf.set_override(name, value, group=config.GROUP)
    return conf.spdk_vhost_target


def raw_attach(client, volume_id, info, cpu):
    data = info['data']
    name = naming.nvme_controller_name(volume_id)
    bdevs = client.call('bdev_nvme_attach_controller', {
        'name': name, 'trtype': 'tcp', 'adrfam': 'ipv4',
        'traddr': '127.0.0.1', 'trsvcid': PORT,
        'subnqn': data['target_nqn'], 'hostnqn': HOST_NQN,
        'ctrlr_loss_timeout_sec': -1, 'reconnect_delay_sec': 1,
        'fast_io_fail_timeout_sec': 0})
    client.call('vhost_create_blk_controller', {
        'ctrlr': naming.vhost_controller_name(volume_id),
        'dev_name': bdevs[0], 'cpumask': '0x%x' % (1 << cpu)})


def raw_detach(client, volume_id):
    client.call('vhost_delete_controller',
                {'ctrlr': naming.vhost_controller_name(volume_id)})
    client.call('bdev_nvme_detach_controller',
                {'name': naming.nvme_controller_name(volume_id)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--samples', type=int, default=20)
    parser.add_argument('--volumes', type=int, default=4,
                        help='attached volumes during the recovery run')
    args = parser.parse_args()
    if not (spdk_fixtures.spdk_available()
            and spdk_fixtures.spdk_available('vhost')):
        print(spdk_fixtures.SKIP_MESSAGE)
        return 2
    # The agent's root work goes through its privsep daemon.
    privileged.start()
    with fixtures.TempDir() as tmp, spdk_fixtures.SPDKTarget(
            interrupt=True, size_mib=8192) as storage:
        top = tempfile.mkdtemp(dir=tmp.path)
        libvirt_fixtures.make_traversable(top)
        with_guest = (guest_fixtures.available()
                      and libvirt_fixtures.available())
        group = agent_conf(top, 'libvirt-qemu' if with_guest else
                           grp.getgrgid(os.getgid()).gr_name)
        host = topology.read_topology()
        plan = planner.plan(group, host)
        desired = state.DesiredState(group.state_dir)
        desired.load()
        client = rpc.SPDKClient(group.rpc_socket)
        agent = vhost_agent.VhostAgent(vhost.VhostTarget(client, group),
                                       desired, plan, host)
        keeper = supervisor.Supervisor(group, plan, on_ready=agent.replay)
        keeper.start()
        try:
            storage.client.call('nvmf_create_transport', {'trtype': 'TCP'})
            lvs = storage.lvstore
            agent_ms, raw_ms = [], []
            for i in range(args.samples):
                info = export(storage, lvs, 'bench-%d' % i)
                start = time.perf_counter()
                volume_id = info['data']['vol_uuid']
                agent.attach_volume(volume_id, info, numa_nodes=[0])
                agent_ms.append((time.perf_counter() - start) * 1000)
                agent.detach_volume(volume_id)
                start = time.perf_counter()
                raw_attach(client, 'r%d' % i, info, plan.reactor_cpus[0])
                raw_ms.append((time.perf_counter() - start) * 1000)
                raw_detach(client, 'r%d' % i)
            agent_median = statistics.median(agent_ms)
            raw_median = statistics.median(raw_ms)
            print('attach ms (median of %d): agent %.2f; raw RPCs %.2f'
                  % (args.samples, agent_median, raw_median))

            infos = [export(storage, lvs, 'crash-%d' % i)
                     for i in range(args.volumes)]
            paths = [agent.attach_volume(info['data']['vol_uuid'], info,
                                         numa_nodes=[0])
                     for info in infos]
            console = None
            stall_s = None
            if with_guest:
                guest = fixtures.Fixture()
                guest.setUp()
                console = _boot_guest(tmp.path, top, paths[0], guest)
                agent, keeper, stall_s = _restart_agent(
                    console, group, plan, host, client, keeper)
            crashed = time.monotonic()
            os.kill(keeper.pid, signal.SIGKILL)
            while keeper.restarts < 1:
                time.sleep(0.01)
            replayed_s = time.monotonic() - crashed
            print('recovery s: SIGKILL to %d controllers replayed %.2f'
                  % (args.volumes, replayed_s))
            recovery_s = replayed_s
            if console is not None:
                status, output = console.run(
                    'dd if=/dev/urandom of=/dev/vda bs=4k count=1 '
                    'conv=fsync 2>/dev/null')
                recovery_s = time.monotonic() - crashed
                print('recovery s: SIGKILL to guest write done %.2f '
                      '(status %d)' % (recovery_s, status))
                guest.cleanUp()
            else:
                print('recovery to guest I/O not measured: %s / %s'
                      % (guest_fixtures.SKIP_MESSAGE,
                         libvirt_fixtures.SKIP_MESSAGE))
        finally:
            keeper.stop()
            client.close()
    print('attach_ratio=%.3f recovery_s=%.2f agent_restart_stall_s=%s'
          % (agent_median / raw_median, recovery_s,
             'n/a' if stall_s is None else '%.2f' % stall_s))
    return 0


def _restart_agent(console, group, plan, host, client, keeper):
    """Stop the agent (SPDK keeps running) and start a new one, which
    takes SPDK over, while the guest writes; returns the new agent, its
    supervisor and the guest's longest I/O gap (s).
    """
    status, output = console.run(guest_fixtures.IO_LOOP)
    time.sleep(2)
    started = time.monotonic()
    keeper.stop(with_spdk=False)
    desired = state.DesiredState(group.state_dir)
    desired.load()
    agent = vhost_agent.VhostAgent(vhost.VhostTarget(client, group),
                                   desired, plan, host)
    keeper = supervisor.Supervisor(group, plan, on_ready=agent.replay)
    keeper.start()
    restart_s = time.monotonic() - started
    time.sleep(2)
    status, output = console.run(guest_fixtures.IO_REPORT)
    gap, writes, errors = output.split()
    print('agent restart s: %.2f (took over SPDK: %s); guest: longest I/O '
          'gap %s s over %s writes, %s failed' % (
              restart_s, keeper.took_over, gap, writes, errors))
    if int(errors) or not keeper.took_over:
        raise RuntimeError('the agent restart disturbed the guest')
    return agent, keeper, float(gap)


def _boot_guest(tmp, top, vhost_socket, holder):
    import pwd
    image = holder.useFixture(guest_fixtures.Guest())
    libvirtd = holder.useFixture(libvirt_fixtures.Libvirtd())
    serial_dir = os.path.join(top, 'serial')
    os.mkdir(serial_dir)
    qemu = pwd.getpwnam('libvirt-qemu')
    os.chown(serial_dir, qemu.pw_uid, qemu.pw_gid)
    serial = os.path.join(serial_dir, 'ttyS0')
    libvirtd.start_domain('spdk-bench', libvirt_fixtures.vhost_user_guest_xml(
        'spdk-bench', image.kernel, image.initrd, serial, vhost_socket))
    console = guest_fixtures.SerialConsole(serial)
    holder.addCleanup(console.close)
    console.wait_ready()
    status, output = console.run('dd if=/dev/urandom of=/dev/vda bs=4k '
                                 'count=1 conv=fsync 2>/dev/null')
    if status:
        raise RuntimeError('guest I/O failed before the crash: %s' % output)
    return console


if __name__ == '__main__':
    sys.exit(main())
