"""Live migration of a guest with an SPDK vhost-user volume, back and forth
between two compute hosts on this machine, against the same guest without
volumes.

Prints figures, asserts nothing. Needs what the SPDK tier's
tests/spdk/test_two_hosts.py needs (real SPDK, root, hugepages, libvirt,
QEMU and the test guest's packages) and uses its harness: two hosts, each
with its agent and SPDK vhost (polling the same CPU) and its own libvirtd,
one nvmf_tgt driven by the Cinder driver. Run from the repository root:

    .venv/bin/python -m benchmarks.live_migration [--round-trips N]

Each migration is Nova's sequence: the destination's agent attaches, libvirt
migrates peer to peer, the source's agent detaches and its host leaves the
ACL. The guest writes and fsyncs a numbered 512-byte record per block all
along; at the end every record is read back (``verified_mib``). Downtime is
libvirt's (the job's "Total downtime"); the guest's own view is the longest
gap between two completed writes. The baseline migrates the same guest,
without its volume, between the same two libvirtds.
"""

import argparse
import re
import statistics
import sys
import time
import unittest

from tests.fixtures import guest as guest_fixtures
from tests.fixtures import hugepages
from tests.fixtures import libvirt as libvirt_fixtures
from tests.fixtures import privsep
from tests.spdk import test_two_hosts

RECORD_BYTES = 512


def downtime_s(host, domain):
    stats = host.libvirtd.virsh('domjobinfo', '--completed', domain,
                                check=False).stdout
    found = re.search(r'Total downtime:\s+(\d+)\s+ms', stats)
    return int(found.group(1)) / 1000.0 if found else float('nan')


class LiveMigrationBenchmark(test_two_hosts.MigrationTestBase):
    round_trips = 3

    def migrate_once(self, source, dest, with_volume=True):
        if with_volume:
            self.attach(dest)
        status, err, seconds = self.migrate(source, dest)
        if status:
            raise RuntimeError('migration failed: %s' % err)
        if with_volume:
            self.detach(source)
        return seconds, downtime_s(dest, self.domain)

    def round_trip_figures(self, with_volume):
        source, dest = self.hosts
        figures = []
        for _ in range(self.round_trips):
            figures.append(self.migrate_once(source, dest, with_volume))
            figures.append(self.migrate_once(dest, source, with_volume))
        return figures

    def test_benchmark(self):
        source, dest = self.hosts
        # Baseline: the guest alone, no volume.
        self.domain = 'spdk-baseline-%d' % id(self)
        source.libvirtd.start_domain(
            self.domain, libvirt_fixtures.vhost_user_guest_xml(
                self.domain, self.image.kernel, self.image.initrd,
                '%s/ttyS0' % self.serial,
                memory_mib=test_two_hosts.GUEST_MIB))
        # The destination's copy of the guest while both run: reserved
        # once the source's guest has its pages (it would take these).
        hugepages.reserve(test_two_hosts.GUEST_MIB, 'the migrated guest')
        self.console(source, wait_ready=True).close()
        baseline = self.round_trip_figures(with_volume=False)
        source.libvirtd.virsh('destroy', self.domain)
        source.libvirtd.virsh('undefine', self.domain)

        console = self.boot(source)
        self.guest_run(console, guest_fixtures.VERIFY_LOOP)
        time.sleep(2)
        measured = self.round_trip_figures(with_volume=True)
        console = self.console(source)
        time.sleep(2)
        gap, written, errors, bad = self.guest_run(
            console, guest_fixtures.VERIFY_REPORT, timeout=600).split()
        median = statistics.median
        print('migrations with the volume: %s'
              % ', '.join('%.2fs/%.0fms' % (s, d * 1000)
                          for s, d in measured))
        print('migrations without it:      %s'
              % ', '.join('%.2fs/%.0fms' % (s, d * 1000)
                          for s, d in baseline))
        print('guest: %s records written, %s failed writes, %s records '
              'not read back, longest gap between writes %s s'
              % (written, errors, bad, gap))
        verified = (int(written) - int(bad)) * RECORD_BYTES / 2 ** 20
        print('downtime_s=%.3f migration_s=%.2f io_errors=%d '
              'verified_mib=%.2f round_trips=%d baseline_downtime_s=%.3f '
              'baseline_migration_s=%.2f guest_gap_s=%s'
              % (median(d for _s, d in measured),
                 median(s for s, _d in measured),
                 int(errors) + int(bad), verified, self.round_trips,
                 median(d for _s, d in baseline),
                 median(s for s, _d in baseline), gap))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--round-trips', type=int, default=3)
    args = parser.parse_args()
    LiveMigrationBenchmark.round_trips = args.round_trips
    # The agents' root work goes through their privsep daemon.
    privsep.start()
    try:
        result = unittest.TextTestRunner(stream=sys.stderr, verbosity=0).run(
            LiveMigrationBenchmark('test_benchmark'))
    finally:
        privsep.stop()
        hugepages.give_back()
    return 0 if result.wasSuccessful() and not result.skipped else 1


if __name__ == '__main__':
    sys.exit(main())
