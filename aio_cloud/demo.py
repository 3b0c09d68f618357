"""The demo a user would run, with the real ``openstack`` client.

A volume of the SPDK vhost type; a server on the hugepage flavor booted
with it; the guest writes a pattern on the SPDK disk and prints the
checksum on its serial console, which ``openstack console log show``
reads; the volume is detached, attached to a second server, read back
there, and the checksums must match. Everything is deleted at the end,
also on failure. The guest runs the tempest plugin's console agent as its
user data, so the demo and the scenario tests check data the same way.
"""

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time

from aio_cloud import resources
from tempest_tests.tests import guest as guest_checks

PREFIX = 'spdk-aio-demo'
TIMEOUT = 300
# What the guest would report for a disk that was never written.
EMPTY_BLOCK_MD5 = hashlib.md5(bytes(4096)).hexdigest()


class DemoError(Exception):
    pass


class Client:
    """The ``openstack`` CLI of the cloud's venv, as the admin user."""

    def __init__(self, layout, venv):
        self.binary = os.path.join(venv, 'bin', 'openstack')
        self.env = dict(os.environ)
        with open(layout.adminrc) as f:
            for line in f:
                key, _sep, value = line[len('export '):].strip().partition(
                    '=')
                self.env[key] = value

    def __call__(self, *args, parse=True):
        argv = [self.binary] + list(args)
        if parse:
            argv += ['-f', 'json']
        result = subprocess.run(argv, env=self.env, capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise DemoError('openstack %s: %s' % (' '.join(args),
                                                  result.stderr.strip()))
        return json.loads(result.stdout) if parse else result.stdout

    def wait(self, kind, name, field, wanted, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            value = self(kind, 'show', name)[field]
            if value == wanted:
                return
            if value.lower().startswith('error') or (
                    time.monotonic() > deadline):
                raise DemoError('%s %s is %s, waiting for %s'
                                % (kind, name, value, wanted))
            time.sleep(2)

    def console_report(self, server, op, volume_id, timeout=TIMEOUT):
        """The value of the guest's latest ``SPDK-CHECK <op> <serial>``
        line, from ``openstack console log show``.
        """
        pattern = re.compile(r'^%s %s %s (\S+)\s*$' % (
            guest_checks.MARKER, op,
            re.escape(guest_checks.serial(volume_id))), re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            found = pattern.findall(self('console', 'log', 'show', server,
                                         parse=False))
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise DemoError('server %s printed no "%s %s" line in %ds'
                                % (server, guest_checks.MARKER, op, timeout))
            time.sleep(2)


def run(layout, venv):
    cli = Client(layout, venv)
    user_data = tempfile.NamedTemporaryFile('w', suffix='.sh', delete=False)
    with user_data:
        user_data.write(guest_checks.CONSOLE_AGENT)
    created = {'server': [], 'volume': []}
    steps = []

    def timed(name, action):
        start = time.monotonic()
        print('%-58s' % name, end=' ', flush=True)
        try:
            value = action()
        except Exception:
            print('FAILED after %.1f s' % (time.monotonic() - start),
                  flush=True)
            raise
        took = time.monotonic() - start
        steps.append((name, took))
        print('%6.1f s' % took, flush=True)
        return value

    def volume_create():
        volume = cli('volume', 'create', '--type', 'spdk-vhost', '--size',
                     '1', PREFIX + '-volume')['id']
        created['volume'].append(volume)
        return volume

    def server_create(name, *extra):
        # --wait would lose the id when the build fails.
        server = cli('server', 'create', '--flavor', resources.FLAVOR,
                     '--image', resources.GUEST_IMAGE, '--nic', 'none',
                     '--user-data', user_data.name, *extra, name)['id']
        created['server'].append(server)
        cli.wait('server', server, 'status', 'ACTIVE')
        return server

    passed = False
    try:
        volume = timed('volume create --type spdk-vhost --size 1',
                       volume_create)
        timed('  volume available', lambda: cli.wait(
            'volume', volume, 'status', 'available'))
        first = timed('server create (hugepage flavor) with the volume',
                      lambda: server_create(
                          PREFIX + '-1', '--block-device',
                          'uuid=%s,source_type=volume,destination_type=volume'
                          % volume))
        written = timed('  guest wrote the pattern: console log checksum',
                        lambda: cli.console_report(first, 'write', volume))
        timed('server remove volume', lambda: cli(
            'server', 'remove', 'volume', first, volume, parse=False))
        timed('  volume available', lambda: cli.wait(
            'volume', volume, 'status', 'available'))
        second = timed('server create (second server)',
                       lambda: server_create(PREFIX + '-2'))
        timed('server add volume (second server)', lambda: cli(
            'server', 'add', 'volume', second, volume, parse=False))
        timed('  volume in-use', lambda: cli.wait(
            'volume', volume, 'status', 'in-use'))
        read = timed('  guest read the disk back: console log checksum',
                     lambda: cli.console_report(second, 'read', volume))
        print('checksum written %s, read back %s' % (written, read))
        passed = written == read and written != EMPTY_BLOCK_MD5
    except DemoError as exc:
        print('demo: %s' % exc)
    finally:
        os.unlink(user_data.name)
        try:
            timed('delete the servers and the volume',
                  lambda: _delete(cli, created))
        except DemoError as exc:
            print('demo: clean-up: %s' % exc)
            passed = False
    total = sum(took for _name, took in steps)
    print('demo %s (%.1f s of steps)' % ('PASS' if passed else 'FAIL', total))
    return passed


def _delete(cli, created):
    """Delete what the demo made, each on its own, and say what failed."""
    failures = []
    if created['server']:
        try:
            cli('server', 'delete', '--wait', *created['server'],
                parse=False)
        except DemoError as exc:
            failures.append(str(exc))
    for volume in created['volume']:
        try:
            cli('volume', 'delete', volume, parse=False)
            deadline = time.monotonic() + TIMEOUT
            while any(v['ID'] == volume for v in cli('volume', 'list')):
                if time.monotonic() > deadline:
                    raise DemoError('volume %s not deleted' % volume)
                time.sleep(2)
        except DemoError as exc:
            failures.append(str(exc))
    if failures:
        raise DemoError('; '.join(failures))
