"""The agent's desired state: what should be attached, kept on disk.

SPDK forgets every controller when it stops; this file is what the agent
replays into a restarted SPDK (and what a restarted agent starts from). It
holds DH-HMAC-CHAP secrets, so it is 0600 in a 0700 directory, and every
write is atomic (temporary file, fsync, rename) so that a crash never
leaves half a file.
"""

import dataclasses
import json
import os
import threading

from spdk_common import files
from spdk_common import naming

FORMAT_VERSION = 1


@dataclasses.dataclass
class Attachment:
    volume_id: str
    target_nqn: str
    portals: list
    host_nqn: str
    cpu: int
    numa_nodes: list = dataclasses.field(default_factory=list)
    dhchap_secret: str = None
    qos: dict = None
    # A replicated volume: [(target NQN, portals)] per copy, mirrored by
    # SPDK raid1; target_nqn and portals are None then.
    replicas: list = None

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        if data.get('portals') is not None:
            data['portals'] = [tuple(p) for p in data['portals']]
        if data.get('replicas') is not None:
            data['replicas'] = [(nqn, [tuple(p) for p in portals])
                                for nqn, portals in data['replicas']]
        return cls(**data)

    def targets(self):
        """(NVMe controller name, target NQN, portals) of every copy."""
        if self.replicas is None:
            return [(naming.nvme_controller_name(self.volume_id),
                     self.target_nqn, self.portals)]
        return [(naming.replica_controller_name(self.volume_id, i), nqn,
                 portals) for i, (nqn, portals) in enumerate(self.replicas)]


class DesiredState:
    def __init__(self, directory):
        self._dir = directory
        self._path = os.path.join(directory, 'attachments.json')
        self._lock = threading.Lock()
        self._attachments = {}

    def load(self):
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        os.chmod(self._dir, 0o700)
        try:
            with open(self._path) as f:
                data = json.load(f)
        except FileNotFoundError:
            data = {'version': FORMAT_VERSION, 'attachments': []}
        with self._lock:
            self._attachments = {
                a['volume_id']: Attachment.from_dict(a)
                for a in data['attachments']}
        return self.all()

    def all(self):
        with self._lock:
            return list(self._attachments.values())

    def get(self, volume_id):
        with self._lock:
            return self._attachments.get(volume_id)

    def put(self, attachment):
        with self._lock:
            self._attachments[attachment.volume_id] = attachment
            self._write()

    def remove(self, volume_id):
        with self._lock:
            if self._attachments.pop(volume_id, None) is not None:
                self._write()

    def _write(self):
        data = {'version': FORMAT_VERSION,
                'attachments': [a.to_dict() for a in
                                self._attachments.values()]}
        files.write_atomically(self._path, json.dumps(data), 0o600)
