"""The SPDK tier needs real SPDK binaries; without them it is left out
with one line instead of one skip per test."""

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


def pytest_terminal_summary(terminalreporter, config):
    count = getattr(config, '_spdk_left_out', 0)
    if count:
        terminalreporter.write_line(
            '%s (%d tests)' % (spdk_fixtures.SKIP_MESSAGE, count))
