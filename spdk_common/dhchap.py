"""DH-HMAC-CHAP secrets, their key files and SPDK's keyring.

Both ends of an authenticated connection keep their secret the same way:
the storage target one key per (volume, host), named by
:func:`naming.host_key_name`; the compute agent one key per attached
volume, named by :func:`naming.agent_key_name`. A key is a file written
0600 into a directory only its service can read (SPDK's file keyring
refuses anything more open) and registered by name with
``keyring_file_add_key``, so it can be found again and re-registered after
SPDK restarts. The secret itself is handed out only in connection_info and
never logged.
"""

import base64
import os
import secrets
import zlib

from oslo_log import log as logging

from spdk_common import exception as spdk_exc
from spdk_common import files

LOG = logging.getLogger(__name__)

KEY_BYTES = 32


def make_secret():
    """A DH-HMAC-CHAP secret in the NVMe 'DHHC-1' representation.

    '00' means the key is used untransformed; the base64 part carries the
    key followed by its CRC-32 in little-endian order (NVMe Base Spec
    8.13.5.8, as nvme-cli's gen-dhchap-key writes it).
    """
    key = secrets.token_bytes(KEY_BYTES)
    crc = zlib.crc32(key).to_bytes(4, 'little')
    return 'DHHC-1:00:%s:' % base64.b64encode(key + crc).decode('ascii')


class KeyFiles:
    """Key files in one private directory and their keyring entries, by
    keyring name.
    """

    def __init__(self, client, directory):
        self._client = client
        self._dir = directory

    def setup(self):
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        os.chmod(self._dir, 0o700)

    def path(self, name):
        return os.path.join(self._dir, name)

    def write(self, name, secret):
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        files.write_atomically(self.path(name), secret, 0o600)

    def exists(self, name):
        return os.path.exists(self.path(name))

    def secret(self, name):
        with open(self.path(name)) as f:
            return f.read().strip()

    def load(self, name):
        """Make sure SPDK's keyring holds the key (it forgets on restart);
        False when it already did.
        """
        try:
            self._client.call('keyring_file_add_key',
                              {'name': name, 'path': self.path(name)})
        except spdk_exc.SPDKExists:
            return False
        return True

    def remove(self, name):
        """Take the key out of the keyring and delete its file; what is
        already gone is skipped.
        """
        try:
            self._client.call('keyring_file_remove_key', {'name': name})
        except spdk_exc.SPDKRPCError as exc:
            LOG.debug('Key %(name)s was not in SPDK\'s keyring: %(err)s',
                      {'name': name, 'err': exc})
        for path in (self.path(name), self.path(name) + files.TEMP_SUFFIX):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
