package portcullis_test

import data.portcullis

ssh_input(groups, argv) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "web-1", "type": "ssh"},
	"command": {"kind": "ssh.exec", "raw": concat(" ", argv), "ssh": {"command": concat(" ", argv), "argv": argv}},
}

ssh_verdict(groups, argv) := d.verdict if {
	d := portcullis.decision with input as ssh_input(groups, argv)
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
	ssh_verdict(["readonly"], ["cat"]) == "deny"
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
}

test_ssh_shell_metacharacters_denied if {
	i := {
		"identity": {"subject": "alice@example.com", "groups": ["dba"]},
		"connection": {"name": "web-1"},
		"command": {"kind": "ssh.exec", "raw": "uptime; rm -rf /", "ssh": {"command": "uptime; rm -rf /", "argv": ["uptime;", "rm", "-rf", "/"]}},
	}
	d := portcullis.decision with input as i
	d.verdict == "deny"
	"shell metacharacter \";\" in command" in d.reasons
}

test_ssh_argv_derived_from_command if {
	i := {
		"identity": {"subject": "alice@example.com", "groups": ["pii-readers"]},
		"connection": {"name": "web-1"},
		"command": {"kind": "ssh.exec", "raw": "systemctl  status nginx"},
	}
	d := portcullis.decision with input as i
	d.verdict == "allow"
}

test_ssh_empty_command_denied if {
	ssh_verdict(["dba"], []) == "deny"
}

test_ssh_interactive_kinds_only_for_dba if {
	every kind in ["ssh.shell", "ssh.forward", "ssh.sftp"] {
		i := {
			"identity": {"subject": "alice@example.com", "groups": ["readonly"]},
			"connection": {"name": "web-1"},
			"command": {"kind": kind},
		}
		d := portcullis.decision with input as i
		d.verdict == "deny"
		d2 := portcullis.decision with input as object.union(i, {"identity": {"groups": ["dba", "pii-readers"]}})
		d2.verdict == "allow"
	}
}

test_ssh_shell_output_masked_for_dba_without_pii if {
	i := {
		"identity": {"subject": "alice@example.com", "groups": ["dba"]},
		"connection": {"name": "web-1"},
		"command": {"kind": "ssh.shell"},
	}
	d := portcullis.decision with input as i
	d.verdict == "mask"
	{"detector": "email", "strategy": "partial"} in d.mask
}
