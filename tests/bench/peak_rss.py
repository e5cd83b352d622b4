#!/usr/bin/env python3
"""peak_rss.py OUTFILE CMD [ARGS...]

Runs CMD with stdin/stdout/stderr inherited, then writes the peak resident
set size of CMD (the largest of it and its waited-for descendants, from
getrusage(RUSAGE_CHILDREN)) in bytes to OUTFILE, and exits with CMD's exit
status. run.sh uses it to check each engine's self-reported peak_rss_bytes
from outside the process.
"""
import resource
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, cmd = sys.argv[1], sys.argv[2:]
    try:
        rc = subprocess.call(cmd)
    except OSError as e:
        print(f"peak_rss: {cmd[0]}: {e}", file=sys.stderr)
        return 127
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    with open(out, "w") as f:
        f.write(f"{peak}\n")
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
