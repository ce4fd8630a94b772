"""SSH probe, part 48: passwords in command lines a CGroup tree shows, through the mask.

`systemctl status UNIT` is a reader's (ssh.rego allows it when it names units of a
service's types): it shows the unit's processes with their whole command lines, drawn as
a tree (`└─1234 /usr/bin/foo --password=S3cret`, `├─ 88 mysqld -pS3cret`), as `ps -eww`
and a cron line do. The detectors masked `--password=...` and mysql's `-p...` there, but
not the other clients' ways of taking a password as an argument: mysqld_safe's (and
mysql8's) -p, mongodump's `-p S3cret`, ldapsearch's `-w S3cret`, openssl's `-passin
pass:S3cret`, smbclient's `-U user%S3cret`, redis-server's `--requirepass S3cret` went to
the reader as written. The detectors (portcullis/masking.py, _SECRET_ASSIGNED) now read
them, wherever they are: the exec's output here, a shell's, an HTTP body, a SQL value.

Real components: sshd, a PDP on the shipped policy, the SSH proxy, asyncssh's client (the
status text is a log under /var/log, which a reader may `cat`, as sshd would relay
systemctl's: this machine runs no systemd).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_ssh_proxy import ssh_stack

GREY, PLAIN = "\x1b[0;38;5;245m", "\x1b[0m"  # systemd draws the tree grey on a terminal
STATUS = f"""\x1b[0;1;32m●\x1b[0m mysql.service - MySQL Community Server
     Loaded: loaded (/lib/systemd/system/mysql.service; enabled; vendor preset: enabled)
     Active: active (running) since Mon 2026-12-07 10:00:00 UTC; 4h ago
    Process: 77 ExecStartPre=/usr/share/mysql/start pre --password=S3cret-p48-a (code=exited)
   Main PID: 88 (mysqld)
     CGroup: /system.slice/mysql.service
             ├─ 88 mysqld -pS3cret-p48-b
             ├─ 90 /usr/sbin/mysqld --password=S3cret-p48-c --user=mysql
             │ └─1234 /usr/bin/foo --password S3cret-p48-d
             {GREY}└─1235 {PLAIN}/usr/bin/mysqldump -uroot -pS3cret-p48-e db
             |-1236 mysqld -pS3cret-p48-f
             └─1238 /usr/bin/mysqld_safe --datadir=/var/lib/mysql -pS3cret-p48-g
             └─1239 /usr/bin/redis-server *:6379 --requirepass S3cret-p48-h
             └─1240 mongodump --host db -u admin -p S3cret-p48-i
             └─1241 ldapsearch -x -D cn=admin,dc=example,dc=org -w S3cret-p48-j -b dc=x
             └─1242 openssl pkcs12 -in a.p12 -passin pass:S3cret-p48-k -nodes
             └─1243 smbclient //fs/share -U backup%S3cret-p48-l -c ls
             └─1244 /opt/mysql8/bin/mysql8 -h db -pS3cret-p48-m
"""
READER = ("readonly",)


@contextlib.contextmanager
def log_file(probe: str, tmp_path: Path, text: str) -> Iterator[Path]:
    """A log under /var/log holding `text` (a reader may `cat` it), removed after."""
    logged = Path("/var/log") / f"portcullis-{probe}-{os.getpid()}-{tmp_path.name}.log"
    logged.write_text(text)
    try:
        yield logged
    finally:
        logged.unlink()


@pytest.mark.integration
async def test_passwords_in_a_cgroup_tree_are_masked_for_a_reader(tmp_path: Path) -> None:
    with log_file("p48", tmp_path, STATUS) as logged:
        async with ssh_stack(tmp_path) as stack, await stack.connect(READER) as conn:
            shown = await conn.run(f"cat {logged}")
    assert shown.exit_status == 0, shown.stderr
    out = str(shown.stdout)
    assert "CGroup: /system.slice/mysql.service" in out and "└─1244 /opt/mysql8" in out
    leaked = [line for line in out.splitlines() if "S3cret" in line]
    assert leaked == [], leaked
