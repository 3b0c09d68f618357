"""What a guest sees on its disks, read over SSH or from its console log.

Both checkers speak about one volume at a time, found in the guest by its
serial (``/dev/disk/by-id/virtio-<first 20 characters of the volume
id>``), and offer the same three operations: ``write`` a pattern derived
from the volume id and return its checksum, ``read`` the checksum of what
is there (``since`` a ``mark()``: read after that point, as after a
migration), ``size`` in bytes.

:class:`SSHGuest` runs the commands over SSH (``[validation]
run_validation``). :class:`ConsoleGuest` needs no network: the guest runs
:data:`CONSOLE_AGENT` from user data, which writes the pattern on a disk
that has none, and prints one ``SPDK-CHECK <op> <serial> <value>`` line
per disk and change to the console; the checker waits for those lines in
``get_console_output``.
"""

import re
import time

from tempest.lib.common.utils.linux import remote_client
from tempest.lib import exceptions

MAGIC = 'SPDK-OPENSTACK'
MARKER = 'SPDK-CHECK'
_DEVICE = '/dev/disk/by-id/virtio-%s'
# One 4 KiB block: the magic, the volume id, then padding.
_PATTERN = ("{ printf '%s %%s\\n' %s; head -c 4000 /dev/zero | tr '\\\\0' x; }"
            % (MAGIC, '"$serial"'))
_CHECKSUM = 'head -c 4096 "$dev" | md5sum | cut -d" " -f1'

CONSOLE_AGENT = '''#!/bin/sh
# spdk-openstack tempest console agent: reports every virtio disk.
seen=""
rounds=0
while true; do
    # Every 10th round reports every disk again: a migrated guest's new
    # console log starts empty.
    rounds=$((rounds + 1))
    [ $((rounds %% 10)) -eq 0 ] && seen=""
    for link in /dev/disk/by-id/virtio-*; do
        dev=$(readlink -f "$link")
        # Only block devices: a link left by a detached disk must not make
        # dd create a file in /dev. Disks with partitions are images (a
        # boot volume) whose first block is theirs.
        [ -b "$dev" ] || continue
        name=${dev##*/}
        [ -n "$(ls -d /sys/block/$name/$name* 2>/dev/null)" ] && continue
        serial=${link##*/virtio-}
        # The link may be older than the disk now at its target (kernels
        # without the serial attribute cannot tell).
        actual=$(cat /sys/block/$name/serial 2>/dev/null)
        [ -z "$actual" ] || [ "$actual" = "$serial" ] || continue
        if ! head -c %(magic_len)d "$dev" | grep -q %(magic)s; then
            %(pattern)s | dd of="$dev" bs=4096 count=1 conv=fsync 2>/dev/null
            echo "%(marker)s write $serial $(%(checksum)s)" > /dev/console
        fi
        state="$serial:$(blockdev --getsize64 "$dev"):$(%(checksum)s)"
        case " $seen " in *" $state "*) continue ;; esac
        seen="$seen $state"
        echo "%(marker)s read $serial $(%(checksum)s)" > /dev/console
        echo "%(marker)s size $serial $(blockdev --getsize64 "$dev")" \\
            > /dev/console
    done
    sleep 2
done
''' % {'magic': MAGIC, 'magic_len': len(MAGIC), 'marker': MARKER,
       'pattern': _PATTERN, 'checksum': _CHECKSUM}


def serial(volume_id):
    """The virtio serial a guest sees: Nova passes the volume id, virtio
    keeps 20 characters.
    """
    return volume_id[:20]


class SSHGuest:
    """Commands over SSH through tempest.lib's RemoteClient."""

    def __init__(self, ip_address, username, password, server,
                 servers_client, timeout, interval=3):
        self.timeout = timeout
        self.interval = interval
        self.client = remote_client.RemoteClient(
            ip_address, username, password=password, server=server,
            servers_client=servers_client)

    def _run(self, volume_id, script):
        command = 'serial=%s; dev=%s; %s' % (
            serial(volume_id), _DEVICE % serial(volume_id), script)
        return self.client.exec_command('sudo sh -c %s' % _quote(command))

    def write(self, volume_id):
        return self._run(volume_id, '%s | dd of="$dev" bs=4096 count=1 '
                                    'conv=fsync 2>/dev/null; %s'
                         % (_PATTERN, _CHECKSUM)).strip()

    def mark(self):
        """Nothing: every read over SSH is fresh."""
        return None

    def read(self, volume_id, since=None):
        return self._run(volume_id, _CHECKSUM).strip()

    def size(self, volume_id, at_least=0):
        """The size, once it is at least ``at_least`` bytes."""
        deadline = time.monotonic() + self.timeout
        while True:
            size = int(self._run(volume_id, 'blockdev --getsize64 "$dev"'))
            if size >= at_least or time.monotonic() >= deadline:
                return size
            time.sleep(self.interval)


class ConsoleGuest:
    """Markers printed by :data:`CONSOLE_AGENT`, read from the console log.

    A disk without the pattern gets it written by the agent as soon as it
    appears, so ``write`` only waits for that report; ``read`` and ``size``
    return the latest report for the disk.
    """

    def __init__(self, server_id, servers_client, timeout, interval=3):
        self.server_id = server_id
        self.servers_client = servers_client
        self.timeout = timeout
        self.interval = interval

    def mark(self):
        """Where the console log is now: ``read(since=mark)`` takes only
        reports printed after it.
        """
        return self.servers_client.get_console_output(
            self.server_id)['output']

    def _reports(self, op, volume_id, since=None):
        output = self.mark()
        if since and output.startswith(since):
            output = output[len(since):]
        pattern = re.compile(r'^%s %s %s (\S+)\s*$'
                             % (MARKER, op, re.escape(serial(volume_id))),
                             re.MULTILINE)
        return pattern.findall(output)

    def _wait(self, op, volume_id, accept=lambda value: True, since=None):
        deadline = time.monotonic() + self.timeout
        while True:
            values = [v for v in self._reports(op, volume_id, since)
                      if accept(v)]
            if values:
                return values[-1]
            if time.monotonic() >= deadline:
                raise exceptions.TimeoutException(
                    'Server %s printed no "%s %s %s" line within %ss'
                    % (self.server_id, MARKER, op, serial(volume_id),
                       self.timeout))
            time.sleep(self.interval)

    def write(self, volume_id):
        return self._wait('write', volume_id)

    def read(self, volume_id, since=None):
        return self._wait('read', volume_id, since=since)

    def size(self, volume_id, at_least=0):
        return int(self._wait('size', volume_id,
                              lambda value: int(value) >= at_least))


def _quote(text):
    return "'%s'" % text.replace("'", "'\"'\"'")
