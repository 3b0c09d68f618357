"""Writing a file so that a crash leaves the old content or the new one.

Every state file, pid file and key file of the project is written here:
into ``<path>.tmp`` created with its final mode (a secret is never
readable by others, not even for a moment), flushed and fsynced, renamed
over ``path``, and the directory fsynced so that the rename itself
survives a power cut.
"""

import os

TEMP_SUFFIX = '.tmp'


def write_atomically(path, text, mode):
    """Replace ``path`` with ``text`` (str), the file ``mode`` from the
    start; a symlink at the temporary name is refused, not followed.
    """
    temp = path + TEMP_SUFFIX
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                 mode)
    with os.fdopen(fd, 'w') as f:
        # A leftover temporary file keeps its old mode through O_CREAT.
        os.fchmod(f.fileno(), mode)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    dir_fd = os.open(os.path.dirname(path) or '.', os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
