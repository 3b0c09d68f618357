"""SPDK tier: the storage target goes away with a volume attached.

Past ``ctrlr_loss_timeout_sec`` SPDK deletes the NVMe controller and its
bdev, leaving the vhost controller with none; the agent notices, reports
the attachment lost and rebuilds the chain once the target is back. With
``ctrlr_loss_timeout_sec = -1`` SPDK reconnects forever; the agent reports
the attachment stalled after ``stall_report_after_sec`` and its recovery.
"""

import os
import time

from spdk_common import exception as spdk_exc
from tests.fixtures import guest as guest_fixtures
from tests.fixtures import libvirt as libvirt_fixtures
from tests.spdk import test_agent_guest
from tests.spdk import test_vhost_agent

TIMEOUT = 60.0


class RecordingNotifier:
    """What the agent notifies, as oslo.messaging's Notifier is called."""

    def __init__(self):
        self.sent = []

    def info(self, ctxt, event_type, payload):
        self.sent.append((event_type, 'INFO', payload))

    def error(self, ctxt, event_type, payload):
        self.sent.append((event_type, 'ERROR', payload))


class StorageLossBase(test_vhost_agent.AgentTestBase):
    health_checks = True

    def target_port(self):
        return 4537

    def setUp(self):
        self.agent_notifier = RecordingNotifier()
        super().setUp()
        self.conf.set_override('health_check_interval_sec', 0.5,
                               group='spdk_vhost_target')

    def events(self):
        return list(self.agent_notifier.sent)

    def wait_for(self, what, predicate, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        self.fail('%s not seen within %ss; notifications: %s' % (
            what, timeout, self.events()))

    def event(self, name):
        return [(priority, payload) for event, priority, payload
                in self.events()
                if event == 'spdk_vhost_target.attachment.%s' % name]

    def health(self, volume_id):
        for a in self.agent.get_status()['attachments']:
            if a['volume_id'] == volume_id:
                return a['health']

    def attach(self):
        volume, info = self.exported_vhost_volume()
        self.agent.attach_volume(volume.id, info)
        bdev = '%sn1' % volume.id
        self.assertEqual(bdev, self.vhost_bdev(volume.id))
        return volume, info, bdev

    def vhost_bdev(self, volume_id):
        found = self.vhost_client.call('vhost_get_controllers',
                                       {'name': 'vhost-%s' % volume_id})
        return found[0]['backend_specific']['block']['bdev']

    def nvme_state(self, volume_id):
        for ctrlr in self.vhost_client.call('bdev_nvme_get_controllers'):
            if ctrlr['name'] == volume_id:
                return ctrlr['ctrlrs'][0]['state']

    def stop_target(self):
        self.target._kill()
        self.target._retire_client()

    def start_target(self):
        """The storage node comes back: SPDK with its lvstore, and the
        driver's periodic stats task restores the lost exports.
        """
        self.target._start(self.target.config_path)
        self.target._wait_for_lvstore()
        self.rpc = self.target.client
        self.driver.get_volume_stats(refresh=True)


class TestControllerLoss(StorageLossBase):
    def test_lost_controller_is_reported_and_the_chain_rebuilt(self):
        self.conf.set_override('ctrlr_loss_timeout_sec', 3,
                               group='spdk_vhost_target')
        volume, info, bdev = self.attach()
        self.stop_target()
        lost = self.wait_for('attachment.lost',
                             lambda: self.event('lost'))
        self.assertEqual('ERROR', lost[0][0])
        payload = lost[0][1]
        self.assertEqual(volume.id, payload['volume_id'])
        self.assertEqual('1.0', payload['version'])
        self.assertEqual([['127.0.0.1', str(self.target_port()), 'tcp']],
                         payload['portals'])
        self.assertEqual('lost', self.health(volume.id))
        # SPDK left the vhost controller without a bdev.
        self.assertIsNone(self.vhost_bdev(volume.id))
        # While the target is away, attach_volume does not answer "ok".
        self.assertRaises(spdk_exc.SPDKException, self.agent.attach_volume,
                          volume.id, info)
        self.start_target()
        recovered = self.wait_for('attachment.recovered',
                                  lambda: self.event('recovered'))
        self.assertEqual('INFO', recovered[0][0])
        self.assertEqual('lost', recovered[0][1]['previous_state'])
        self.assertEqual('ok', self.health(volume.id))
        self.assertEqual(bdev, self.vhost_bdev(volume.id))
        self.assertEqual('enabled', self.nvme_state(volume.id))
        self.assertTrue(os.path.exists(self.vhost.socket_path(volume.id)))
        # attach_volume again answers ok, on the rebuilt chain.
        self.agent.attach_volume(volume.id, info)
        self.assertEqual(bdev, self.vhost_bdev(volume.id))


class TestStalledTarget(StorageLossBase):
    def test_target_away_is_reported_stalled_then_recovered(self):
        self.conf.set_override('stall_report_after_sec', 3,
                               group='spdk_vhost_target')
        volume, info, bdev = self.attach()
        self.stop_target()
        states = set()

        def stalled():
            states.add(self.nvme_state(volume.id))
            return self.event('stalled')
        report = self.wait_for('attachment.stalled', stalled)
        self.assertEqual('ERROR', report[0][0])
        self.assertEqual(volume.id, report[0][1]['volume_id'])
        self.assertGreaterEqual(report[0][1]['seconds'], 3)
        self.assertEqual('stalled', self.health(volume.id))
        # SPDK keeps the controller and reconnects (v25.09 states; it
        # stays enabled until it notices the dead connection).
        self.assertIn('reconnect_is_delayed', states)
        self.assertLessEqual(states, {'enabled', 'resetting',
                                      'reconnect_is_delayed', 'failed'},
                             states)
        self.assertEqual(bdev, self.vhost_bdev(volume.id))
        self.assertEqual([], self.event('lost'))
        self.start_target()
        recovered = self.wait_for('attachment.recovered',
                                  lambda: self.event('recovered'))
        self.assertEqual('stalled', recovered[0][1]['previous_state'])
        self.assertEqual('ok', self.health(volume.id))
        self.assertEqual('enabled', self.nvme_state(volume.id))


class TestGuestAfterControllerLoss(test_agent_guest.GuestMixin,
                                   StorageLossBase):
    """A real guest on the volume: its I/O fails once SPDK gave up on the
    target; when the target is back the agent rebuilds the chain, ending
    the guest's vhost-user session (whose every I/O failed anyway) so that
    QEMU reconnects to the new controller, and the guest's I/O resumes
    without a reboot and reads back what it wrote before the outage.
    """

    socket_group = 'libvirt-qemu'

    def target_port(self):
        return 4538

    def setUp(self):
        self.guest = self.useFixture(guest_fixtures.Guest())
        self.libvirt = self.useFixture(libvirt_fixtures.Libvirtd())
        super().setUp()

    def read_block(self, block):
        status, _output = self.console.run(
            'dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=%d '
            'iflag=direct 2>/dev/null' % block, timeout=120)
        return status

    def test_guest_io_resumes_on_the_rebuilt_chain(self):
        self.conf.set_override('ctrlr_loss_timeout_sec', 3,
                               group='spdk_vhost_target')
        volume, info, bdev = self.attach()
        self.boot_guest(self.vhost.socket_path(volume.id))
        written = self.guest_run(
            'dd if=/dev/urandom of=/p bs=1M count=4 2>/dev/null && '
            'dd if=/p of=/dev/vda bs=1M count=4 conv=fsync 2>/dev/null && '
            'sha256sum /p').split()[0]
        self.stop_target()
        self.wait_for('attachment.lost', lambda: self.event('lost'))
        self.assertNotEqual(0, self.read_block(99))
        log = os.path.join(self.group.state_dir, 'spdk-vhost.log')
        log_before = os.path.getsize(log)
        self.start_target()
        recovered = self.wait_for('attachment.recovered',
                                  lambda: self.event('recovered'))
        self.assertEqual('lost', recovered[0][1]['previous_state'])
        self.assertEqual('ok', self.health(volume.id))
        self.assertEqual(bdev, self.vhost_bdev(volume.id))
        # QEMU reconnects within its reconnect timeout (1 s here).
        deadline = time.monotonic() + 30
        while self.read_block(100) != 0:
            self.assertLess(time.monotonic(), deadline,
                            'guest I/O did not resume')
            time.sleep(1)
        sessions = self.vhost_client.call(
            'vhost_get_controllers',
            {'name': 'vhost-%s' % volume.id})[0]['sessions']
        self.assertEqual(1, len(sessions))
        read = self.guest_run(
            'dd if=/dev/vda bs=1M count=4 iflag=direct 2>/dev/null '
            '| sha256sum').split()[0]
        self.assertEqual(written, read)
        self.guest_run('dd if=/dev/urandom of=/dev/vda bs=1M count=2 '
                       'seek=8 oflag=direct conv=fsync 2>/dev/null')
        self.assertLess(os.path.getsize(log) - log_before, 100 * 1024)
