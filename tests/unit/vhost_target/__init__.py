"""Unit tests of the compute-node agent; helpers shared by its tests."""

import os

from oslo_config import cfg
from oslo_config import fixture as config_fixture

from vhost_target import config
from vhost_target import topology

SYSFS = os.path.join(os.path.dirname(__file__), 'sysfs')


def read_fixture_topology(name):
    """Topology of one captured tree under ``sysfs/``."""
    return topology.read_topology(os.path.join(SYSFS, name))


def make_conf(test, **overrides):
    """The ``[spdk_vhost_target]`` group of a fresh ConfigOpts."""
    conf = config.register(cfg.ConfigOpts())
    test.useFixture(config_fixture.Config(conf)).config(
        group=config.GROUP, **overrides)
    return getattr(conf, config.GROUP)


def write_tree(root, files):
    """Write {relative path: content} under root, sysfs style (a newline
    after each value), for cases no captured tree shows.
    """
    for path, text in files.items():
        path = os.path.join(root, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text + '\n')
    return root
