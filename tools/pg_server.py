"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder,
pg_ctl start on a free loopback port, password authentication, stopped and
removed at the end. initdb refuses to run as root, so as root the server
runs as the `postgres` user, which owns the folder."""
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

USER, PASSWORD = 'sweeper', 'sweep-secret'


class Unavailable(Exception):
    """No server can be started here; the message says why."""


def bin_dir():
    """The newest PostgreSQL server binaries' folder, from PATH or Debian's layout."""
    if shutil.which('initdb') and shutil.which('pg_ctl'):
        return os.path.dirname(shutil.which('initdb'))
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'),
                   key=lambda p: int(p.split('/')[-3]) if p.split('/')[-3].isdigit()
                   else 0)
    if not found:
        raise Unavailable('no PostgreSQL server binaries (initdb, pg_ctl): install '
                          "Debian's postgresql package")
    return os.path.dirname(found[-1])


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server(object):
    def __init__(self):
        self.bin, self.port = bin_dir(), free_port()
        self.prefix = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam('postgres')
            except KeyError:
                raise Unavailable('running as root and there is no postgres user to '
                                  'run the server as')
            self.prefix = ['runuser', '-u', 'postgres', '--']
        self.root = tempfile.mkdtemp(prefix='sweep-pg-')
        if self.prefix:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = os.path.join(self.root, 'data')

    def run(self, *command):
        proc = subprocess.run(self.prefix + [os.path.join(self.bin, command[0])]
                              + list(command[1:]), capture_output=True, text=True,
                              timeout=120)
        if proc.returncode:
            raise Unavailable('{} failed: {}'.format(
                command[0], ' '.join((proc.stderr or proc.stdout).split())[-300:]))

    def start(self):
        pwfile = os.path.join(self.root, 'pw')
        with open(pwfile, 'w') as f:
            f.write(PASSWORD + '\n')
        if self.prefix:
            shutil.chown(pwfile, 'postgres')
        self.run('initdb', '-D', self.data, '-U', USER, '--pwfile', pwfile,
                 '--auth', 'scram-sha-256', '-E', 'UTF8', '--no-sync')
        self.run('pg_ctl', '-D', self.data, '-l', os.path.join(self.root, 'log'),
                 '-w', '-t', '60', '-o', "-p {} -k {} -c listen_addresses=127.0.0.1 "
                 '-c fsync=off'.format(self.port, self.root), 'start')
        return self

    def url(self, database='postgres', password=PASSWORD):
        return 'postgresql://{}:{}@127.0.0.1:{}/{}'.format(USER, password,
                                                            self.port, database)

    def execute(self, sql, database='postgres'):
        import psycopg
        with psycopg.connect(self.url(database), autocommit=True) as connection:
            connection.execute(sql)

    def create_database(self, name):
        self.execute('CREATE DATABASE "{}"'.format(name))
        return self.url(name)

    def stop(self):
        # The server's own pid file, not whether start() returned, says if one
        # runs: a start cut short (Ctrl-C, SIGTERM) can leave one running.
        with contextlib.suppress(Unavailable, subprocess.TimeoutExpired):
            if os.path.exists(os.path.join(self.data, 'postmaster.pid')):
                self.run('pg_ctl', '-D', self.data, '-m', 'immediate', '-w', 'stop')
        shutil.rmtree(self.root, ignore_errors=True)


def started():
    """A running Server, or Unavailable (saying why) with nothing left behind."""
    server = Server()
    try:
        server.start()
    except Unavailable:
        server.stop()
        raise
    return server
