"""A tiny guest built from the host's Debian packages.

Kernel: linux-image-amd64's /boot/vmlinuz. Initramfs: busybox-static, the
kernel modules ``/init`` loads (with what they depend on, in load order),
and the ``/init`` script the caller gives. The functional tests use an
init that answers commands on the serial console; the all-in-one cloud
uses one that runs the server's user data from its config drive.
"""

import os
import shutil
import subprocess

BUSYBOX = '/bin/busybox'
VIRTIO_BLK_MODULES = ('virtio_pci', 'virtio_blk')
# The config drive is an ISO 9660 CD-ROM on the IDE (pc) or SATA (q35) bus.
CONFIG_DRIVE_MODULES = ('ata_piix', 'ahci', 'sr_mod', 'isofs')
MISSING_MESSAGE = ('no guest kernel or busybox (apt-get install '
                   'linux-image-amd64 busybox-static cpio)')


def kernel_release():
    """The newest kernel with both an image in /boot and its modules."""
    releases = []
    for name in os.listdir('/boot') if os.path.isdir('/boot') else []:
        if name.startswith('vmlinuz-'):
            release = name[len('vmlinuz-'):]
            if os.path.isdir(os.path.join('/lib/modules', release)):
                releases.append(release)
    return sorted(releases)[-1] if releases else None


def available():
    return (kernel_release() is not None and os.path.exists(BUSYBOX)
            and shutil.which('cpio') is not None)


def _module_name(path):
    return os.path.basename(path).split('.ko')[0].replace('-', '_')


def module_paths(release, modules):
    """Paths of ``modules`` and what they need, each after its needs, none
    built into the kernel.
    """
    base = os.path.join('/lib/modules', release)
    depends = {}
    with open(os.path.join(base, 'modules.dep')) as f:
        for line in f:
            path, _sep, needs = line.partition(':')
            depends[_module_name(path)] = (
                os.path.join(base, path),
                [_module_name(need) for need in needs.split()])
    builtin = set()
    builtin_list = os.path.join(base, 'modules.builtin')
    if os.path.exists(builtin_list):
        with open(builtin_list) as f:
            builtin = {_module_name(line.strip()) for line in f}
    ordered = []

    def add(name):
        if name in builtin or any(name == n for n, _ in ordered):
            return
        if name not in depends:
            raise RuntimeError('kernel %s lacks module %s' % (release, name))
        path, needs = depends[name]
        # modules.dep lists the nearest needs first: load the far ones first.
        for need in reversed(needs):
            add(need)
        ordered.append((name, path))

    for module in modules:
        add(module)
    return [path for _name, path in ordered]


def build(workdir, init_script, modules):
    """Write ``vmlinuz`` and ``initrd.cpio`` (world-readable, for QEMU) to
    ``workdir`` and return their paths. ``init_script`` starts with
    :data:`INIT_PREAMBLE`, which loads the modules in the order kept in
    ``/lib/modules/load-order``.
    """
    release = kernel_release()
    if release is None or not available():
        raise RuntimeError(MISSING_MESSAGE)
    kernel = os.path.join(workdir, 'vmlinuz')
    shutil.copy(os.path.join('/boot', 'vmlinuz-' + release), kernel)
    root = os.path.join(workdir, 'root')
    shutil.rmtree(root, ignore_errors=True)
    for sub in ('bin', 'dev', 'proc', 'sys', 'mnt', 'tmp', 'lib/modules'):
        os.makedirs(os.path.join(root, sub))
    shutil.copy(BUSYBOX, os.path.join(root, 'bin', 'busybox'))
    names = []
    for path in module_paths(release, modules):
        name = os.path.basename(path)
        shutil.copy(path, os.path.join(root, 'lib', 'modules', name))
        names.append(name)
    with open(os.path.join(root, 'lib', 'modules', 'load-order'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    init = os.path.join(root, 'init')
    with open(init, 'w') as f:
        f.write(init_script)
    os.chmod(init, 0o755)
    initrd = os.path.join(workdir, 'initrd.cpio')
    files = subprocess.run(['find', '.'], cwd=root, check=True,
                           capture_output=True).stdout
    with open(initrd, 'wb') as out:
        subprocess.run(['cpio', '--quiet', '-o', '-H', 'newc'],
                       cwd=root, input=files, stdout=out, check=True)
    shutil.rmtree(root)
    for path in (kernel, initrd):
        os.chmod(path, 0o644)
    return kernel, initrd


# Shell lines every init starts with: busybox, the pseudo file systems,
# the modules in load order, and a quiet kernel (its messages would
# interleave with what the guest prints on the console).
INIT_PREAMBLE = r'''#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod /lib/modules/$m; done < /lib/modules/load-order
echo 1 > /proc/sys/kernel/printk
'''
