package portcullis_test

import data.portcullis

# A part as pdp/domain/ssh_input.py builds it; tests/test_ssh_policy.py runs real command
# lines through that parser and this library together.
ssh_part(argv) := {"argv": argv, "command": concat(" ", argv), "dynamic": [], "assignments": [], "redirects": [], "via": [], "more_args": false}

ssh_exec_input(groups, parts) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "web-1", "type": "ssh"},
	"command": {"kind": "ssh.exec", "raw": concat("; ", [p.command | some p in parts]), "ssh": {"parts": parts}},
}

ssh_verdict(groups, argv) := d.verdict if {
	d := portcullis.decision with input as ssh_exec_input(groups, [ssh_part(argv)])
}

ssh_decision(groups, parts) := d if {
	d := portcullis.decision with input as ssh_exec_input(groups, parts)
}

test_ssh_allowed_commands if {
	cases := [
		["uptime"],
		["df", "-h"],
		["free", "-m"],
		["systemctl", "status", "nginx"],
		["journalctl", "-u", "nginx"],
		["cat", "/var/log/syslog"],
		["cat", "/var/log/syslog", "/var/log/auth.log"],
	]
	every argv in cases {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
	ssh_verdict(["readonly"], ["uptime"]) == "mask"
}

test_ssh_glob_stays_in_its_directory if {
	ssh_verdict(["readonly"], ["cat", "/etc/shadow"]) == "deny"
	ssh_verdict(["readonly"], ["cat", "/var/log/syslog", "/etc/shadow"]) == "deny"
	ssh_verdict(["readonly"], ["cat", "/var/log/../../etc/shadow"]) == "deny"
	ssh_verdict(["readonly"], ["cat", "/var/log/nginx/access.log"]) == "deny"
	ssh_verdict(["readonly"], ["cat", "-"]) == "deny"
	ssh_verdict(["readonly"], ["cat", "/etc/shadow", "/var/log/syslog"]) == "deny"
}

test_ssh_computed_words_never_match_a_glob if {
	dynamic := object.union(ssh_part(["cat", "/var/log/$X"]), {"dynamic": [1]})
	ssh_decision(["pii-readers"], [dynamic]).verdict == "deny"
	appended := object.union(ssh_part(["cat", "/var/log/syslog"]), {"more_args": true})
	ssh_decision(["pii-readers"], [appended]).verdict == "deny"

	# a listed command without a glob takes any further words, computed or not (but not
	# a glob: test_ssh_words_the_shell_expands_into_file_names_need_approval)
	free := object.union(ssh_part(["free", "$(x)"]), {"dynamic": [1]})
	ssh_decision(["pii-readers"], [free]).verdict == "allow"

	# except one with an allow-list of options (test_ssh_read_options_by_allow_list)
	status := object.union(ssh_part(["systemctl", "status", "$(x)"]), {"dynamic": [2]})
	ssh_decision(["pii-readers"], [status]).verdict == "require_approval"
	named := object.union(ssh_part(["$CMD"]), {"dynamic": [0]})
	d := ssh_decision(["pii-readers"], [named])
	d.verdict == "deny"
	"\"$CMD\": the command's name is computed when it runs" in d.reasons
}

test_ssh_risky_commands_need_approval if {
	cases := [
		["sudo", "ls"],
		["rm", "-rf", "/tmp/x"],
		["shutdown", "-h", "now"],
		["reboot"],
		["systemctl", "stop", "nginx"],
		["systemctl", "restart", "nginx"],
	]
	every argv in cases {
		ssh_verdict(["dba"], argv) == "require_approval"
		ssh_verdict(["readonly"], argv) == "require_approval"
	}
}

test_ssh_other_commands_denied if {
	ssh_verdict(["dba"], ["bash"]) == "deny"
	ssh_verdict(["readonly"], ["systemctl", "enable", "x"]) == "deny"
	ssh_verdict(["readonly"], ["upTime"]) == "deny"
	ssh_verdict(["readonly"], ["/usr/bin/uptime"]) == "deny"
}

test_ssh_a_chain_is_as_strong_as_its_weakest_part if {
	d := ssh_decision(["pii-readers"], [ssh_part(["uptime"]), ssh_part(["curl", "evil"])])
	d.verdict == "deny"
	"\"curl evil\" is not an allowed command" in d.reasons
	a := ssh_decision(["pii-readers"], [ssh_part(["uptime"]), ssh_part(["rm", "-rf", "/x"])])
	a.verdict == "require_approval"
	both := ssh_decision(["pii-readers"], [ssh_part(["rm", "-rf", "/x"]), ssh_part(["id"])])
	both.verdict == "deny"
	ssh_decision(["pii-readers"], [ssh_part(["uptime"]), ssh_part(["df"])]).verdict == "allow"
}

test_ssh_assignments_and_redirections_denied if {
	env := object.union(ssh_part(["uptime"]), {"assignments": ["LD_PRELOAD=/tmp/x.so"]})
	d := ssh_decision(["pii-readers"], [env])
	d.verdict == "deny"
	"\"uptime\" sets LD_PRELOAD=/tmp/x.so" in d.reasons
	out := object.union(ssh_part(["uptime"]), {"redirects": [{"op": ">", "kind": "write", "target": "/etc/motd", "dynamic": false}]})
	ssh_decision(["pii-readers"], [out]).verdict == "deny"
	read := object.union(ssh_part(["cat", "/var/log/x"]), {"redirects": [{"op": "<", "kind": "read", "target": "/etc/shadow", "dynamic": false}]})
	ssh_decision(["pii-readers"], [read]).verdict == "deny"
	quiet := object.union(ssh_part(["uptime"]), {"redirects": [
		{"op": ">", "kind": "write", "target": "/dev/null", "dynamic": false},
		{"op": ">&", "kind": "fd", "target": "&1", "dynamic": false},
		{"op": "<<", "kind": "stdin", "target": "", "dynamic": false},
	]})
	ssh_decision(["pii-readers"], [quiet]).verdict == "allow"
}

ssh_looped(names) := d if {
	looped := object.union(ssh_exec_input(["pii-readers"], [ssh_part(["df"])]), {"command": {"ssh": {"loop_variables": names}}})
	d := portcullis.decision with input as looped
}

test_ssh_a_loop_variable_the_shell_or_a_command_reads_denied if {
	every name in ["PATH", "HOME", "IFS", "BASH_ENV", "x_y", "_", "X"] {
		ssh_looped([name]).verdict == "deny"
	}
	d := ssh_looped(["x", "PATH"])
	d.verdict == "deny"
	some reason in d.reasons
	startswith(reason, "a loop sets PATH:")
	ssh_looped(["x", "host2"]).verdict == "allow"
	ssh_looped([]).verdict == "allow"
}

test_ssh_unread_command_denied if {
	m := {
		"identity": {"subject": "alice@example.com", "groups": ["dba"]},
		"connection": {"name": "web-1", "type": "ssh"},
		"command": {"kind": "ssh.exec", "raw": "echo $((1))", "ssh": {"parts": [], "malformed": "arithmetic expansion"}},
	}
	d := portcullis.decision with input as m
	d.verdict == "deny"
	"the command cannot be read for sure: arithmetic expansion" in d.reasons

	# a proxy's own argv is never enough: only the PDP's parts are judged
	p := object.union(object.remove(m, ["command"]), {"command": {"kind": "ssh.exec", "raw": "uptime", "ssh": {"argv": ["uptime"]}}})
	d2 := portcullis.decision with input as p
	d2.verdict == "deny"
	"the command was not read by the PDP's shell parser" in d2.reasons
}

test_ssh_empty_command_denied if {
	d := ssh_decision(["dba"], [])
	d.verdict == "deny"
	"empty command" in d.reasons
}

test_ssh_interactive_kinds_only_for_dba if {
	# ssh.sftp: the test_ssh_sftp_* tests below (a request without its operation is denied)
	every kind in ["ssh.shell", "ssh.forward", "ssh.subsystem"] {
		i := {
			"identity": {"subject": "alice@example.com", "groups": ["readonly"]},
			"connection": {"name": "web-1", "type": "ssh"},
			"command": {"kind": kind, "ssh": {"subsystem": "sftp"}},
		}
		d := portcullis.decision with input as i
		d.verdict == "deny"
		d2 := portcullis.decision with input as object.union(i, {"identity": {"groups": ["dba", "pii-readers"]}})
		d2.verdict == "allow"
	}
}

ssh_shell_masked_dba := {
	"identity": {"subject": "alice@example.com", "groups": ["dba"]},
	"connection": {"name": "web-1", "type": "ssh"},
	"command": {"kind": "ssh.shell"},
}

test_ssh_shell_denied_to_dba_without_pii if {
	# `| base64` in a shell turns any value into text no detector reads
	d := portcullis.decision with input as ssh_shell_masked_dba
	d.verdict == "deny"
	"interactive shells: the proxy cannot mask what a shell computes (base64, tr), and alice@example.com's answers are masked (not a pii-reader); data.portcullis.ssh.shell_unmasked does not allow it" in d.reasons
}

test_ssh_shell_output_masked_for_dba_without_pii_when_allowed_by_name if {
	d := portcullis.decision with input as ssh_shell_masked_dba with data.portcullis.ssh.shell_unmasked as true
	d.verdict == "mask"
	{"detector": "email", "strategy": "partial"} in d.mask
	"alice@example.com may use interactive shells; its output is masked by the detectors only, which what the shell computes (base64, tr) escapes, though alice@example.com's answers are masked (data.portcullis.ssh.shell_unmasked)" in d.reasons
	r := portcullis.decision with input as object.union(ssh_shell_masked_dba, {"identity": {"groups": ["readonly"]}}) with data.portcullis.ssh.shell_unmasked as true
	r.verdict == "deny"
}

# the proxy names the upstream account's homes with every request (here /home/deploy)
ssh_sftp(groups, op) := d if {
	d := portcullis.decision with input as {
		"identity": {"subject": "alice@example.com", "groups": groups},
		"connection": {"name": "web-1", "type": "ssh"},
		"command": {"kind": "ssh.sftp", "raw": concat(" ", [object.get(op, "operation", ""), object.get(op, "path", "")]), "ssh": object.union({"homes": ["/home/deploy"]}, op)},
	}
}

test_ssh_sftp_writes_to_the_accounts_login_files_need_approval if {
	every op in ["write", "remove", "rename", "mkdir", "rmdir", "setstat", "symlink", "link"] {
		every path in ["/home/deploy/.bashrc", "/home/deploy/.ssh", "/home/deploy/.ssh/authorized_keys", "/home/deploy/.config/systemd/user/x.service", "/home/deploy/bin", "/home/deploy/bin/df", "/home/deploy", "/home", "/"] {
			d := ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": path})
			d.verdict == "require_approval"
			some reason in d.reasons
			contains(reason, "login files")
		}
		# the second path of a rename / link / symlink too
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/tmp/x", "target": "/home/deploy/.profile"}).verdict == "require_approval"
		# what is not read at login, as before
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/deploy/dump.sql"}).verdict == "allow"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/deploy/binaries/x"}).verdict == "allow"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/deployment/.bashrc"}).verdict == "allow"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/deployment"}).verdict == "allow"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/dep"}).verdict == "allow"
	}
	# any account's .ssh, wherever its home
	every path in ["/home/alice/.ssh", "/home/alice/.ssh/authorized_keys", "/srv/git/.ssh/authorized_keys2"] {
		d := ssh_sftp(["dba", "pii-readers"], {"operation": "write", "path": path})
		d.verdict == "require_approval"
		some reason in d.reasons
		contains(reason, "past the proxy")
	}
	ssh_sftp(["dba", "pii-readers"], {"operation": "write", "path": "/home/alice/.sshx"}).verdict == "allow"
	# reads are not held
	ssh_sftp(["dba", "pii-readers"], {"operation": "read", "path": "/home/deploy/.bashrc"}).verdict == "allow"
	ssh_sftp(["dba", "pii-readers"], {"operation": "read", "path": "/home/alice/.ssh/id_ed25519"}).verdict == "allow"
	# every home named counts
	ssh_sftp(["dba", "pii-readers"], {"operation": "write", "path": "/srv/h/.bashrc", "homes": ["/home/deploy", "/srv/h"]}).verdict == "require_approval"
}

test_ssh_sftp_set_user_id_modes_and_owners_need_approval if {
	every groups in [["dba"], ["dba", "pii-readers"]] {
		every op in ["write", "setstat", "mkdir"] {
			every mode in [2541, 3565, 1517, 3072, "4755"] { # 04755, 06755, 02755, 06000, no number
				d := ssh_sftp(groups, {"operation": op, "path": "/tmp/x", "mode": mode})
				d.verdict == "require_approval"
				some reason in d.reasons
				contains(reason, "set-user-ID")
			}
			ssh_sftp(groups, {"operation": op, "path": "/tmp/x", "owner": "1000:1000"}).verdict == "require_approval"
			# ordinary permissions, sticky included, as before
			every mode in [420, 493, 511, 1023] { # 0644, 0755, 0777, 01777
				ssh_sftp(groups, {"operation": op, "path": "/tmp/x", "mode": mode}).verdict == "allow"
			}
		}
	}
}

test_ssh_sftp_writes_without_the_accounts_homes_need_approval if {
	every homes in [[], [""], ["relative"]] {
		ssh_sftp(["dba", "pii-readers"], {"operation": "write", "path": "/tmp/x", "homes": homes}).verdict == "require_approval"
	}
	d := portcullis.decision with input as {
		"identity": {"subject": "alice@example.com", "groups": ["dba", "pii-readers"]},
		"connection": {"name": "web-1", "type": "ssh"},
		"command": {"kind": "ssh.sftp", "raw": "write /tmp/x", "ssh": {"operation": "write", "path": "/tmp/x"}},
	}
	d.verdict == "require_approval"
	ssh_sftp(["dba", "pii-readers"], {"operation": "read", "path": "/tmp/x", "homes": []}).verdict == "allow"
}

test_ssh_sftp_reads_allowed_for_dba_anywhere if {
	every op in ["read", "list", "stat", "realpath", "readlink", "statvfs"] {
		every path in ["/home/alice/x", "/etc/passwd", "/"] {
			# (outside pii-readers a read is masked: test_ssh_sftp_reads_masked_outside_pii_readers)
			ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": path}).verdict == "allow"
		}
	}
}

test_ssh_sftp_denied_outside_dba if {
	every op in ["read", "write", "list", "remove"] {
		d := ssh_sftp(["readonly", "pii-readers"], {"operation": op, "path": "/home/alice/x"})
		d.verdict == "deny"
		"SFTP are reserved to dba" in d.reasons
	}
}

test_ssh_sftp_writes_under_approval_paths_need_approval if {
	every op in ["write", "remove", "mkdir", "rmdir", "setstat"] {
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/etc/motd"}).verdict == "require_approval"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/etc"}).verdict == "require_approval"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/alice/motd"}).verdict == "allow"
	}

	# a prefix of a name is not a directory: /etcetera is not under /etc
	ssh_sftp(["dba", "pii-readers"], {"operation": "write", "path": "/etcetera/x"}).verdict == "allow"
	d := ssh_sftp(["dba", "pii-readers"], {"operation": "write", "path": "/usr/local/bin/x", "flags": ["write", "create"]})
	"SFTP write of /usr/local/bin/x: writes under /usr need approval" in d.reasons
}

test_ssh_sftp_two_path_operations_decide_both_paths if {
	every op in ["rename", "symlink", "link"] {
		# into a protected directory, out of it, or neither
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/alice/x", "target": "/etc/cron.d/x"}).verdict == "require_approval"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/etc/passwd", "target": "/home/alice/x"}).verdict == "require_approval"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/alice/x", "target": "/home/alice/y"}).verdict == "allow"
	}
}

test_ssh_sftp_unknown_operation_or_path_denied if {
	d := ssh_sftp(["dba"], {"operation": "copy-data", "path": "/home/alice/x"})
	d.verdict == "deny"
	"the SFTP operation \"copy-data\" is not known to the policy" in d.reasons
	ssh_sftp(["dba"], {"path": "/home/alice/x"}).verdict == "deny"
	ssh_sftp(["dba"], {"operation": "read", "path": "relative/x"}).verdict == "deny"
	ssh_sftp(["dba"], {"operation": "read"}).verdict == "deny"
}

# An allowed exec is reused for the same command line of the same session; one answered
# under an approval is not (the proxy keeps allowed and masked answers only).
test_ssh_execs_are_cached_exactly_and_never_under_an_approval if {
	d := ssh_decision(["readonly"], [ssh_part(["uptime"])])
	d.cache_key == "exact"
	d.cache_ttl_seconds > 0
	approved := object.union(ssh_exec_input(["readonly"], [ssh_part(["uptime"])]), {"approval": {"id": "ap-1", "state": "approved", "approver": "bob"}})
	a := portcullis.decision with input as approved
	a.cache_ttl_seconds == 0
}

test_ssh_options_that_write_need_approval if {
	every argv in [
		["journalctl", "--vacuum-time=1s"],
		["journalctl", "-q", "--vacuum-size", "1K"],
		["journalctl", "--vac=1s"],
		["journalctl", "--rotate"],
		["journalctl", "--rot"],
		["journalctl", "--flush"],
		["journalctl", "--cursor-file=/tmp/c"],
		["journalctl", "-u", "nginx", "--setup-keys"],
	] {
		d := ssh_decision(["pii-readers"], [ssh_part(argv)])
		d.verdict == "require_approval"
		some arg in argv
		sprintf("%q writes with %s", [concat(" ", argv), arg]) in d.reasons
	}
	computed := object.union(ssh_part(["journalctl", "$X"]), {"dynamic": [1]})
	ssh_decision(["pii-readers"], [computed]).verdict == "require_approval"
	# words xargs appends from its input may be such options too
	appended := object.union(ssh_part(["journalctl"]), {"more_args": true, "via": ["xargs"]})
	a := ssh_decision(["pii-readers"], [appended])
	a.verdict == "require_approval"
	"\"journalctl\" takes further words from its input (xargs), which may be an option that writes" in a.reasons
	appended_uptime := object.union(ssh_part(["uptime"]), {"more_args": true, "via": ["xargs"]})
	ssh_decision(["pii-readers"], [appended_uptime]).verdict == "allow"
	# reading options stay allowed, short or long (-o json: test_ssh_output_modes_by_allow_list)
	every argv in [["journalctl", "-u", "nginx", "--since=today", "--no-pager"], ["journalctl", "-n", "50", "-o", "cat"]] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
}

ssh_subsystem(groups, name) := d if {
	d := portcullis.decision with input as {
		"identity": {"subject": "alice@example.com", "groups": groups},
		"connection": {"name": "web-1", "type": "ssh"},
		"command": {"kind": "ssh.subsystem", "raw": name, "ssh": {"subsystem": name}},
	}
}

test_ssh_subsystems_only_by_name if {
	# sftp: the proxy reads it, request by request
	d := ssh_subsystem(["dba", "pii-readers"], "sftp")
	d.verdict == "allow"
	# any other subsystem the policy does not name is denied, dba or not
	every name in ["scp", "netconf", "sftp-server", "SFTP", "sftp ", "", "x11"] {
		e := ssh_subsystem(["dba", "pii-readers"], name)
		e.verdict == "deny"
		sprintf("the subsystem %q is not allowed by the policy (allowed: sftp)", [name]) in e.reasons
		ssh_subsystem(["readonly"], name).verdict == "deny"
	}
	# a subsystem without its name is denied
	n := portcullis.decision with input as {
		"identity": {"subject": "alice@example.com", "groups": ["dba"]},
		"connection": {"name": "web-1", "type": "ssh"},
		"command": {"kind": "ssh.subsystem"},
	}
	n.verdict == "deny"
}

test_ssh_subsystem_named_is_allowed_and_said_unread if {
	d := ssh_subsystem(["dba", "pii-readers"], "netconf") with data.portcullis.ssh.subsystems as ["netconf"]
	d.verdict == "allow"
	"alice@example.com may use the \"netconf\" subsystem, allowed by name: the proxy cannot read it, its bytes pass undecided and unmasked" in d.reasons
	# still reserved to the privileged groups
	r := ssh_subsystem(["readonly"], "netconf") with data.portcullis.ssh.subsystems as ["netconf"]
	r.verdict == "deny"
}

test_ssh_read_options_by_allow_list if {
	# other machines, containers, files: approval (reader and dba alike)
	every argv in [
		["systemctl", "status", "-H", "root@10.0.0.9"],
		["systemctl", "status", "--host=root@10.0.0.9", "sshd"],
		["systemctl", "status", "--host", "10.0.0.9"],
		["systemctl", "status", "-M", "web"],
		["systemctl", "status", "--machine=web"],
		["systemctl", "status", "-lH", "h"],
		["systemctl", "status", "-r"],
		["systemctl", "status", "--ho=h"],
		["journalctl", "--image=/srv/disk.raw"],
		["journalctl", "--directory=/home/alice"],
		["journalctl", "-D", "/root"],
		["journalctl", "-fD/root"],
		["journalctl", "--file=/tmp/x.journal"],
		["journalctl", "--file", "/tmp/x.journal"],
		["journalctl", "-i", "/tmp/x.journal"],
		["journalctl", "--root=/mnt"],
		["journalctl", "--ima=/srv/disk.raw"],
		["journalctl", "-m"],
		["journalctl", "-M", "web"],
		["journalctl", "-u", "-D", "/root"],
	] {
		d := ssh_decision(["pii-readers"], [ssh_part(argv)])
		d.verdict == "require_approval"
		ssh_decision(["dba", "pii-readers"], [ssh_part(argv)]).verdict == "require_approval"
	}
	r := ssh_decision(["pii-readers"], [ssh_part(["systemctl", "status", "-H", "h"])])
	"\"systemctl status -H h\" uses -H, which is not among the options allowed to systemctl" in r.reasons
	# globs in arguments
	every argv in [["systemctl", "status", "ssh*"], ["systemctl", "status", "s?hd"], ["journalctl", "-u", "[a-z]*"], ["journalctl", "--unit=*"]] {
		g := ssh_decision(["pii-readers"], [ssh_part(argv)])
		g.verdict == "require_approval"
		some reason in g.reasons
		contains(reason, "a glob that may match more than it names")
	}
	# computed or appended words of systemctl
	computed := object.union(ssh_part(["systemctl", "status", "$X"]), {"dynamic": [2]})
	ssh_decision(["pii-readers"], [computed]).verdict == "require_approval"
	appended := object.union(ssh_part(["systemctl", "status"]), {"more_args": true, "via": ["xargs"]})
	ssh_decision(["pii-readers"], [appended]).verdict == "require_approval"
	# what a reader reads with stays allowed
	every argv in [
		["journalctl", "-u", "nginx", "--since=today", "--no-pager"],
		["journalctl", "-n", "50", "-o", "short-iso"],
		["journalctl", "-n50", "-usshd", "-fo", "cat"],
		["journalctl", "-b", "-1", "-p", "err", "--", "_PID=1"],
		["journalctl", "-xe"],
		["systemctl", "status", "nginx", "--no-pager", "-l", "-n", "20"],
		["systemctl", "status", "sshd.service", "--lines=5", "-o", "short-iso"],
	] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
	# the allow-list is policy data
	o := ssh_decision(["pii-readers"], [ssh_part(["journalctl", "-D", "/x"])]) with data.portcullis.ssh.read_options as {"journalctl": {"long": [], "short": [], "short_with_value": ["D"]}}
	o.verdict == "allow"
}

test_ssh_output_modes_by_allow_list if {
	every argv in [
		["journalctl", "-o", "json"],
		["journalctl", "-ojson-pretty"],
		["journalctl", "-fojson"],
		["journalctl", "-fo", "json-sse"],
		["journalctl", "--output=json-seq"],
		["journalctl", "--output", "json"],
		["systemctl", "status", "sshd", "-o", "json"],
		["systemctl", "status", "--output=json"],
	] {
		d := ssh_decision(["pii-readers"], [ssh_part(argv)])
		d.verdict == "require_approval"
		some reason in d.reasons
		contains(reason, "is not among the values allowed to it")
	}
	every argv in [
		["journalctl", "-o", "cat"],
		["journalctl", "-ocat", "-u", "json"],
		["journalctl", "-fo", "short-iso"],
		["journalctl", "--output", "with-unit"],
		["journalctl", "-u", "o", "-n", "json"],
		["systemctl", "status", "ssh", "-o", "short-iso"],
	] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
	# every field of an entry: to the privileged groups (below)
	ssh_verdict(["dba", "pii-readers"], ["journalctl", "--output=verbose"]) == "allow"
}

test_ssh_every_journal_field_to_the_privileged_only if {
	every argv in [
		["journalctl", "-o", "verbose"],
		["journalctl", "--output=export"],
		["journalctl", "-aoverbose"],
		["journalctl", "-fo", "export"],
		["systemctl", "status", "sshd", "-o", "verbose"],
		["journalctl", "-F", "COREDUMP_ENVIRON"],
		["journalctl", "-FCOREDUMP_ENVIRON"],
		["journalctl", "--field=_CMDLINE"],
		["journalctl", "--field", "COREDUMP"],
		["journalctl", "-o", "cat", "--output-fields=MESSAGE,COREDUMP_ENVIRON"],
		["journalctl", "-o", "cat", "--output-fields", "COREDUMP_PROC_MAPS"],
	] {
		d := ssh_decision(["pii-readers"], [ssh_part(argv)])
		d.verdict == "require_approval"
		ssh_decision(["readonly"], [ssh_part(argv)]).verdict == "require_approval"
		ssh_verdict(["dba", "pii-readers"], argv) == "allow"
	}
	every argv in [
		["journalctl", "-o", "cat", "--output-fields=MESSAGE,_PID"],
		["journalctl", "-F", "_SYSTEMD_UNIT"],
		["journalctl", "--field=SYSLOG_IDENTIFIER"],
		["journalctl", "-o", "short-iso", "-u", "verbose"],
		["journalctl", "--fields"],
	] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
	# the fields are policy data
	o := ssh_decision(["pii-readers"], [ssh_part(["journalctl", "-F", "_CMDLINE"])]) with data.portcullis.ssh.journal_fields as {"_CMDLINE"}
	o.verdict == "allow"
}

test_ssh_forward_allowed_is_said_unread if {
	d := portcullis.decision with input as {
		"identity": {"subject": "alice@example.com", "groups": ["dba", "pii-readers"]},
		"connection": {"name": "web-1", "type": "ssh"},
		"command": {"kind": "ssh.forward", "raw": "direct-tcpip 127.0.0.1:5432", "ssh": {"direction": "local", "host": "127.0.0.1", "port": 5432}},
	}
	d.verdict == "allow"
	"alice@example.com may use port, agent and X11 forwarding; the proxy cannot read a forwarded connection: its bytes pass undecided and unmasked" in d.reasons
}

ssh_forward_input := {
	"identity": {"subject": "alice@example.com", "groups": ["dba"]},
	"connection": {"name": "web-1", "type": "ssh"},
	"command": {"kind": "ssh.forward", "raw": "direct-tcpip 127.0.0.1:5432", "ssh": {"direction": "local", "host": "127.0.0.1", "port": 5432}},
}

test_ssh_forward_denied_under_masks if {
	d := portcullis.decision with input as ssh_forward_input
	d.verdict == "deny"
	"port, agent and X11 forwarding: the proxy cannot mask a forwarded connection, and alice@example.com's answers are masked (not a pii-reader); data.portcullis.ssh.forward_unmasked does not allow it" in d.reasons
}

test_ssh_forward_unmasked_only_by_name if {
	d := portcullis.decision with input as ssh_forward_input with data.portcullis.ssh.forward_unmasked as true
	d.verdict == "allow"
	"alice@example.com may use port, agent and X11 forwarding; the proxy cannot read a forwarded connection: its bytes pass undecided and unmasked, though alice@example.com's answers are masked (data.portcullis.ssh.forward_unmasked)" in d.reasons
	r := portcullis.decision with input as object.union(ssh_forward_input, {"identity": {"groups": ["readonly"]}}) with data.portcullis.ssh.forward_unmasked as true
	r.verdict == "deny"
}

test_ssh_sftp_reads_masked_outside_pii_readers if {
	every op in [{"operation": "read", "path": "/srv/a.log"}, {"operation": "write", "path": "/tmp/a", "flags": ["read", "write"]}] {
		d := ssh_sftp(["dba"], op)
		d.verdict == "mask"
		{"detector": "credit_card", "strategy": "partial"} in d.mask
	}
	ssh_sftp(["dba", "pii-readers"], {"operation": "read", "path": "/srv/a.log"}).verdict == "allow"
	ssh_sftp(["dba"], {"operation": "stat", "path": "/srv"}).verdict == "allow"
	ssh_sftp(["dba"], {"operation": "write", "path": "/tmp/a", "flags": ["write"]}).verdict == "allow"
}

test_ssh_sftp_an_open_without_the_write_bit_is_masked_as_a_read if {
	every flags in [["create"], ["append"], ["exclusive"], ["create", "truncate"], []] {
		d := ssh_sftp(["dba"], {"operation": "write", "path": "/tmp/a", "flags": flags})
		d.verdict == "mask"
	}
	ssh_sftp(["dba"], {"operation": "write", "path": "/tmp/a", "flags": ["write", "create", "truncate"]}).verdict == "allow"
	ssh_sftp(["dba", "pii-readers"], {"operation": "write", "path": "/tmp/a", "flags": ["create"]}).verdict == "allow"
}

test_ssh_sftp_names_masked_outside_pii_readers if {
	every op in ["list", "realpath", "readlink"] {
		d := ssh_sftp(["dba"], {"operation": op, "path": "/srv"})
		d.verdict == "mask"
		{"detector": "email", "strategy": "partial"} in d.mask
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/srv"}).verdict == "allow"
	}
}

test_ssh_journal_search_needs_approval_outside_pii_readers if {
	every argv in [["journalctl", "--grep", "4111 1111 1111 10"], ["journalctl", "--grep=4111"], ["journalctl", "-g", "4111"], ["journalctl", "-rg4111"], ["journalctl", "MESSAGE=card 4111 1111 1111 1111"], ["journalctl", "-u", "sshd", "CARD=4111111111111111"], ["journalctl", "_PID=1", "+", "MESSAGE=x"]] {
		ssh_verdict(["readonly"], argv) == "require_approval"
		ssh_verdict(["readonly", "pii-readers"], argv) == "allow"
	}
	ssh_verdict(["readonly"], ["journalctl", "-u", "sshd", "-n", "20"]) == "mask"
}

test_ssh_words_the_shell_expands_into_file_names_need_approval if {
	# `df --output=file /root/.*` lists /root
	ssh_verdict(["readonly"], ["df", "--output=file", "/root/.*"]) == "require_approval"
	ssh_verdict(["readonly"], ["df", "/home/?/x"]) == "require_approval"
	ssh_verdict(["readonly"], ["uptime", "[a]"]) == "require_approval"
	d := ssh_decision(["readonly"], [ssh_part(["df", "--output=file", "/root/.*"])])
	"\"df --output=file /root/.*\" has \"/root/.*\", which the shell may expand into the names of files anywhere" in d.reasons

	# words that name what they say, and a glob pattern's own command, stay as they were
	ssh_verdict(["readonly"], ["df", "-h", "/", "/var"]) == "mask"
	ssh_verdict(["pii-readers"], ["cat", "/var/log/syslog", "/var/log/auth.log"]) == "allow"
	ssh_verdict(["pii-readers"], ["cat", "/var/log/*"]) == "allow"
}

test_ssh_computed_words_the_shell_globs_need_approval if {
	# `df --output=file $BASH_EXECUTION_STRING # /root/.*`: the line, comment and all, split
	# and globbed (tests/test_ssh_probe_p6.py)
	line := object.union(ssh_part(["df", "--output=file", "$BASH_EXECUTION_STRING"]), {"dynamic": [2], "globbed": [2]})
	d := ssh_decision(["readonly"], [line])
	d.verdict == "require_approval"
	"\"df --output=file $BASH_EXECUTION_STRING\" has \"$BASH_EXECUTION_STRING\", computed when it runs, whose value the shell may expand into the names of files anywhere" in d.reasons

	# computed but not globbed ($HOME, "$X"): allowed, as before
	home := object.union(ssh_part(["uptime", "$HOME"]), {"dynamic": [1], "globbed": []})
	ssh_decision(["readonly"], [home]).verdict == "mask"

	# a computed command name is denied by its own rule, not asked for
	named := object.union(ssh_part(["$CMD"]), {"dynamic": [0], "globbed": [0]})
	ssh_decision(["readonly"], [named]).verdict == "deny"
}

test_ssh_sftp_writes_of_a_masked_dba_outside_write_paths_need_approval if {
	# a crontab root's cron runs: a shell whose output the proxy cannot mask
	every op in ["write", "remove", "rename", "mkdir", "rmdir", "setstat", "symlink", "link"] {
		d := ssh_sftp(["dba"], {"operation": op, "path": "/var/spool/cron/crontabs/root"})
		d.verdict == "require_approval"
		ssh_sftp(["dba"], {"operation": op, "path": "/tmp/x"}).verdict == "allow"
		ssh_sftp(["dba"], {"operation": op, "path": "/var/tmp/a/b"}).verdict == "allow"
		ssh_sftp(["dba"], {"operation": op, "path": "/tmp"}).verdict == "require_approval"
		ssh_sftp(["dba"], {"operation": op, "path": "/tmpx/y"}).verdict == "require_approval"
		ssh_sftp(["dba", "pii-readers"], {"operation": op, "path": "/home/alice/x"}).verdict == "allow"
	}
	d := ssh_sftp(["dba"], {"operation": "write", "path": "/home/alice/.profile"})
	"SFTP write of /home/alice/.profile: outside /tmp, /var/tmp a write may be a program the server runs, a shell whose output the proxy cannot mask; it needs approval outside pii-readers (data.portcullis.ssh.sftp.write_paths)" in d.reasons

	# both paths: out of /tmp into a crontab
	ssh_sftp(["dba"], {"operation": "rename", "path": "/tmp/x", "target": "/var/spool/cron/crontabs/root"}).verdict == "require_approval"

	# reads stay as they were (masked)
	ssh_sftp(["dba"], {"operation": "list", "path": "/var/spool/cron"}).verdict == "mask"

	# the policy's own allow-list, and shell_unmasked (a shell allowed anyway)
	ssh_sftp(["dba"], {"operation": "write", "path": "/data/drop/x"}).verdict == "allow" with data.portcullis.ssh.sftp.write_paths as ["/data/drop"]
	ssh_sftp(["dba"], {"operation": "write", "path": "/home/x"}).verdict == "allow" with data.portcullis.ssh.shell_unmasked as true
}

test_ssh_a_glob_pattern_takes_the_end_of_options_first if {
	ssh_verdict(["pii-readers"], ["cat", "--", "/var/log/syslog"]) == "allow"
	ssh_verdict(["pii-readers"], ["cat", "--", "/var/log/syslog", "/var/log/auth.log"]) == "allow"
	ssh_verdict(["readonly"], ["cat", "--", "/var/log/syslog"]) == "mask"

	# after it, every word matches the glob: a second `--` is a file name in the home directory
	ssh_verdict(["pii-readers"], ["cat", "--", "--"]) == "deny"
	ssh_verdict(["pii-readers"], ["cat", "--", "--", "/var/log/syslog"]) == "deny"
	ssh_verdict(["pii-readers"], ["cat", "--", "/etc/shadow"]) == "deny"
	ssh_verdict(["pii-readers"], ["cat", "--", "/var/log/../../etc/shadow"]) == "deny"
	ssh_verdict(["pii-readers"], ["cat", "--"]) == "deny"
	ssh_verdict(["pii-readers"], ["cat", "/var/log/syslog", "--", "/etc/shadow"]) == "deny"
	ssh_verdict(["pii-readers"], ["cat", "-n", "--", "/var/log/syslog"]) == "deny"

	# known before it runs, and no word appended by xargs
	computed := object.union(ssh_part(["cat", "--", "/var/log/syslog"]), {"dynamic": [1]})
	ssh_decision(["pii-readers"], [computed]).verdict == "deny"
	appended := object.union(ssh_part(["cat", "--", "/var/log/syslog"]), {"more_args": true})
	ssh_decision(["pii-readers"], [appended]).verdict == "deny"
	later := object.union(ssh_part(["cat", "--", "/var/log/$X"]), {"dynamic": [2]})
	ssh_decision(["pii-readers"], [later]).verdict == "deny"
}

# `systemctl --no-pager status ssh`: options before the verb, read as getopt_long reads them
test_ssh_options_before_the_verb if {
	every argv in [
		["systemctl", "--no-pager", "status", "ssh"],
		["systemctl", "-l", "--no-pager", "status", "ssh", "-n", "5"],
		["systemctl", "-n", "5", "status", "ssh"],
		["systemctl", "-n5", "--full", "status", "ssh"],
		["systemctl", "--lines=5", "status", "ssh"],
		["systemctl", "-lqn", "5", "status", "ssh"],
	] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
	every argv in [
		["systemctl", "--no-pager", "restart", "nginx"],
		["systemctl", "-n", "status", "stop", "nginx"], # -n takes `status`: the verb is stop
		["systemctl", "-ln", "status", "stop", "nginx"],
	] {
		ssh_verdict(["pii-readers"], argv) == "require_approval"
	}
	every argv in [
		["systemctl", "--state", "status", "stop", "nginx"], # --state takes `status`
		["systemctl", "--lines", "status", "stop", "nginx"],
		["systemctl", "--legend", "status", "stop", "nginx"],
		["systemctl", "--no-p", "status", "ssh"], # a prefix: not read
		["systemctl", "-n", "-n", "stop", "status"], # -n takes `-n`: the verb is stop
		["systemctl", "-H", "host", "status", "ssh"],
		["systemctl", "--", "status", "ssh"],
		["systemctl", "-5", "status", "ssh"],
		["systemctl", "enable", "status"],
	] {
		ssh_verdict(["pii-readers"], argv) == "deny"
	}
	computed := object.union(ssh_part(["systemctl", "$X", "status", "ssh"]), {"dynamic": [1]})
	ssh_decision(["pii-readers"], [computed]).verdict == "deny"
	value := object.union(ssh_part(["systemctl", "-n", "$X", "status", "ssh"]), {"dynamic": [2]})
	ssh_decision(["pii-readers"], [value]).verdict == "deny"
}

test_ssh_filters_by_argv_shape if {
	every argv in [
		["true"], ["false"], [":"], ["cat"], ["echo"], ["echo", "ok"], ["echo", "done", "-n"],
		["printf", "%s\\n", "x", "y"], ["printf", "%-10s %d\\t%%\\n", "a", "1"], ["printf", "%05.2d|%3s\\n", "1", "x"],
		["head"], ["head", "-n", "20"], ["head", "-20"], ["head", "-n5"], ["head", "--lines=5"],
		["tail"], ["tail", "-n", "+5"], ["tail", "-5"], ["wc", "-l"], ["wc", "--lines"],
		["grep", "-i", "error"], ["grep", "error", "-c"], ["grep", "-ie", "error"],
		["grep", "-e", "a", "-e", "b"], ["grep", "-A", "3", "-v", "x"], ["grep", "-m5", "x"],
		["grep", "--max-count=5", "x"], ["sort"], ["sort", "-rn"], ["sort", "-t", ",", "-k2"],
		["uniq", "-c"], ["uniq"],
	] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
	every argv in [
		["true", "x"], [":", "x"], ["cat", "-"], ["cat", "-n"], ["cat", "/etc/shadow"],
		["echo", "-n", "1"], ["echo", "-e", "x"], ["echo", "a\\c"], ["echo", "-"],
		["printf", "%s", "x"], ["printf", "-v", "PATH", "/tmp\\n"], ["printf", "%b\\n", "x"],
		["printf", "x\\c\\n"], ["printf"], ["printf", "%999999999d\\n", "1"],
		["printf", "%.99999s\\n", "x"], ["printf", "%*d\\n", "999999999", "1"],
		["head", "-c", "5"], ["head", "-n", "-5"], ["head", "/etc/shadow"], ["tail", "-f"],
		["tail", "-F"], ["tail", "-c5"], ["tail", "+5"], ["wc", "-c", "x"],
		["wc", "--files0-from=/etc/shadow"],
		["grep", "-f", "/etc/shadow"], ["grep", "-r", "x"], ["grep", "-R", "x"], ["grep", "x", "/etc/shadow"],
		["grep", "-e", "x", "/etc/shadow"], ["grep", "-o", "."], ["grep", "--color=always", "1"],
		["grep", "-e", "-x"], ["grep", "--file=/etc/shadow"], ["grep"], ["grep", "-e"],
		["sort", "-o", "/tmp/x"], ["sort", "/etc/shadow"], ["sort", "--compress-program=sh"],
		["sort", "-T", "/tmp"], ["sort", "--files0-from=/etc/x"], ["uniq", "a", "b"], ["uniq", "-", "out"],
	] {
		ssh_verdict(["pii-readers"], argv) == "deny"
	}
}

test_ssh_filters_take_no_computed_or_appended_words if {
	every part in [
		object.union(ssh_part(["grep", "$X"]), {"dynamic": [1]}),
		object.union(ssh_part(["head", "-n", "$(x)"]), {"dynamic": [2]}),
		object.union(ssh_part(["echo", "$HOME"]), {"dynamic": [1]}),
		object.union(ssh_part(["echo", "$HOME$?"]), {"dynamic": [1]}),
		object.union(ssh_part(["echo", "$??"]), {"dynamic": [1]}),
		object.union(ssh_part(["printf", "$F", "x"]), {"dynamic": [1]}),
		object.union(ssh_part(["cat"]), {"more_args": true}),
		object.union(ssh_part(["echo"]), {"more_args": true}),
		object.union(ssh_part(["printf", "%s\\n"]), {"more_args": true}),
		object.union(ssh_part(["printf", "%x\\n", "$(cat /var/log/x)"]), {"dynamic": [2]}),
		object.union(ssh_part(["printf", "%s %o\\n", "a", "$_"]), {"dynamic": [3]}),
		object.union(ssh_part(["printf", "%d\\n", "'$(cat /var/log/x)"]), {"dynamic": [2]}),
		object.union(ssh_part(["printf", "%.8s\\n", "$(cat /var/log/x)"]), {"dynamic": [2]}),
		object.union(ssh_part(["printf", "%c\\n", "$(cat /var/log/x)"]), {"dynamic": [2]}),
	] {
		ssh_decision(["pii-readers"], [part]).verdict == "deny"
	}
	every part in [
		object.union(ssh_part(["echo", "$?"]), {"dynamic": [1]}),
		object.union(ssh_part(["echo", "exit=$?"]), {"dynamic": [1]}),
		object.union(ssh_part(["printf", "%s\\n", "$(cat /var/log/x)"]), {"dynamic": [2]}),
		object.union(ssh_part(["printf", "%-10s|%5s %%\\t\\n", "$HOME", "$(uptime)"]), {"dynamic": [2, 3]}),
		object.union(ssh_part(["printf", "%x %c %.2s\\n", "10", "ab", "abc"]), {"dynamic": []}),
	] {
		ssh_decision(["pii-readers"], [part]).verdict == "allow"
	}
	redirected := object.union(ssh_part(["cat"]), {"redirects": [{"op": "<", "fd": null, "kind": "read", "target": "/etc/shadow", "dynamic": false}]})
	ssh_decision(["pii-readers"], [redirected]).verdict == "deny"
	written := object.union(ssh_part(["echo", "x"]), {"redirects": [{"op": ">", "fd": null, "kind": "write", "target": "/etc/motd", "dynamic": false}]})
	ssh_decision(["pii-readers"], [written]).verdict == "deny"
}

# grep, sort, uniq over masked output are oracles on what the mask hides
test_ssh_filters_that_search_need_approval_outside_pii_readers if {
	pipe := [ssh_part(["journalctl", "-n", "20"]), ssh_part(["grep", "-i", "error"])]
	ssh_decision(["readonly"], pipe).verdict == "require_approval"
	ssh_decision(["pii-readers"], pipe).verdict == "allow"
	every argv in [["sort"], ["uniq", "-c"]] {
		ssh_verdict(["readonly"], argv) == "require_approval"
	}
	every argv in [["head", "-n", "5"], ["tail"], ["wc", "-l"], ["cat"], ["echo", "ok"], ["true"]] {
		ssh_verdict(["readonly"], argv) == "mask"
	}
}

test_ssh_filters_replaced_by_data if {
	d := portcullis.decision with input as ssh_exec_input(["pii-readers"], [ssh_part(["true"])])
		with data.portcullis.ssh.filters as {}
	d.verdict == "deny"
}

test_ssh_set_takes_a_few_shell_options if {
	every argv in [
		["set", "-e"], ["set", "-euo", "pipefail"], ["set", "-o", "pipefail"], ["set", "+x"],
		["set", "-x", "-o", "errexit"], ["set", "+o", "nounset"],
	] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
	every argv in [
		["set"], ["set", "--", "/root/*"], ["set", "a"], ["set", "-k"], ["set", "+B"], ["set", "-f"],
		["set", "-o"], ["set", "-eo"], ["set", "-o", "posix"], ["set", "-o", "pipefail", "pipefail"],
		["set", "-"], ["set", "-oo", "pipefail"],
	] {
		ssh_verdict(["pii-readers"], argv) == "deny"
	}
}

test_ssh_a_locale_of_c_may_be_set if {
	every assignments in [["LANG=C"], ["LC_ALL=C.UTF-8", "LANG=POSIX"], ["LC_MESSAGES=C.utf8"]] {
		part := object.union(ssh_part(["df", "-h"]), {"assignments": assignments})
		ssh_decision(["pii-readers"], [part]).verdict == "allow"
	}
	every assignments in [["LANG=/tmp/x"], ["LANGUAGE=C"], ["LANG=C", "PATH=/tmp"], ["LC_ALL=C/x"], ["{fd}"], ["LOCPATH=C"]] {
		part := object.union(ssh_part(["df", "-h"]), {"assignments": assignments})
		ssh_decision(["pii-readers"], [part]).verdict == "deny"
	}
}

# xargs splits its input into words the command it runs prints apart (df's errors): a
# value the mask would find whole comes back in pieces (tests/test_ssh_probe_p12.py)
test_ssh_xargs_words_printed_apart_need_approval_outside_pii_readers if {
	appended := object.union(ssh_part(["df"]), {"more_args": true, "via": ["xargs"]})
	replaced := object.union(ssh_part(["df", "{}"]), {"more_args": true, "dynamic": [1], "via": ["xargs"]})
	through_sh := object.union(ssh_part(["df", "$@"]), {"dynamic": [1], "via": ["xargs", "sh -c"]})
	every part in [appended, replaced, through_sh] {
		d := ssh_decision(["readonly"], [part])
		d.verdict == "require_approval"
		sprintf("%q takes its words from its input (xargs) and prints them apart, in pieces the mask does not read (outside pii-readers)", [part.command]) in d.reasons
		ssh_decision(["pii-readers"], [part]).verdict == "allow"
	}
	null_file := object.union(appended, {"redirects": [{"op": "xargs -a", "fd": null, "kind": "read", "target": "/dev/null", "dynamic": false}]})
	null_stdin := object.union(appended, {"redirects": [{"op": "<", "fd": null, "kind": "read", "target": "/dev/null", "dynamic": false}]})
	every part in [null_file, null_stdin] {
		ssh_decision(["readonly"], [part]).verdict == "mask"
	}
	# stdin moved back to the pipe after /dev/null: xargs reads the pipe
	moved := object.union(appended, {"redirects": [
		{"op": "<", "fd": null, "kind": "read", "target": "/dev/null", "dynamic": false},
		{"op": "<&", "fd": 0, "kind": "fd", "target": "&3", "dynamic": false},
	]})
	ssh_decision(["readonly"], [moved]).verdict == "require_approval"
}

# journalctl --no-full cuts entries at 80 columns: a value crossing the cut comes back as
# its first digits (tests/test_ssh_probe_p13.py)
test_ssh_journal_cut_to_width_needs_approval if {
	every argv in [["journalctl", "--no-full"], ["journalctl", "-n", "5", "--no-full", "-o", "short-monotonic"]] {
		d := ssh_decision(["readonly"], [ssh_part(argv)])
		d.verdict == "require_approval"
		sprintf("%q uses --no-full, which is not among the options allowed to journalctl", [concat(" ", argv)]) in d.reasons
	}
	ssh_verdict(["readonly"], ["journalctl", "--full", "-o", "short-monotonic"]) == "mask"
}

# a variable neither sshd nor the shell sets is the upstream's environment (its rc files,
# SetEnv): reading it needs approval (tests/test_ssh_probe_p14.py)
test_ssh_a_variable_of_the_upstreams_environment_needs_approval if {
	every word in ["$DB_PASSWORD", "${API_KEY}", "x=$http_proxy", "$HOME$SECRET"] {
		part := object.union(ssh_part(["printf", "%s\\n", word]), {"dynamic": [2]})
		d := ssh_decision(["pii-readers"], [part])
		d.verdict == "require_approval"
	}
	d := ssh_decision(["readonly"], [object.union(ssh_part(["df", "$API_KEY"]), {"dynamic": [1]})])
	"\"df $API_KEY\" reads $API_KEY, a variable of the upstream's environment: neither sshd nor the shell sets it (data.portcullis.ssh.parameters)" in d.reasons
	every word in ["$HOME", "${USER}/x", "$PWD:$SSH_CONNECTION", "$1", "$_"] {
		part := object.union(ssh_part(["printf", "%s\\n", word]), {"dynamic": [2]})
		ssh_decision(["pii-readers"], [part]).verdict == "allow"
	}
	# a loop's own variable is the line's
	looped := object.union(ssh_part(["df", "$x"]), {"dynamic": [1]})
	ssh_decision(["pii-readers"], [looped]).verdict == "require_approval"
	d2 := portcullis.decision with input as object.union(ssh_exec_input(["pii-readers"], [looped]), {"command": {"kind": "ssh.exec", "raw": "for x in a; do df $x; done", "ssh": {"parts": [looped], "loop_variables": ["x"]}}})
	d2.verdict == "allow"
}

test_ssh_a_computed_here_string_needs_approval if {
	fed := object.union(ssh_part(["cat"]), {"redirects": [{"op": "<<<", "fd": null, "kind": "stdin", "target": "", "dynamic": true}]})
	ssh_decision(["pii-readers"], [fed]).verdict == "require_approval"
	literal := object.union(ssh_part(["cat"]), {"redirects": [{"op": "<<<", "fd": null, "kind": "stdin", "target": "", "dynamic": false}]})
	ssh_decision(["pii-readers"], [literal]).verdict == "allow"
}

# df, uptime and free quote an operand they refuse: a substitution's tab comes back as
# '$'\t'' (tests/test_ssh_probe_p15.py)
test_ssh_a_substitution_given_to_a_quoting_command_needs_approval_outside_pii_readers if {
	every word in ["$(cat /var/log/x)", "`cat /var/log/x`", "$(uptime)$(cat /var/log/x)"] {
		part := object.union(ssh_part(["df", word]), {"dynamic": [1]})
		ssh_decision(["readonly"], [part, ssh_part(["cat", "/var/log/x"])]).verdict == "require_approval"
		ssh_decision(["pii-readers"], [part, ssh_part(["cat", "/var/log/x"])]).verdict == "allow"
	}
	every word in ["$(uptime)", "`free -m`"] {
		part := object.union(ssh_part(["df", word]), {"dynamic": [1]})
		ssh_decision(["readonly"], [part, ssh_part(["uptime"]), ssh_part(["free", "-m"])]).verdict == "mask"
	}
	printed := object.union(ssh_part(["printf", "%s\\n", "$(cat /var/log/x)"]), {"dynamic": [2]})
	ssh_decision(["readonly"], [printed, ssh_part(["cat", "/var/log/x"])]).verdict == "mask"
}

test_ssh_a_command_run_detached_is_denied_unless_the_policy_allows_it if {
	every how in ["&", "<(...)", ">(...)", "setsid", "timeout past 60 s"] {
		detached := object.union(ssh_part(["uptime"]), {"via": [how]})
		d := ssh_decision(["pii-readers"], [detached, ssh_part(["df"])])
		d.verdict == "deny"
		some reason in d.reasons
		contains(reason, sprintf("runs detached (%s)", [how]))
		allowed := ssh_decision(["pii-readers"], [detached, ssh_part(["df"])]) with data.portcullis.ssh.detached as true
		allowed.verdict == "allow"
	}
	nohup := object.union(ssh_part(["uptime"]), {"via": ["nohup", "timeout"]})
	ssh_decision(["pii-readers"], [nohup]).verdict == "allow"
}

test_ssh_a_traced_printed_value_needs_approval_outside_pii_readers if {
	printed := object.union(ssh_part(["printf", "%s\\n", "$(cat /var/log/x)"]), {"dynamic": [2]})
	cat := ssh_part(["cat", "/var/log/x"])
	ssh_decision(["readonly"], [cat, printed]).verdict == "mask"
	every set in [["set", "-x"], ["set", "-eux"], ["set", "-o", "xtrace"], ["set", "-eo", "xtrace"]] {
		traced := ssh_decision(["readonly"], [ssh_part(set), cat, printed])
		traced.verdict == "require_approval"
		ssh_decision(["pii-readers"], [ssh_part(set), cat, printed]).verdict == "allow"
	}
	in_a_shell := object.union(printed, {"via": ["sh -x -c"]})
	ssh_decision(["readonly"], [cat, in_a_shell]).verdict == "require_approval"
	ssh_decision(["readonly"], [ssh_part(["set", "-e"]), cat, printed]).verdict == "mask"
}

ssh_open(groups) := {
	"identity": {"subject": "ann@example.com", "groups": groups},
	"connection": {"name": "web-1", "type": "ssh"},
	"command": {"kind": "session.open"},
}

test_an_ssh_session_carries_its_exec_time_limit if {
	every groups in [["readonly"], ["dba"], ["dba", "pii-readers"]] {
		d := portcullis.decision with input as ssh_open(groups)
		d.verdict == "allow"
		d.session_settings == {"ssh_exec_seconds": "3600", "ssh_max_channels": "16", "ssh_shell_seconds": "28800"}
	}
	day := portcullis.decision with input as ssh_open(["dba"])
		with data.portcullis.ssh.shell_seconds as 60
	day.session_settings.ssh_shell_seconds == "60"
	shorter := portcullis.decision with input as ssh_open(["readonly"])
		with data.portcullis.ssh.exec_seconds as 5
	shorter.session_settings.ssh_exec_seconds == "5"
	none := portcullis.decision with input as ssh_open(["readonly"])
		with data.portcullis.ssh.exec_seconds as 0
	none.session_settings.ssh_exec_seconds == "0"
	two := portcullis.decision with input as ssh_open(["readonly"])
		with data.portcullis.ssh.max_channels as 2
	two.session_settings.ssh_max_channels == "2"
	denied := portcullis.decision with input as ssh_open(["nobody"])
	denied.verdict == "deny"
	not denied.session_settings
}

test_only_ssh_sessions_carry_the_exec_time_limit if {
	http := portcullis.decision with input as {
		"identity": {"subject": "ann@example.com", "groups": ["readonly"]},
		"connection": {"name": "billing-api", "type": "http"},
		"command": {"kind": "session.open"},
	}
	not http.session_settings
	pg := portcullis.decision with input as {
		"identity": {"subject": "ann@example.com", "groups": ["readonly"]},
		"connection": {"name": "orders-db", "type": "postgres"},
		"command": {"kind": "session.open"},
	}
	not pg.session_settings.ssh_exec_seconds
}

ssh_prioritised(via) := {
	"identity": {"subject": "ann@example.com", "groups": ["dba", "pii-readers"]},
	"connection": {"name": "web-1", "type": "ssh"},
	"command": {"kind": "ssh.exec", "raw": "nice -n -20 df", "ssh": {
		"command": "nice -n -20 df",
		"parts": [{
			"argv": ["df"], "command": "df", "dynamic": [], "globbed": [], "assignments": [],
			"redirects": [], "via": via, "more_args": false,
		}],
	}},
}

test_a_command_at_a_raised_priority_is_denied if {
	d := portcullis.decision with input as ssh_prioritised(["nice", "raised priority"])
	d.verdict == "deny"
	some reason in d.reasons
	contains(reason, "runs at a raised priority")
	plain := portcullis.decision with input as ssh_prioritised(["nice"])
	plain.verdict == "allow"
	allowed := portcullis.decision with input as ssh_prioritised(["ionice", "raised priority"])
		with data.portcullis.ssh.raised_priority as true
	allowed.verdict == "allow"
}

# `systemctl status` shows its units' processes with their command lines: without a unit,
# of a slice or a scope, of a PID or with --with-dependencies, every login's (sshsec13)
test_ssh_status_of_sessions_processes_to_the_privileged_only if {
	every argv in [
		["systemctl", "status"],
		["systemctl", "status", "--full"],
		["systemctl", "-n5", "--full", "status"],
		["systemctl", "status", "-n", "5"],
		["systemctl", "status", "--lines", "5"],
		["systemctl", "status", "-o", "short-iso"],
		["systemctl", "status", "1234"],
		["systemctl", "status", "0x4d2"], # a PID too (base 0)
		["systemctl", "status", "+1234"],
		["systemctl", "status", "ssh.weird"],
		["systemctl", "status", "user.slice"],
		["systemctl", "status", "session-3.scope"],
		["systemctl", "status", "ssh", "user-1000.slice"],
		["systemctl", "status", "ssh", "--", "-.slice"],
		["systemctl", "status", "/home"],
		["systemctl", "status", "ssh", "--with-dependencies"],
	] {
		ssh_verdict(["pii-readers"], argv) == "require_approval"
		ssh_verdict(["readonly"], argv) == "require_approval"
	}
	every argv in [["systemctl", "status"], ["systemctl", "status", "user.slice"]] {
		ssh_verdict(["dba", "pii-readers"], argv) == "allow"
	}
	every argv in [
		["systemctl", "status", "ssh"],
		["systemctl", "status", "nginx; id"], # a service's name, escaped
		["systemctl", "status", "-n", "5", "ssh", "nginx.service"],
		["systemctl", "status", "--lines", "5", "getty@tty1.service"],
		["systemctl", "status", "-p", "x", "cron.timer", "ssh.socket", "multi-user.target"],
		["systemctl", "--no-pager", "status", "ssh"],
	] {
		ssh_verdict(["pii-readers"], argv) == "allow"
	}
}
