# ssh.exec / ssh.shell / ssh.forward / ssh.sftp.
#
# exec is matched word by word against data.portcullis.ssh command lists: a listed
# command allows any further arguments, except that a listed command ending in a glob
# (`cat /var/log/*`) requires every further argument to match that glob too. Commands
# with shell metacharacters are denied outright: the remote shell would run more than
# the words the policy looked at.
package portcullis

ssh_command := object.get(input, ["command", "ssh", "command"], object.get(input, ["command", "raw"], ""))

ssh_argv := input.command.ssh.argv if {
	is_array(input.command.ssh.argv)
} else := [w | some w in split(ssh_command, " "); w != ""]

ssh_interactive_kinds := {"ssh.shell": "interactive shells", "ssh.forward": "port forwarding", "ssh.sftp": "SFTP"}

deny contains sprintf("shell metacharacter %q in command", [c]) if {
	input.command.kind == "ssh.exec"
	some c in data.portcullis.ssh.shell_metacharacters
	contains(ssh_command, c)
}

deny contains "empty command" if {
	input.command.kind == "ssh.exec"
	count(ssh_argv) == 0
}

allow contains sprintf("%q is an allowed command", [pattern]) if {
	input.command.kind == "ssh.exec"
	some pattern in data.portcullis.ssh.allowed_commands
	ssh_matches(pattern)
}

needs_approval contains sprintf("%q needs approval", [pattern]) if {
	input.command.kind == "ssh.exec"
	some pattern in data.portcullis.ssh.approval_commands
	ssh_matches(pattern)
}

allow contains sprintf("%s may use %s", [subject, what]) if {
	what := ssh_interactive_kinds[input.command.kind]
	privileged
}

deny contains sprintf("%s are reserved to %s", [what, concat(", ", data.portcullis.privileged_groups)]) if {
	what := ssh_interactive_kinds[input.command.kind]
	not privileged
}

ssh_matches(pattern) if {
	words := split(pattern, " ")
	count(ssh_argv) >= count(words)
	every i, w in words {
		ssh_word_matches(w, ssh_argv[i])
	}
	ssh_rest_matches(words)
}

ssh_word_matches(pattern, word) if {
	not contains(pattern, "*")
	pattern == word
}

# Globs never cross "/" and never accept "..", so /var/log/* stays in /var/log.
ssh_word_matches(pattern, word) if {
	contains(pattern, "*")
	not contains(word, "..")
	glob.match(pattern, ["/"], word)
}

ssh_rest_matches(words) if not contains(words[count(words) - 1], "*")

ssh_rest_matches(words) if {
	last := words[count(words) - 1]
	contains(last, "*")
	every word in array.slice(ssh_argv, count(words), count(ssh_argv)) {
		ssh_word_matches(last, word)
	}
}
