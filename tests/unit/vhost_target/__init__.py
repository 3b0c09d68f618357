"""Unit tests of the compute-node agent; helpers shared by its tests."""

import os
import subprocess
import sys
import time

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


def fake_spdk_command(rpc_socket, seconds=60):
    """A process that stands for SPDK vhost: the privsep daemon signals
    only a process whose command line is SPDK vhost's for that RPC socket
    (privileged.spdk.stop_vhost).
    """
    return [sys.executable, '-c', 'import time; time.sleep(%d)' % seconds,
            '--no-pci', '-r', rpc_socket]


def spawn_fake_spdk(rpc_socket, seconds=60):
    """Start fake_spdk_command; return the Popen once the process has
    exec'd (until then its command line is its parent's).
    """
    proc = subprocess.Popen(fake_spdk_command(rpc_socket, seconds))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open('/proc/%d/cmdline' % proc.pid, 'rb') as f:
                if b'--no-pci' in f.read().split(b'\0'):
                    return proc
        except FileNotFoundError:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise AssertionError('the fake SPDK did not start')


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
