"""Run a command as the terminal's foreground job and exit with its status.

``make run`` starts the demo line through this. When Ctrl-C is pressed, the
terminal sends SIGINT to its foreground process group; without this, that group
holds GNU make too, and make dies of the signal (status 130, "Interrupt") while
the service itself drains and exits 0. Here the command gets a process group of
its own and the terminal's foreground, as a shell's job control would do, so
Ctrl-C reaches only the service, and make reports the service's status.

Without a terminal (CI, a pipe) the command simply replaces this process.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: foreground.py COMMAND [ARG...]\n")
        return 2
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        tty = -1
    if tty < 0 or not os.isatty(sys.stdin.fileno()):
        os.execvp(argv[0], argv)
    own_group = os.getpgrp()
    # Taking the terminal back from the child's group would stop us with SIGTTOU.
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    child = subprocess.Popen(argv, process_group=0)
    for forwarded in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(forwarded, lambda signum, _frame: child.send_signal(signum))
    try:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(tty, child.pid)
        status = child.wait()
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(tty, own_group)
        os.close(tty)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
