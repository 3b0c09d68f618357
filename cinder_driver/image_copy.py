"""Image <-> volume copies done by SPDK itself.

A storage node may have no kernel NVMe initiator; SPDK can move the data:

* image -> volume: a new lvol of the volume's type (thin or thick) is
  exported for a moment to a one-off host NQN, and SPDK's ``spdk_dd``
  writes the downloaded raw image into it over NVMe/TCP on the target's own
  address; the lvol then replaces the volume's empty one. For a thin lvol
  the clusters the image's data falls in are made whole in the file
  (zeros written into their holes) and ``--sparse`` skips the rest, so the
  volume gets clusters only where the image has data; a thick lvol gets
  the whole image, zeros included (its clusters hold old bytes). Why not
  an external-snapshot clone of an AIO bdev over the image and
  ``bdev_lvol_decouple_parent``, which needs no second process: the
  blobstore copies *every* cluster of an external snapshot, zeros and
  holes included (lib/blob/blobstore.c ``bs_cluster_needs_allocation``),
  so a thin volume from a small image of a large virtual size came out
  fully allocated.
* volume -> image: a clone of the volume's current data is inflated (so it
  no longer depends on any snapshot), made read-only and shallow-copied onto
  an AIO bdev over a file that is then uploaded.
"""

import errno
import json
import os
import uuid

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils

from cinder import exception
from cinder.i18n import _
from cinder.image import image_utils
from cinder.volume import volume_utils

from spdk_common import binaries
from spdk_common import exception as spdk_exc
from spdk_common import memory
from spdk_common import naming

LOG = logging.getLogger(__name__)

AIO_BLOCK_SIZE = 512
# Copies move whole images or volumes; a single RPC may take long.
COPY_TIMEOUT = 3600.0
SHALLOW_COPY_POLL = 0.5
SPDK_DD = 'spdk_dd'
DD_BLOCK = 1024 * 1024
# The NVMe bdev spdk_dd opens: controller "image", namespace 1.
DD_CONTROLLER = 'image'


def _round_up(value, step):
    return -(-value // step) * step


class AioFile:
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


def data_extents(path):
    """The (start, end) byte ranges of a file that hold data, in order."""
    extents = []
    with open(path, 'rb') as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:    # only a hole is left
                    break
                raise
            pos = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, pos))
    return extents


def clusters_touched(extents, cluster_size):
    """How many clusters of that size the extents (sorted) fall into."""
    count, last = 0, -1
    for start, end in extents:
        first = max(start // cluster_size, last + 1)
        final = (end - 1) // cluster_size
        if final >= first:
            count += final - first + 1
            last = final
    return count


def fill_touched_clusters(path, extents, cluster_size):
    """Write zeros into the holes of every cluster the data falls in.

    SPDK gives a thin lvol a cluster at its first write without zeroing
    the rest of it (lib/blob/blobstore.c ``bs_allocate_and_copy_cluster``
    copies only from a parent), so a hole next to data in the same cluster
    would read what the cluster last held. Filled, every cluster spdk_dd
    writes is written whole; the holes left are whole clusters, which stay
    unallocated and read zeros. The file may grow to its last cluster's
    end (within the lvol, whose size is whole clusters).
    """
    runs = []
    for start, end in extents:
        first, last = start // cluster_size, (end - 1) // cluster_size
        if runs and first <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], last)
        else:
            runs.append([first, last])
    with open(path, 'r+b') as f:
        fd = f.fileno()

        def zero(start, end):
            while start < end:
                count = min(end - start, DD_BLOCK)
                os.pwrite(fd, bytes(count), start)
                start += count

        index = 0
        for first, last in runs:
            pos, run_end = first * cluster_size, (last + 1) * cluster_size
            while index < len(extents) and extents[index][0] < run_end:
                start, end = extents[index]
                if start > pos:
                    zero(pos, start)
                pos = max(pos, end)
                index += 1
            zero(pos, run_end)


class ImageCopier:
    """Copies between images and the lvols of one SPDK target.

    SPDK errors propagate (the driver turns them into Cinder's); whatever
    a failed copy made in SPDK is removed first.
    """

    def __init__(self, client, lvols, exports, cpumask='0x1', mem_mib=128):
        self._client = client
        self._lvols = lvols
        self._exports = exports
        self._cpumask = cpumask
        self._mem_mib = mem_mib

    def image_to_volume(self, context, volume, lvstore, thin, image_service,
                        image_id, blocksize):
        """Replace the volume's (new, empty) lvol by one with the image."""
        dd = binaries.find(SPDK_DD)
        if dd is None:
            # Before anything is downloaded or made.
            raise exception.VolumeBackendAPIException(data=_(
                '%s; spdk_image_copy=spdk writes images into volumes with '
                'it') % binaries.missing_message((SPDK_DD,)))
        alias = naming.lvol_alias(lvstore, naming.volume_lvol_name(volume.id))
        temp_name = 'image-%s' % volume.id
        temp_alias = naming.lvol_alias(lvstore, temp_name)
        with image_utils.temporary_file(prefix='spdk-image-') as path:
            image_utils.fetch_to_raw(context, image_service, image_id, path,
                                     blocksize, size=volume.size)
            size = os.path.getsize(path)
            if size > volume.size * 1024 ** 3:
                raise exception.ImageUnacceptable(image_id=image_id, reason=_(
                    'its raw size %(size)d bytes is more than volume %(id)s '
                    'holds (%(gb)d GiB)') % {'size': size, 'id': volume.id,
                                             'gb': volume.size})
            # Whole blocks of the lvol (a hole at the end costs nothing).
            os.truncate(path, _round_up(size, AIO_BLOCK_SIZE))
            extents = data_extents(path)
            needed = self._check_room(lvstore, thin, extents, volume,
                                      image_id, path)
            self._create_temp(lvstore, temp_name, volume, thin)
            try:
                # A thick lvol's clusters are all its own from the start,
                # with whatever they held: holes are written as zeros.
                if extents or not thin:
                    self._write(dd, path, temp_alias, volume.id,
                                sparse=thin)
                if thin:
                    self._check_written(temp_alias, needed)
            except Exception:
                with excutils.save_and_reraise_exception():
                    self._lvols.discard(temp_alias)
        self._lvols.delete(alias)
        self._lvols.rename(temp_alias, naming.volume_lvol_name(volume.id))
        LOG.info('Copied image %(image)s to volume %(id)s with SPDK '
                 '(%(extents)d data extent(s), %(bytes)d bytes)',
                 {'image': image_id, 'id': volume.id,
                  'extents': len(extents),
                  'bytes': sum(end - start for start, end in extents)})

    def _check_room(self, lvstore, thin, extents, volume, image_id, path):
        """Refuse a thin copy whose data clusters are not free now, and
        make those clusters whole in the file (fill_touched_clusters).

        One RPC: the lvstore's figures at this moment (guests take
        clusters between stats refreshes). A thick lvol needs no look:
        SPDK refuses to create it whole when its clusters are not free.
        """
        if not thin:
            return None
        lvs = self._client.call('bdev_lvol_get_lvstores',
                                {'lvs_name': lvstore})[0]
        needed = clusters_touched(extents, lvs['cluster_size'])
        if needed > lvs['free_clusters']:
            raise exception.VolumeBackendAPIException(data=_(
                'lvstore %(lvs)s has %(free)d free clusters; image %(image)s '
                'needs %(needed)d for its data in volume %(id)s') % {
                    'lvs': lvstore, 'free': lvs['free_clusters'],
                    'image': image_id, 'needed': needed, 'id': volume.id})
        fill_touched_clusters(path, extents, lvs['cluster_size'])
        return needed

    def _check_written(self, alias, needed):
        """Every cluster the image's data falls in must now be allocated.

        spdk_dd v25.09 ignores failed writes (``_dd_write_bdev_done`` does
        not look at ``success``) and exits 0; a thin lvol whose lvstore
        filled up during the copy shows it in its cluster count.
        """
        bdev = self._client.call('bdev_get_bdevs', {'name': alias})[0]
        allocated = bdev['driver_specific']['lvol']['num_allocated_clusters']
        if allocated < needed:
            raise exception.VolumeBackendAPIException(data=_(
                'spdk_dd could not write the image into %(alias)s: %(got)d '
                'of the %(needed)d clusters of its data were written (did '
                'the lvstore fill up?)') % {'alias': alias, 'got': allocated,
                                            'needed': needed})

    def _create_temp(self, lvstore, temp_name, volume, thin):
        temp_alias = naming.lvol_alias(lvstore, temp_name)
        for attempt in (1, 2):
            try:
                self._lvols.create(lvstore, temp_name, volume.size, thin)
                return
            except spdk_exc.SPDKExists:
                if attempt == 2:
                    raise
                # Left by a copy for this same volume that died half-way
                # (its name holds the volume id: nothing else uses it).
                LOG.warning('Removing %s, left by an earlier image copy',
                            temp_alias)
                self._lvols.delete(temp_alias)
            except spdk_exc.SPDKNoSpace:
                raise exception.VolumeBackendAPIException(data=_(
                    'lvstore %(lvs)s has no room for thick volume %(id)s of '
                    '%(size)d GiB') % {'lvs': lvstore, 'id': volume.id,
                                       'size': volume.size})

    def _write(self, dd, path, bdev, volume_id, sparse):
        """spdk_dd the file (its data only if ``sparse``) into the bdev
        through a loopback export that only a one-off host NQN may use.
        """
        host_nqn = 'nqn.2014-08.org.nvmexpress:uuid:%s' % uuid.uuid4()
        with self._exports.temporary_export(
                'image-%s' % volume_id, bdev, host_nqn) as (nqn, addr, port):
            attach = {'name': DD_CONTROLLER, 'trtype': 'tcp',
                      'adrfam': naming.adrfam(addr),
                      'traddr': addr, 'trsvcid': str(port), 'subnqn': nqn,
                      'hostnqn': host_nqn,
                      # One try: a copy that loses its connection fails.
                      'ctrlr_loss_timeout_sec': 0}
            # Buffer pools sized to its -s: with SPDK's defaults spdk_dd
            # would map ~366 MiB of hugepages whatever -s says.
            config = memory.startup_config(
                memory.buffer_pools(self._mem_mib, reactors=1))
            for subsystem in config['subsystems']:
                if subsystem['subsystem'] == 'bdev':
                    subsystem['config'].append(
                        {'method': 'bdev_nvme_attach_controller',
                         'params': attach})
            with image_utils.temporary_file(prefix='spdk-dd-',
                                            suffix='.json') as conf_path:
                with open(conf_path, 'w') as f:
                    json.dump(config, f)
                cmd = [dd, '--no-pci', '-s', str(self._mem_mib),
                       '-m', self._cpumask,
                       # Other SPDK processes hold their cores' locks.
                       '--disable-cpumask-locks', '--no-rpc-server',
                       '--json', conf_path, '--if=' + path,
                       '--ob=%s' % naming.namespace_bdev_name(DD_CONTROLLER),
                       '--bs=%d' % DD_BLOCK]
                if sparse:
                    cmd.append('--sparse')
                try:
                    out, err = processutils.execute(
                        *cmd, env_variables=binaries.environment(dd),
                        timeout=COPY_TIMEOUT)
                    code = 0
                except processutils.ProcessExecutionError as exc:
                    out, err, code = exc.stdout, exc.stderr, exc.exit_code
                # spdk_dd exits 0 although writes failed (it ignores their
                # status); the NVMe driver logs each failed completion.
                errors = [line for line in (err or '').splitlines()
                          + (out or '').splitlines()
                          if '*ERROR*' in line or 'print_completion' in line]
                if code or errors:
                    raise exception.VolumeBackendAPIException(data=_(
                        'spdk_dd could not write the image into %(bdev)s '
                        '(exit code %(code)s): %(errors)s') % {
                            'bdev': bdev, 'code': code,
                            'errors': ' | '.join(errors[-3:])
                            or (err or '').strip()[-500:]})

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
                self._lvols.inflate(temp_alias, timeout=COPY_TIMEOUT)
                self._lvols.set_read_only(temp_alias)
                with AioFile(self._client, 'upload-file-%s' % volume.id,
                             path) as aio:
                    self._lvols.shallow_copy(temp_alias, aio.name,
                                             COPY_TIMEOUT, SHALLOW_COPY_POLL)
                volume_utils.upload_volume(context, image_service,
                                           image_meta, path, volume)
        finally:
            # The temporary clone goes either way, and with it the hidden
            # snapshot behind it.
            self._lvols.discard(temp_alias)
        LOG.info('Uploaded volume %(id)s to image %(image)s with SPDK',
                 {'id': volume.id, 'image': image_meta.get('id')})
