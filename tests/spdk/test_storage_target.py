"""SPDK tier: nvmf_tgt started with the startup config the deployment
writes (``spdk-openstack-config storage-target-config``) holds more exports
than SPDK's default 1024 subsystems, before and after a restart, and still
comes up without the NVMe-oF transport (the driver's sign of a restart).
"""

import concurrent.futures

from spdk_common import exception as spdk_exc
from spdk_deploy import storage
from tests import base
from tests.fixtures import spdk as spdk_fixtures
from tests.fixtures import storage_target

# Past SPDK's own limit (1024 with the discovery subsystem), not far.
SUBSYSTEMS = 1100
MAX_SUBSYSTEMS = 1200


class TestDeployedStorageTarget(base.TestCase):

    def setUp(self):
        super().setUp()
        if not spdk_fixtures.spdk_available():
            self.skipTest(spdk_fixtures.SKIP_MESSAGE)
        self.target = self.useFixture(storage_target.DeployedTarget(
            max_subsystems=MAX_SUBSYSTEMS, interrupt=True))

    def nvmf_config(self):
        return {entry['method']: entry['params'] for entry in
                self.target.client.call('framework_get_config',
                                        {'name': 'nvmf'})}

    def create_subsystems(self, count):
        def one(i):
            self.target.client.call('nvmf_create_subsystem', {
                'nqn': 'nqn.2016-06.io.spdk:scale-%05d' % i,
                'allow_any_host': False, 'max_namespaces': 1})
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(count)))

    def check_target(self):
        self.assertEqual({'max_subsystems': MAX_SUBSYSTEMS},
                         self.nvmf_config()['nvmf_set_max_subsystems'])
        self.assertEqual([], self.target.client.call('nvmf_get_transports'))
        self.create_subsystems(SUBSYSTEMS)
        listing = self.target.client.call('nvmf_get_subsystems')
        # The discovery subsystem is one of them.
        self.assertEqual(SUBSYSTEMS + 1, len(listing))

    def test_room_beyond_spdks_default_before_and_after_a_restart(self):
        self.check_target()
        self.target.restart()
        self.check_target()

    def test_the_limit_is_the_configured_one(self):
        free = MAX_SUBSYSTEMS - storage.SPDK_OWN_SUBSYSTEMS
        self.create_subsystems(free)
        self.assertRaises(spdk_exc.SPDKRPCError,
                          self.target.client.call, 'nvmf_create_subsystem',
                          {'nqn': 'nqn.2016-06.io.spdk:one-too-many'})
