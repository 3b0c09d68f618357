"""bdev_nvme's loss settings from the agent's options."""

from tests import base
from tests.unit import vhost_target as helpers
from vhost_target import config


class TestLossSettings(base.TestCase):
    def test_defaults(self):
        group = helpers.make_conf(self)
        self.assertEqual([], config.loss_setting_problems(group))
        # A single copy waits for its target; a copy fails at once.
        self.assertEqual(
            {'ctrlr_loss_timeout_sec': -1, 'reconnect_delay_sec': 1,
             'fast_io_fail_timeout_sec': 0},
            config.loss_settings(group.ctrlr_loss_timeout_sec,
                                 group.reconnect_delay_sec,
                                 group.fast_io_fail_timeout_sec))
        self.assertEqual(
            {'ctrlr_loss_timeout_sec': 0, 'reconnect_delay_sec': 0,
             'fast_io_fail_timeout_sec': 0},
            config.loss_settings(group.replica_ctrlr_loss_timeout_sec,
                                 group.reconnect_delay_sec,
                                 group.replica_fast_io_fail_timeout_sec))

    def test_no_loss_timeout_needs_no_other(self):
        group = helpers.make_conf(self, ctrlr_loss_timeout_sec=0,
                                  reconnect_delay_sec=7,
                                  fast_io_fail_timeout_sec=3)
        self.assertEqual([], config.loss_setting_problems(group))

    def test_what_spdk_refuses_is_named(self):
        cases = [
            (dict(fast_io_fail_timeout_sec=1, reconnect_delay_sec=2),
             ['fast_io_fail_timeout_sec = 1 is less than '
              'reconnect_delay_sec = 2']),
            (dict(ctrlr_loss_timeout_sec=5, fast_io_fail_timeout_sec=6),
             ['fast_io_fail_timeout_sec = 6 is more than '
              'ctrlr_loss_timeout_sec = 5']),
            (dict(replica_ctrlr_loss_timeout_sec=2, reconnect_delay_sec=3,
                  replica_fast_io_fail_timeout_sec=3),
             ['reconnect_delay_sec = 3 is more than '
              'replica_ctrlr_loss_timeout_sec = 2',
              'replica_fast_io_fail_timeout_sec = 3 is more than '
              'replica_ctrlr_loss_timeout_sec = 2']),
            (dict(replica_ctrlr_loss_timeout_sec=5), []),
        ]
        for options, problems in cases:
            group = helpers.make_conf(self, **options)
            self.assertEqual(problems, config.loss_setting_problems(group),
                             options)
