"""Where SPDK's applications are found.

SPDK is not packaged by the distributions we run on, so operators install
it themselves. The order is: ``$SPDK_BIN_DIR``, then ``$PATH``, then the
conventional prefixes (``/usr/local/bin`` for ``make install``,
``/opt/spdk/build/bin`` and ``/usr/local/src/spdk/build/bin`` for a build
tree).
"""

import os
import shutil

CONVENTIONAL_DIRS = ('/usr/local/bin', '/opt/spdk/build/bin',
                     '/usr/local/src/spdk/build/bin')


def find(app):
    """Absolute path of an SPDK application (``nvmf_tgt``, ``vhost``...)."""
    env_dir = os.environ.get('SPDK_BIN_DIR')
    if env_dir:
        path = os.path.join(env_dir, app)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(app)
    if found:
        return found
    for directory in CONVENTIONAL_DIRS:
        path = os.path.join(directory, app)
        if os.access(path, os.X_OK):
            return path
    return None


def missing_message(apps=('nvmf_tgt', 'vhost')):
    """One line saying how to provide the ``apps`` not found; None when all
    are there.
    """
    missing = [app for app in apps if find(app) is None]
    if not missing:
        return None
    return ('SPDK %s not found: build or install SPDK (v25.09 or later) '
            'outside this repository, then set SPDK_BIN_DIR to its bin '
            'directory or put it on PATH' % ' and '.join(missing))


def environment(binary, base=None):
    """The environment to run ``binary`` in: its libraries on the path."""
    env = dict(os.environ if base is None else base)
    env['LD_LIBRARY_PATH'] = ':'.join(
        library_path(binary)
        + [p for p in env.get('LD_LIBRARY_PATH', '').split(':') if p])
    return env


def library_path(binary):
    """LD_LIBRARY_PATH entries a shared-library SPDK build tree needs."""
    build = os.path.dirname(os.path.dirname(binary))
    candidates = [os.path.join(build, 'lib'),
                  os.path.join(os.path.dirname(build), 'isa-l', '.libs'),
                  os.path.join(os.path.dirname(build), 'dpdk', 'build', 'lib')]
    return [c for c in candidates if os.path.isdir(c)]
