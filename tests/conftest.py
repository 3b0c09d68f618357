"""What pytest collects: the SPDK tier only with real SPDK (otherwise one
line says it is left out), the Nova-side tests only in their own process."""

import os

import pytest

from tests.fixtures import hugepages
from tests.fixtures import privsep
from tests.fixtures import spdk as spdk_fixtures


def _needs_real_spdk(item):
    if not item.nodeid.startswith('tests/spdk/'):
        return False
    # Contract tests run against the double too; only their real side
    # needs SPDK.
    return '[fake]' not in item.nodeid


def pytest_collection_modifyitems(config, items):
    if spdk_fixtures.spdk_available():
        return
    left_out = [item for item in items if _needs_real_spdk(item)]
    if not left_out:
        return
    items[:] = [item for item in items if not _needs_real_spdk(item)]
    config.hook.pytest_deselected(items=left_out)
    config._spdk_left_out = len(left_out)


@pytest.fixture(autouse=True)
def privsep_daemon():
    """The agent's privsep daemon, forked once per process (the tests run
    as root): what constructs a VhostTarget or a Supervisor, or runs the
    agent in-process, reaches it as the agent does.
    """
    privsep.start()
    yield


def pytest_unconfigure(config):
    # What the fixtures added to the host's hugepages goes back, also
    # after failures and ^C.
    hugepages.give_back()
    privsep.stop()


def pytest_terminal_summary(terminalreporter, config):
    count = getattr(config, '_spdk_left_out', 0)
    if count:
        terminalreporter.write_line(
            '%s (%d tests)' % (spdk_fixtures.SKIP_MESSAGE, count))


# Nova and Cinder register clashing options (default_availability_zone) on
# the one global oslo.config object, as they never share a process in a
# cloud. The Nova-side tests therefore run in a pytest process of their own
# (tools/run-tests does it); elsewhere they are not collected.
NOVA_SIDE = ('unit/nova_hooks', 'functional/nova_hooks')
if os.environ.get('SPDK_OPENSTACK_NOVA_TESTS') != '1':
    collect_ignore = list(NOVA_SIDE)
