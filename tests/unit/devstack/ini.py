"""Stand-in for devstack's iniset/iniset_multiline/iniget in the harness.

Writes the same layout devstack does (``option = value`` lines under
``[section]``, one line per value of a multi-valued option) so that the
tests read the result with oslo.config's own parser.

    ini.py set FILE SECTION OPTION [VALUE...]
    ini.py get FILE SECTION OPTION
"""

import os
import sys


def _read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def _section_span(lines, section):
    """(start, end) line indexes of a section's body, or None."""
    header = '[%s]' % section
    if header not in lines:
        return None
    start = lines.index(header) + 1
    end = start
    while end < len(lines) and not lines[end].startswith('['):
        end += 1
    return start, end


def _is_option(line, option):
    return line.split('=', 1)[0].strip() == option and '=' in line


def ini_set(path, section, option, values):
    lines = _read(path)
    span = _section_span(lines, section)
    if span is None:
        lines += ['', '[%s]' % section]
        span = (len(lines), len(lines))
    start, end = span
    body = [line for line in lines[start:end] if not _is_option(line, option)]
    new = ['%s = %s' % (option, value) for value in values or ['']]
    lines[start:end] = new + body
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def ini_get(path, section, option):
    lines = _read(path)
    span = _section_span(lines, section)
    if span is None:
        return ''
    for line in lines[span[0]:span[1]]:
        if _is_option(line, option):
            return line.split('=', 1)[1].strip()
    return ''


def main(argv):
    command, path, section, option = argv[:4]
    if command == 'set':
        ini_set(path, section, option, argv[4:])
    else:
        print(ini_get(path, section, option))


if __name__ == '__main__':
    main(sys.argv[1:])
