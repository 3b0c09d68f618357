"""Unit tests of the agent's privsep entrypoints; the shared bases."""

import fixtures
from oslo_privsep.test import fixture as privsep_fixture

from tests import base
from tests.fixtures import privsep
from vhost_target import privileged

VOLUME = '0f8d1f6a-3c1e-4a8e-9a55-6f2b2a1e0c11'


class InProcessTestCase(base.TestCase):
    """The entrypoints run in the test's process (root), as os-brick's
    tests run theirs: the real effect on files under a root-owned
    temporary directory.
    """

    def setUp(self):
        super().setUp()
        privileged.default.set_client_mode(False)
        self.addCleanup(privileged.default.set_client_mode, True)
        self.dir = self.useFixture(fixtures.TempDir()).path


class UnprivilegedDaemonTestCase(base.TestCase):
    """The entrypoints run in a privsep daemon of their own that keeps no
    capability (oslo.privsep's UnprivilegedPrivsepFixture): what they
    refuse, they refuse in the daemon, and the refusal reaches the caller
    as the same exception.
    """

    def setUp(self):
        super().setUp()
        # The process' shared daemon makes way, and comes back after.
        self.useFixture(privsep.StoppedPrivsepDaemon())
        self.useFixture(privsep_fixture.UnprivilegedPrivsepFixture(
            privileged.default, {}))
        self.dir = self.useFixture(fixtures.TempDir()).path
