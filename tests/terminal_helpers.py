"""Driving ``elektronn-train`` through a pseudo-terminal, as a user at a terminal does."""
import os
import pty
import re
import select
import signal
import sys
import time

TIMEOUT = 90


def terminal_env(tmp_path):
    """The environment of a run in ``tmp_path``: its own HOME, one thread, unbuffered output."""
    env = dict(os.environ, HOME=str(tmp_path / 'home'), OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    os.makedirs(env['HOME'], exist_ok=True)
    return env


class PtyRun:
    """``python -m elektronn.train ARGS`` with a pseudo-terminal as its controlling terminal."""

    def __init__(self, args, cwd, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a new session whose controlling terminal is the pty
            try:
                os.chdir(cwd)
                os.execve(sys.executable, [sys.executable, '-m', 'elektronn.train'] + list(args), env)
            finally:
                os._exit(127)
        self.out, self.pos, self.status = '', 0, None

    def _read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b''
            self.out += data.decode(errors='replace')
            return bool(data)
        return True

    def expect(self, pattern, timeout=TIMEOUT):
        regex = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            m = regex.search(self.out, self.pos)
            if m:
                self.pos = m.end()
                return m
            if not self._read(0.2):
                break
        raise AssertionError('%r not seen; output:\n%s' % (pattern, self.out[-3000:]))

    def send(self, text):
        os.write(self.fd, text.encode())

    def wait(self, timeout=TIMEOUT):
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                while self._read(0.05) and select.select([self.fd], [], [], 0)[0]:
                    pass
                return self.status
            self._read(0.1)
        raise AssertionError('elektronn-train did not end; output:\n%s' % self.out[-3000:])

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)
