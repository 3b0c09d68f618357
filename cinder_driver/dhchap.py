"""DH-HMAC-CHAP host keys, one per (volume, host), kept in SPDK's keyring.

Keys are written 0600 into a directory only the storage services can read
(SPDK's file keyring refuses anything more open), registered with
``keyring_file_add_key`` and named by :func:`naming.host_key_name`, so they
can be found again and re-registered after SPDK restarts. The secret itself
is handed out only in connection_info and never logged.
"""

import base64
import os
import secrets
import zlib

from oslo_log import log as logging

from spdk_common import exception as spdk_exc
from spdk_common import files
from spdk_common import naming

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


class HostKeys:
    def __init__(self, client, directory):
        self._client = client
        self._dir = directory

    def setup(self):
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        os.chmod(self._dir, 0o700)

    def _path(self, name):
        return os.path.join(self._dir, name)

    def create(self, subsystem_nqn, host_nqn):
        """Write a new key file; return (key name, secret)."""
        name = naming.host_key_name(subsystem_nqn, host_nqn)
        secret = make_secret()
        path = self._path(name)
        files.write_atomically(path, secret, 0o600)
        return name, secret

    def existing(self, subsystem_nqn, host_nqn):
        name = naming.host_key_name(subsystem_nqn, host_nqn)
        return name if os.path.exists(self._path(name)) else None

    def secret(self, name):
        with open(self._path(name)) as f:
            return f.read().strip()

    def load(self, name):
        """Make sure SPDK's keyring holds the key (it forgets on restart)."""
        try:
            self._client.call('keyring_file_add_key',
                              {'name': name, 'path': self._path(name)})
        except spdk_exc.SPDKRPCError:
            loaded = {k.get('name') for k in
                      self._client.call('keyring_get_keys')}
            if name not in loaded:
                raise

    def remove(self, name):
        try:
            self._client.call('keyring_file_remove_key', {'name': name})
        except spdk_exc.SPDKRPCError as exc:
            LOG.debug('Key %(name)s was not in SPDK\'s keyring: %(err)s',
                      {'name': name, 'err': exc})
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
