"""The demo a user would run, with the real ``openstack`` client.

A volume of the SPDK vhost type; a server on the hugepage flavor booted
with it; the guest writes a pattern on the SPDK disk and prints the
checksum on its serial console, which ``openstack console log show``
reads; the volume is detached and uploaded to glance as an image
(``openstack image create --volume``), a new volume is made from that
image; both volumes are attached to a second server and read back there,
and the three checksums must match. The new volume's allocated clusters
(``bdev_lvol_get_lvols`` on the storage SPDK) are printed, not checked.
Everything is deleted at the end, also on failure. The guest runs the
tempest plugin's console agent as its user data, so the demo and the
scenario tests check data the same way.

Before anything is created, and again before each server, the compute
node (this host) must have free hugepages for the flavor's RAM: the demo
refuses with one line otherwise, instead of a guest in ERROR.
"""

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time

from spdk_common import naming
from spdk_common import rpc
from tempest_tests.tests import guest as guest_checks
from tools.aio_cloud import capacity
from tools.aio_cloud import layout as layout_mod
from tools.aio_cloud import resources

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


class Steps:
    """Runs the demo's steps, printing each one's name and time."""

    def __init__(self):
        self.taken = []

    def __call__(self, name, action):
        start = time.monotonic()
        print('%-58s' % name, end=' ', flush=True)
        try:
            value = action()
        except Exception:
            print('FAILED after %.1f s' % (time.monotonic() - start),
                  flush=True)
            raise
        took = time.monotonic() - start
        self.taken.append((name, took))
        print('%6.1f s' % took, flush=True)
        return value

    def verdict(self, passed):
        """Print the demo's last line; ``passed`` back."""
        print('demo %s (%.1f s of steps)' % (
            'PASS' if passed else 'FAIL',
            sum(took for _name, took in self.taken)))
        return passed


def guest_ram_mib(cli):
    """The hugepage RAM a guest of the demo's flavor needs (0 without
    ``hw:mem_page_size``).
    """
    flavor = cli('flavor', 'show', resources.FLAVOR)
    # A dict, or "k='v', ..." from older clients: "in" answers for both.
    large = 'hw:mem_page_size' in (flavor.get('properties') or {})
    return int(flavor['ram']) if large else 0


def lvol_clusters(layout, volume_id):
    """(allocated, total) clusters of a volume's lvol, from the storage
    SPDK that has it.
    """
    name = naming.volume_lvol_name(volume_id)
    for node in layout_mod.storage_nodes(layout):
        client = rpc.SPDKClient(node.rpc_socket)
        try:
            lvol = next((lv for lv in client.call('bdev_lvol_get_lvols')
                         if lv['name'] == name), None)
            if lvol is None:
                continue
            bdev = client.call('bdev_get_bdevs', {'name': lvol['uuid']})[0]
            store = next(lvs for lvs in client.call('bdev_lvol_get_lvstores')
                         if lvs['uuid'] == lvol['lvs']['uuid'])
            break
        finally:
            client.close()
    else:
        raise DemoError('no storage node has the lvol of volume %s'
                        % volume_id)
    total = bdev['num_blocks'] * bdev['block_size'] // store['cluster_size']
    allocated = lvol.get('num_allocated_clusters')
    if allocated is None:
        allocated = bdev['driver_specific']['lvol'].get(
            'num_allocated_clusters')
    return allocated, total


def run(layout, venv):
    cli = Client(layout, venv)
    ram = guest_ram_mib(cli)
    # Both servers run at once, and spdk_dd copies the image to a volume
    # while the first runs; refuse before anything is made.
    capacity.check_guests(layout_mod.MAX_GUESTS, ram, 'the demo\'s %d '
                          'servers (flavor %s)' % (layout_mod.MAX_GUESTS,
                                                   resources.FLAVOR),
                          image_copy=True)
    user_data = tempfile.NamedTemporaryFile('w', suffix='.sh', delete=False)
    with user_data:
        user_data.write(guest_checks.CONSOLE_AGENT)
    created = {'server': [], 'volume': [], 'image': []}
    timed = Steps()

    def volume_create(name, *extra):
        volume = cli('volume', 'create', '--type', 'spdk-vhost', '--size',
                     '1', *extra, name)['id']
        created['volume'].append(volume)
        return volume

    def image_create(volume):
        image = cli('image', 'create', '--volume', volume,
                    '--disk-format', 'raw', '--container-format', 'bare',
                    PREFIX + '-image')['image_id']
        created['image'].append(image)
        return image

    def server_create(name, *extra):
        # This host is the compute node: room for the guest's RAM now.
        capacity.check_guests(1, ram, 'server %s (flavor %s)'
                              % (name, resources.FLAVOR))
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
                       lambda: volume_create(PREFIX + '-volume'))
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
        image = timed('image create --volume (volume -> image)',
                      lambda: image_create(volume))
        timed('  image active', lambda: cli.wait(
            'image', image, 'status', 'active'))
        timed('  volume available', lambda: cli.wait(
            'volume', volume, 'status', 'available'))
        copy = timed('volume create --image (image -> volume)',
                     lambda: volume_create(PREFIX + '-from-image',
                                           '--image', image))
        timed('  volume available', lambda: cli.wait(
            'volume', copy, 'status', 'available'))
        allocated, clusters = lvol_clusters(layout, copy)
        print('  volume from the image: %s of %d clusters allocated'
              % (allocated, clusters))
        second = timed('server create (second server)',
                       lambda: server_create(PREFIX + '-2'))
        read = {}
        for name, vol in (('the volume', volume),
                          ('the volume from the image', copy)):
            timed('server add volume: %s' % name, lambda: cli(
                'server', 'add', 'volume', second, vol, parse=False))
            timed('  volume in-use', lambda: cli.wait(
                'volume', vol, 'status', 'in-use'))
            read[vol] = timed(
                '  guest read it back: console log checksum',
                lambda: cli.console_report(second, 'read', vol))
        print('checksum written %s, read back %s, from the image %s'
              % (written, read[volume], read[copy]))
        passed = (written == read[volume] == read[copy] and
                  written != EMPTY_BLOCK_MD5)
    except DemoError as exc:
        print('demo: %s' % exc)
    finally:
        os.unlink(user_data.name)
        try:
            timed('delete the servers, volumes and image',
                  lambda: delete(cli, created))
        except DemoError as exc:
            print('demo: clean-up: %s' % exc)
            passed = False
    return timed.verdict(passed)


def delete(cli, created):
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
    for image in created['image']:
        try:
            cli('image', 'delete', image, parse=False)
        except DemoError as exc:
            failures.append(str(exc))
    if failures:
        raise DemoError('; '.join(failures))
