"""Image <-> volume copies done by SPDK itself.

A storage node may have no kernel NVMe initiator; SPDK can move the data:

* image -> volume: the downloaded raw image becomes an AIO bdev, an
  external-snapshot clone of it is made in the lvstore and decoupled (SPDK
  copies the image's clusters), then it replaces the volume's empty lvol.
* volume -> image: a clone of the volume's current data is inflated (so it
  no longer depends on any snapshot), made read-only and shallow-copied onto
  an AIO bdev over a file that is then uploaded.
"""

import os
import time

from oslo_log import log as logging
from oslo_utils import excutils

from cinder.image import image_utils
from cinder.volume import volume_utils

from spdk_common import exception as spdk_exc
from spdk_common import naming

LOG = logging.getLogger(__name__)

AIO_BLOCK_SIZE = 512
# Copies move whole images; a single RPC may take long.
COPY_TIMEOUT = 3600.0
SHALLOW_COPY_POLL = 0.5


def _round_up(value, step):
    return -(-value // step) * step


class _AioFile:
    """An AIO bdev over a file, removed on exit."""

    def __init__(self, client, name, path):
        self._client = client
        self.name = name
        self._path = path

    def __enter__(self):
        self._client.call('bdev_aio_create', {
            'name': self.name, 'filename': self._path,
            'block_size': AIO_BLOCK_SIZE})
        return self

    def __exit__(self, *exc_info):
        try:
            self._client.call('bdev_aio_delete', {'name': self.name})
        except spdk_exc.SPDKException as exc:
            LOG.error('Could not remove AIO bdev %(name)s: %(err)s',
                      {'name': self.name, 'err': exc})


class ImageCopier:
    """Copies between images and the lvols of one SPDK target.

    SPDK errors propagate (the driver turns them into Cinder's); whatever
    a failed copy made in SPDK is removed first.
    """

    def __init__(self, client, lvols):
        self._client = client
        self._lvols = lvols

    def image_to_volume(self, context, volume, lvstore, cluster_size,
                        image_service, image_id, blocksize):
        """Replace the volume's (new, empty) lvol by one with the image."""
        alias = naming.lvol_alias(lvstore, naming.volume_lvol_name(volume.id))
        temp_name = 'image-%s' % volume.id
        temp_alias = naming.lvol_alias(lvstore, temp_name)
        with image_utils.temporary_file(prefix='spdk-image-') as path:
            image_utils.fetch_to_raw(context, image_service, image_id, path,
                                     blocksize, size=volume.size)
            # An external snapshot is read in whole clusters.
            os.truncate(path, _round_up(os.path.getsize(path), cluster_size))
            with _AioFile(self._client, 'image-file-%s' % volume.id,
                          path) as aio:
                self._client.call('bdev_lvol_clone_bdev', {
                    'bdev': aio.name, 'lvs_name': lvstore,
                    'clone_name': temp_name})
                try:
                    self._client.call('bdev_lvol_decouple_parent',
                                      {'name': temp_alias},
                                      timeout=COPY_TIMEOUT)
                except spdk_exc.SPDKException:
                    with excutils.save_and_reraise_exception():
                        self._lvols.discard(temp_alias)
        try:
            self._lvols.resize(temp_alias, volume.size)
        except spdk_exc.SPDKException:
            with excutils.save_and_reraise_exception():
                self._lvols.discard(temp_alias)
        self._lvols.delete(alias)
        self._lvols.rename(temp_alias, naming.volume_lvol_name(volume.id))
        LOG.info('Copied image %(image)s to volume %(id)s with SPDK',
                 {'image': image_id, 'id': volume.id})

    def volume_to_image(self, context, volume, lvstore, image_service,
                        image_meta):
        alias = naming.lvol_alias(lvstore, naming.volume_lvol_name(volume.id))
        temp_name = 'upload-%s' % volume.id
        temp_alias = naming.lvol_alias(lvstore, temp_name)
        self._lvols.clone_volume(
            alias, naming.hidden_lvol_name('upload-source-%s' % volume.id),
            temp_name, volume.size)
        try:
            with image_utils.temporary_file(prefix='spdk-upload-') as path:
                os.truncate(path, volume.size * 1024 ** 3)
                self._client.call('bdev_lvol_inflate', {'name': temp_alias},
                                  timeout=COPY_TIMEOUT)
                self._client.call('bdev_lvol_set_read_only',
                                  {'name': temp_alias})
                with _AioFile(self._client, 'upload-file-%s' % volume.id,
                              path) as aio:
                    _shallow_copy(self._client, temp_alias, aio.name)
                volume_utils.upload_volume(context, image_service,
                                           image_meta, path, volume)
        finally:
            # The temporary clone goes either way, and with it the hidden
            # snapshot behind it.
            self._lvols.discard(temp_alias)
        LOG.info('Uploaded volume %(id)s to image %(image)s with SPDK',
                 {'id': volume.id, 'image': image_meta.get('id')})


def _shallow_copy(client, lvol, bdev):
    operation = client.call('bdev_lvol_start_shallow_copy', {
        'src_lvol_name': lvol, 'dst_bdev_name': bdev})
    deadline = time.monotonic() + COPY_TIMEOUT
    while time.monotonic() < deadline:
        status = client.call('bdev_lvol_check_shallow_copy',
                             {'operation_id': operation['operation_id']})
        if status['state'] == 'complete':
            return
        if status['state'] == 'error':
            raise spdk_exc.SPDKRPCError(method='bdev_lvol_shallow_copy',
                                        code=None, error=status.get('error'))
        time.sleep(SHALLOW_COPY_POLL)
    raise spdk_exc.SPDKTimeout(socket=client.socket_path,
                               method='bdev_lvol_shallow_copy',
                               timeout=COPY_TIMEOUT)
