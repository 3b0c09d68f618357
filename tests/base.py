"""The one base TestCase of the project's tests."""

import time

from oslotest import base


class TestCase(base.BaseTestCase):
    """oslotest's base: fixtures cleaned up even on failure, timeouts,
    captured logging.
    """


def wait_until(condition, timeout=10, what=None):
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds,
    naming ``what`` did not happen.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %ss waiting for %s'
                                 % (timeout, what or condition))
        time.sleep(0.02)
