"""Masking probe p9: a password a client takes as a short flag on its command line.

`mysqldump -uroot -pS3cret shop`, `sshpass -p hunter2 ssh db`, `redis-cli -a pa55 ping`:
cron's `CMD (...)` lines in the journal, sudo's `COMMAND=` lines, a process list and a
systemctl status's CGroup tree show them to a reader, and no key names the value (the
token detector's rule for `KEY=value` never saw them). The token detector masks the value
after those clients' password flags; a port (`-P 3306`, `ssh -p 22`, `psql -p 5432`), a
prompt (`mysql -p`) and other commands' `-p` are left.

Real components for the last test: sshd and the SSH proxy (a reader's `cat` of a log).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_masking_probe_p6 import READER, masker
from test_ssh_proxy import ssh_policy, ssh_stack

from portcullis.masking import detect

FLAGGED = [
    ("CMD (mysqldump -uroot -pS3cret shop > /backup/shop.sql)", "S3cret"),
    ("/usr/bin/mysqldump --single-transaction -pS3cret db", "S3cret"),
    ("COMMAND=/usr/bin/mysql -uroot -pToor1", "Toor1"),
    ("mysqladmin -u root -p's3c' status", "s3c"),
    ('mysql -h db -p"s3c" shop', "s3c"),
    ("mariadb-dump -pX1 db", "X1"),
    ("mariadb -pX1", "X1"),
    ("sshpass -p hunter2 ssh db", "hunter2"),
    ("sshpass -phunter2 ssh db", "hunter2"),
    ("sshpass -v -p 'hunter2' ssh db", "hunter2"),
    ("redis-cli -h cache -a pa55 ping", "pa55"),
    ("redis-cli --pass pa55 ping", "pa55"),
    ("  1234 ?  S  0:00 mysqldump -pS3cret shop", "S3cret"),
]
UNFLAGGED = [
    "mysql -p -h db",
    "mysql -P 3306 -h db",
    "ssh -p 22 host",
    "psql -p 5432 -h db",
    "echo mysql; ls -pa",
    "sshpass -f /run/pw ssh db",
    "sshpass -e ssh db",
    "redis-cli -h cache ping",
    "mkdir -p /srv/mysql",
]


@pytest.mark.parametrize(("text", "secret"), FLAGGED)
@pytest.mark.parametrize("strategy", ["partial", "redact", "hash"])
def test_a_clients_password_flag_is_masked(text: str, secret: str, strategy: str) -> None:
    m = masker(strategy)
    masked, counts = m.mask_text(text)
    assert secret not in masked, masked
    assert counts["token"] >= 1, counts
    assert m.mask_text(masked)[0] == masked  # masked once: read again, left as it is


@pytest.mark.parametrize("text", UNFLAGGED)
def test_a_port_a_prompt_or_another_commands_flag_is_left(text: str) -> None:
    assert detect("token", text) == [], text
    assert masker("partial").mask_text(text)[0] == text


@pytest.mark.integration
async def test_a_readers_cat_of_a_cron_log_shows_no_flagged_password(tmp_path: Path) -> None:
    """A reader outside pii-readers cats a log through the SSH proxy (asyncssh client,
    sshd upstream): the passwords on its command lines come masked, the rest as it is."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "cron.log").write_text(
        "Dec 07 03:00:01 db CRON[811]: (root) CMD (mysqldump -uroot -pS3cret shop > /b.sql)\n"
        "Dec 07 03:05:01 db CRON[822]: (root) CMD (sshpass -p hunter2 rsync /b.sql bk:)\n"
        "Dec 07 03:10:01 db CRON[833]: (root) CMD (redis-cli -a pa55 bgsave)\n"
        "Dec 07 03:15:01 db CRON[844]: (root) CMD (mysql -P 3306 -e 'select 1')\n"
    )
    policy = str(ssh_policy(tmp_path, f"cat {logs}/*"))
    async with ssh_stack(tmp_path, extra={"policies": policy}) as s:  # noqa: SIM117
        async with await s.connect(READER) as conn:
            result = await conn.run(f"cat {logs}/cron.log")
    out = str(result.stdout)
    assert result.exit_status == 0, result
    for secret in ("S3cret", "hunter2", "pa55"):
        assert secret not in out, out
    assert "mysqldump -uroot -p**** shop" in out, out
    assert "(mysql -P 3306 -e 'select 1')" in out, out
