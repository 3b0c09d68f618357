"""Volume-operation latency of the Cinder driver against raw SPDK RPCs.

Prints figures, asserts nothing. Needs real SPDK (found like the SPDK test
tier finds it) and root for hugepages. Run from the repository root:

    .venv/bin/python -m benchmarks.volume_ops [--samples N]

The storage target polls on its own core (core 1) and this process runs on
core 0. SPDK reads its RPC socket every 4 ms, so single operations come in
~4 ms steps: every figure is a median over many samples, and each driver
operation is measured next to the minimal raw RPC sequence for the same
job, in the same run. The last line is machine-readable.

A thin create is two RPCs for the driver and for the raw sequence alike:
the lvstore's figures of the moment (SPDK makes a thin lvol on a full
lvstore without complaint), then the create. ``bare_create_ms`` is a lone
``bdev_lvol_create`` for comparison, i.e. what that look costs.
"""

import argparse
import concurrent.futures
import os
import statistics
import sys
import time
import uuid

from oslo_config import cfg

from cinder import context
from cinder import objects
from cinder.volume import configuration

from cinder_driver import spdk as spdk_driver
from spdk_common import naming
from tests.fixtures import spdk as spdk_fixtures

SIZES_GB = (1, 1024)
OPS = ('create', 'snapshot', 'clone', 'extend', 'delete')


def make_driver(socket_path, lvstore, workdir, **options):
    """The driver as cinder-volume builds it; ``options`` are more
    back-end options.
    """
    objects.register_all()
    conf = cfg.CONF
    conf([], project='cinder', default_config_files=[])
    conf.set_override('state_path', workdir)
    # 1 TiB thin volumes on an 8 GiB lvstore: allow that over-subscription
    # (the driver refuses a thin size beyond capacity times the ratio).
    for name, value in (('spdk_rpc_socket', socket_path),
                        ('spdk_lvstores', [lvstore]),
                        ('spdk_target_addresses', ['127.0.0.1']),
                        ('max_over_subscription_ratio', '1000'),
                        *options.items()):
        conf.set_override(name, value, group=configuration.SHARED_CONF_GROUP)
    config = configuration.Configuration(
        spdk_driver.spdk_opts, config_group='spdk')
    drv = spdk_driver.SPDKDriver(configuration=config, host='bench@spdk')
    drv.do_setup(None)
    drv.check_for_setup_error()
    return drv


class DriverOps:
    """One volume life cycle through the driver, each step timed."""

    def __init__(self, drv, lvstore):
        self.drv = drv
        self.ctxt = context.get_admin_context()
        self.host = 'bench@spdk#%s' % lvstore

    def volume(self, size):
        return objects.Volume(self.ctxt, id=str(uuid.uuid4()), host=self.host,
                              size=size, volume_type_id=None)

    def cycle(self, size, timer):
        vol = self.volume(size)
        with timer('create'):
            self.drv.create_volume(vol)
        snap = objects.Snapshot(self.ctxt, id=str(uuid.uuid4()),
                                volume_id=vol.id, volume_size=size,
                                provider_id=None)
        snap.volume = vol
        with timer('snapshot'):
            self.drv.create_snapshot(snap)
        clone = self.volume(size)
        with timer('clone'):
            self.drv.create_volume_from_snapshot(clone, snap)
        with timer('extend'):
            self.drv.extend_volume(vol, size + 1)
        self.drv.delete_volume(clone)
        self.drv.delete_snapshot(snap)
        with timer('delete'):
            self.drv.delete_volume(vol)


class RawOps:
    """The same life cycle as the minimal RPC sequence."""

    def __init__(self, client, lvstore):
        self.client = client
        self.lvs = lvstore

    def cycle(self, size, timer):
        call = self.client.call
        name, snap, clone = ('raw-%s' % uuid.uuid4() for _ in range(3))
        alias = naming.lvol_alias(self.lvs, name)
        with timer('create'):
            # Refuse a full lvstore, then create: the same job as the
            # driver's.
            lvs = call('bdev_lvol_get_lvstores', {'lvs_name': self.lvs})[0]
            assert lvs['free_clusters'] > 0
            call('bdev_lvol_create', {'lvs_name': self.lvs, 'lvol_name': name,
                                      'size_in_mib': size * 1024,
                                      'thin_provision': True,
                                      'clear_method': 'unmap'})
        bare = 'raw-%s' % uuid.uuid4()
        with timer('bare_create'):
            call('bdev_lvol_create', {'lvs_name': self.lvs, 'lvol_name': bare,
                                      'size_in_mib': size * 1024,
                                      'thin_provision': True,
                                      'clear_method': 'unmap'})
        call('bdev_lvol_delete', {'name': naming.lvol_alias(self.lvs, bare)})
        with timer('snapshot'):
            call('bdev_lvol_snapshot', {'lvol_name': alias,
                                        'snapshot_name': snap})
        with timer('clone'):
            call('bdev_lvol_clone', {
                'snapshot_name': naming.lvol_alias(self.lvs, snap),
                'clone_name': clone})
        with timer('extend'):
            call('bdev_lvol_resize', {'name': alias,
                                      'size_in_mib': (size + 1) * 1024})
        call('bdev_lvol_delete', {'name': naming.lvol_alias(self.lvs, clone)})
        call('bdev_lvol_delete', {'name': naming.lvol_alias(self.lvs, snap)})
        with timer('delete'):
            call('bdev_lvol_delete', {'name': alias})


class Timer:
    def __init__(self, client):
        self.client = client
        self.samples = {}
        self.rpcs = {}

    def __call__(self, op):
        timer = self

        class _Span:
            def __enter__(self):
                self.sent = timer.client.calls_sent
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                elapsed = time.perf_counter() - self.start
                timer.samples.setdefault(op, []).append(elapsed)
                rpcs = timer.client.calls_sent - self.sent
                timer.rpcs[op] = max(timer.rpcs.get(op, 0), rpcs)
        return _Span()

    def median_ms(self, op):
        return statistics.median(self.samples[op]) * 1000


def throughput_concurrent(drv_ops, count, workers=64):
    def one(_):
        vol = drv_ops.volume(1)
        drv_ops.drv.create_volume(vol)
        drv_ops.drv.delete_volume(vol)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - start)


def throughput_serial_raw(client, lvstore, count):
    start = time.perf_counter()
    for _ in range(count):
        name = 'raw-%s' % uuid.uuid4()
        client.call('bdev_lvol_create', {
            'lvs_name': lvstore, 'lvol_name': name, 'size_in_mib': 1024,
            'thin_provision': True})
        client.call('bdev_lvol_delete',
                    {'name': naming.lvol_alias(lvstore, name)})
    return count / (time.perf_counter() - start)


def stats_time(drv, repeats=7):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        drv._update_volume_stats()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def fill(client, lvstore, count):
    def one(i):
        client.call('bdev_lvol_create', {
            'lvs_name': lvstore, 'lvol_name': 'volume-fill-%05d' % i,
            'size_in_mib': 1024, 'thin_provision': True})
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--samples', type=int, default=40)
    parser.add_argument('--concurrent', type=int, default=256,
                        help='create+delete pairs in the throughput runs')
    args = parser.parse_args()
    if not spdk_fixtures.spdk_available():
        print(spdk_fixtures.SKIP_MESSAGE)
        return 2
    if os.cpu_count() >= 2:
        os.sched_setaffinity(0, {0})
    with spdk_fixtures.SPDKTarget(cpumask='0x2', size_mib=8192) as target:
        drv = make_driver(target.socket_path, target.lvstore, target.workdir)
        client = drv._client
        raw_client = target.client
        drv_ops, raw_ops = DriverOps(drv, target.lvstore), RawOps(
            raw_client, target.lvstore)
        timers = {}
        for size in SIZES_GB:
            d, r = Timer(client), Timer(raw_client)
            for _ in range(args.samples):
                drv_ops.cycle(size, d)
                raw_ops.cycle(size, r)
            timers[size] = (d, r)

        print('%-9s %10s %10s %10s %10s %6s' % (
            'op', 'drv 1G ms', 'raw 1G ms', 'drv 1T ms', 'raw 1T ms', 'rpcs'))
        ratios, overhead, rpcs = {}, [], 0
        for op in OPS:
            d1, r1 = timers[1][0].median_ms(op), timers[1][1].median_ms(op)
            dt, rt = (timers[1024][0].median_ms(op),
                      timers[1024][1].median_ms(op))
            op_rpcs = max(timers[s][0].rpcs[op] for s in SIZES_GB)
            rpcs = max(rpcs, op_rpcs)
            print('%-9s %10.2f %10.2f %10.2f %10.2f %6d' % (
                op, d1, r1, dt, rt, op_rpcs))
            ratios[op] = (dt / d1) / (rt / r1)
            overhead.extend([d1 / r1, dt / rt])

        concurrent_tp = throughput_concurrent(drv_ops, args.concurrent)
        serial_tp = throughput_serial_raw(raw_client, target.lvstore,
                                          args.concurrent // 4)
        print('create+delete pairs/s: driver, 64 threads %.1f; raw serial '
              '%.1f' % (concurrent_tp, serial_tp))
        bare_ms = timers[1][1].median_ms('bare_create')
        print('thin create ms: driver %.2f (%d RPCs); a lone '
              'bdev_lvol_create %.2f' % (timers[1][0].median_ms('create'),
                                         timers[1][0].rpcs['create'],
                                         bare_ms))

        fill(raw_client, target.lvstore, 10)
        stats_10 = stats_time(drv)
        fill_more = 1000
        for i in range(10):
            raw_client.call('bdev_lvol_delete', {'name': naming.lvol_alias(
                target.lvstore, 'volume-fill-%05d' % i)})
        fill(raw_client, target.lvstore, fill_more)
        stats_1000 = stats_time(drv)
        print('stats ms: 10 volumes %.2f; 1000 volumes %.2f' % (
            stats_10, stats_1000))

        figures = {
            'create_ratio': ratios['create'],
            'snapshot_ratio': ratios['snapshot'],
            'clone_ratio': ratios['clone'],
            'stats_ratio': stats_1000 / stats_10,
            'concurrency_efficiency': concurrent_tp / serial_tp,
            'driver_overhead': max(overhead),
            'rpcs_per_op': rpcs,
            'create_vs_bare': timers[1][0].median_ms('create') / bare_ms,
        }
        print(' '.join('%s=%s' % (k, ('%.3f' % v) if isinstance(v, float)
                                  else v) for k, v in figures.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
