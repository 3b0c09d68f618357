"""The one base TestCase of the project's tests."""

from oslotest import base


class TestCase(base.BaseTestCase):
    """oslotest's base: fixtures cleaned up even on failure, timeouts,
    captured logging.
    """
