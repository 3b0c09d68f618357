"""ExportRecovery: when the driver replays, and what an operation
restores itself, against the in-process SPDK double.
"""

import threading
import time
from unittest import mock

from cinder_driver import exports
from cinder_driver import recovery
from spdk_common import exception as spdk_exc
from tests import base
from tests.fixtures import spdk as spdk_fixtures

HOST = 'nqn.2014-08.org.nvmexpress:uuid:0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'
VOLS = ['9b1c7d5e-2f4a-4c3b-8d6e-1a2b3c4d5e6%d' % i for i in range(3)]


class TestExportRecovery(base.TestCase):
    def setUp(self):
        super().setUp()
        self.target = self.useFixture(spdk_fixtures.FakeSPDKTarget())
        self.client = self.target.client
        self.exports = exports.NVMeoFExports(
            self.client, 'nqn.2010-10.org.openstack', ['127.0.0.1'], 4420)
        self.exports.ensure_transport()
        for index, vol in enumerate(VOLS):
            self.client.call('bdev_lvol_create', {
                'lvs_name': self.target.lvstore, 'lvol_name': 'v%d' % index,
                'size_in_mib': 4, 'thin_provision': True})
            self.exports.export(vol, '%s/v%d' % (self.target.lvstore, index))
            self.exports.allow_host(vol, HOST)
        self.recovery = recovery.ExportRecovery(
            self.client, self.exports, self.target.socket_path, 0.2)
        self.addCleanup(self.recovery.stop)
        self.assertEqual([], self.recovery.check())

    def restart(self):
        """The target restarts; the driver's client sees its end."""
        self.target.restart()
        self.client.wait_disconnected(5)
        self.target.client = self.client

    def present(self):
        return {s['nqn']: [h['nqn'] for h in s['hosts']]
                for s in self.client.call('nvmf_get_subsystems')
                if s['nqn'].startswith('nqn.2010-10.org.openstack:')}

    def test_a_current_target_costs_no_rpc(self):
        self.target.calls.clear()
        self.assertIsNone(self.recovery.check())
        self.recovery.before_operation(VOLS[0])
        self.assertEqual({}, dict(self.target.calls))

    def test_a_reconnect_to_the_same_target_sends_nothing_but_looks(self):
        self.client.close()
        self.target.calls.clear()
        self.assertEqual([], self.recovery.check())
        # Two listings (transport, subsystems); nothing was missing.
        self.assertEqual({'nvmf_get_transports': 2,
                          'nvmf_get_subsystems': 1}, dict(self.target.calls))

    def test_a_restart_whose_transport_another_driver_made_is_replayed(self):
        # A storage node's own back end replays its exports first, and
        # makes the transport: this back end's exports must come back too.
        self.restart()
        self.client.call('nvmf_create_transport', {'trtype': 'TCP'})
        restored = self.recovery.check()
        self.assertEqual(sorted(self.exports.nqn(v) for v in VOLS),
                         sorted(restored))

    def test_a_restart_is_replayed_by_the_next_check(self):
        self.restart()
        self.assertEqual({}, self.present())
        restored = self.recovery.check()
        self.assertEqual(sorted(self.exports.nqn(v) for v in VOLS),
                         sorted(restored))
        self.assertEqual({self.exports.nqn(v): [HOST] for v in VOLS},
                         self.present())

    def test_the_watcher_replays_without_being_asked(self):
        self.recovery.start()
        self.restart()
        # The count rises once the replay has returned, a moment after
        # its last export is visible: wait for the count, then look.
        deadline = time.monotonic() + 10
        while self.recovery.replays < 1:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        self.assertEqual(len(VOLS), len(self.present()))
        # (A second look after a reconnect may replay again: nothing is
        # missing then, and nothing is sent.)
        self.assertLessEqual(self.recovery.replays, 2)

    def test_an_operation_restores_its_own_export_first(self):
        self.restart()
        self.recovery.before_operation(VOLS[0])
        self.assertEqual({self.exports.nqn(VOLS[0]): [HOST]}, self.present())
        # The transport it made does not hide the restart from the replay.
        self.recovery.check()
        self.assertEqual(len(VOLS), len(self.present()))

    def test_requested_replay_runs_on_a_current_target(self):
        self.client.call('nvmf_delete_subsystem',
                         {'nqn': self.exports.nqn(VOLS[1])})
        self.assertIsNone(self.recovery.check())
        self.recovery.request_replay()
        self.assertEqual([self.exports.nqn(VOLS[1])], self.recovery.check())

    def test_the_watcher_replays_a_request_at_once(self):
        # ensure_export at cinder-volume's start requests the replay; it
        # must not wait for the watcher's next interval.
        watcher = recovery.ExportRecovery(
            self.client, self.exports, self.target.socket_path, 60)
        self.addCleanup(watcher.stop)
        watcher.start()
        # Its first look found the target current; now it waits.
        base.wait_until(lambda: watcher._current is not None)
        self.client.call('nvmf_delete_subsystem',
                         {'nqn': self.exports.nqn(VOLS[1])})
        watcher.request_replay()
        base.wait_until(lambda: len(self.present()) == len(VOLS),
                        timeout=5)
        self.assertEqual(1, watcher.replays)

    def test_the_watcher_tells_whether_the_target_answered_its_last_look(
            self):
        answers = threading.Event()
        check = self.recovery.check

        def look():
            if not answers.is_set():
                raise spdk_exc.SPDKUnavailable(socket='node', reason='down')
            return check()
        self.assertFalse(self.recovery.away)
        with mock.patch.object(self.recovery, 'check', look):
            self.recovery.start()
            base.wait_until(lambda: self.recovery.away)
            answers.set()
            base.wait_until(lambda: not self.recovery.away, timeout=5)

    def test_exports_a_replay_could_not_restore_stay_due(self):
        self.restart()
        real = self.exports._restore
        calls = []

        def flaky(export):
            calls.append(export.nqn)
            return None if len(calls) == 1 else real(export)
        with mock.patch.object(self.exports, '_restore', side_effect=flaky):
            self.assertEqual(len(VOLS) - 1, len(self.recovery.check()))
            self.assertEqual(1, len(self.recovery.check()))
        self.assertEqual(len(VOLS), len(self.present()))

    def test_a_failed_replay_stays_due(self):
        self.recovery.request_replay()
        with mock.patch.object(self.exports, 'replay',
                               side_effect=RuntimeError('target died')):
            self.assertRaises(RuntimeError, self.recovery.check)
        self.assertEqual([], self.recovery.check())
        self.assertEqual(1, self.recovery.replays)
