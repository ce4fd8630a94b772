# ssh.exec / ssh.shell / ssh.forward / ssh.subsystem / ssh.sftp.
#
# An exec's command line is read by the PDP with a shell parser (pdp/domain/ssh_input.py)
# into input.command.ssh.parts: one entry per simple command the remote shell would run
# (each side of ; && || | &, inside $(...) and backticks, the script of sh -c, what env and
# xargs run). Every part is judged; the command is as strong as its weakest part: one
# part no rule allows denies it whole, one part that needs approval makes the whole need
# approval. A line that could not be read for sure (`malformed`) is denied, and so is
# input with no parts at all (not built by the PDP).
#
# A part is matched word by word against data.portcullis.ssh command lists: a listed
# command allows any further arguments, except that a listed command ending in a glob
# (`cat /var/log/*`) requires every further argument to match that glob too and to be
# known before it runs (not `$X`, `$(...)`, `{a,b}`, nor words xargs appends), after one
# `--` at most right after its listed words (`cat -- /var/log/x`). A glob names paths, not
# files: a symlink already in the directory (`/var/log/x -> /etc/shadow`, planted by anyone
# who may write there) is read through, and the PDP, which sees only the line, cannot tell;
# the directory a glob names must be writable only by those trusted with what its readers
# may then read (an SFTP symlink's target is decided, below; `ln` is in no list). A part may
# not set variables (LD_PRELOAD=... uptime, env X=1 ...; a C locale, LANG=C, it may), run a
# command whose name is computed, or redirect to or from any file but /dev/null. Filters
# (true, echo, cat, head, grep, ...: ssh_default_filters) are allowed in any line by the
# shape of their argv; systemctl's options may come before its verb.
#
# Interactive shells, port forwarding (and agent / X11 forwarding), subsystems and SFTP
# are reserved to the privileged groups; a subsystem other than sftp only by name (below).
#
# SFTP (an allowed `sftp` subsystem) is decided one request at a time (kind ssh.sftp): the
# operation, the path and, for rename / symlink / link, the second path as `target`, both
# made absolute with `.`, `..` and duplicate slashes resolved by the proxy. Symlinks
# already on the server are resolved too (the upstream's REALPATH): where a resolved path
# differs, it is decided as well, and the upstream receives the resolved one. Reads (read, list, stat, realpath, readlink, statvfs)
# are allowed to the privileged groups; so are writes (write, remove, rename, mkdir, rmdir,
# setstat, symlink, link), except that a write touching a path under
# data.portcullis.ssh.sftp.approval_paths — by either of its paths: a symlink pointing
# into /etc is a write under /etc — needs approval. So does, whatever the groups and paths,
# a write to the upstream account's login files (its home, the dot files in it, ~/bin) or
# to any account's .ssh, and a request setting a set-user-ID or set-group-ID bit or an
# owner (below). An operation the policy does not know, or a request without an absolute
# path, is denied.
#
# The reasons an exec's rules give go into ssh_denials and ssh_approvals, which
# decision.rego joins into deny and needs_approval for an ssh.exec (for the evaluator's
# rule index alone: it says why). Every rule opens with an equality (or a membership in a
# literal set) on input.command.kind: the evaluator indexes the equalities, so for any
# other kind those bodies are skipped without being evaluated, and a membership fails at
# its first line (the index does not take `in`). A helper rule in their place would be
# evaluated on every decision, every SQL statement included.
package portcullis

# The parts as a list, or none. The rules iterate input.command.ssh.parts itself: a rule
# reference is a lookup the evaluator pays for each time (~30 per exec decided, ~11% of its
# instructions). The PDP builds every exec's parts as a list (pdp/domain/ssh_input.py); an
# input whose parts is no list is denied ("not read by the PDP's shell parser", below),
# whatever else the rules then say of it.
ssh_parts := input.command.ssh.parts if {
	is_array(input.command.ssh.parts)
} else := []

# A wall-clock limit on every exec of an SSH session, in seconds (data.portcullis.ssh.
# exec_seconds; 0: none), given to the proxy at session.open as the session setting
# ssh_exec_seconds: past it the proxy ends the command (its process group by sshd's KILL,
# or, for a root account sshd will not signal, every process of its session:
# proxies/ssh/reaper.py), tells the client and records why (exit status 124). Nothing the
# shipped command lists allow needs to run for an hour, and a line that loops for ever
# (`while :; do :; done`, `free -s 0.001 >/dev/null`: allowed words, no end) holds an upstream
# core only that long — and never past its session: the proxy ends every command of a
# session that ends.
# With it, how many session channels (execs, shells, subsystems) one SSH session may hold
# open at once (data.portcullis.ssh.max_channels; 0: no cap but sshd's MaxSessions): a
# reader's connection opened 64 channels of `while :; do :; done; df` (sshd's MaxSessions
# in the tests), 64 upstream cores held for as long as the limit above lets each run. The
# proxy refuses a channel past it, saying why (session setting ssh_max_channels).
# And a wall-clock limit on every interactive shell (data.portcullis.ssh.shell_seconds,
# default 28800: a working day; 0: none; session setting ssh_shell_seconds): a shell left
# open (a `while :; do :; done` typed into it, a forgotten terminal) held its upstream
# session and core for as long as its client stayed connected. Past it the proxy closes
# the shell, telling the client and recording why (exit status 124). The proxy holds a
# subsystem (an SFTP session) to the same limit: it is as interactive as a shell.
ssh_default_exec_seconds := 3600

ssh_default_max_channels := 16

ssh_default_shell_seconds := 28800

session_settings := {
	"ssh_exec_seconds": sprintf("%v", [seconds]),
	"ssh_max_channels": sprintf("%v", [channels]),
	"ssh_shell_seconds": sprintf("%v", [shell]),
} if {
	input.command.kind == "session.open"
	connection.type == "ssh"
	seconds := object.get(data.portcullis.ssh, "exec_seconds", ssh_default_exec_seconds)
	channels := object.get(data.portcullis.ssh, "max_channels", ssh_default_max_channels)
	shell := object.get(data.portcullis.ssh, "shell_seconds", ssh_default_shell_seconds)
}

ssh_interactive_kinds := {
	"ssh.shell": "interactive shells",
	"ssh.forward": "port, agent and X11 forwarding",
	"ssh.subsystem": "SSH subsystems (SFTP, SCP)",
	"ssh.sftp": "SFTP",
}

ssh_reading_denials contains sprintf("the command cannot be read for sure: %s", [why]) if {
	input.command.kind == "ssh.exec"
	why := input.command.ssh.malformed
}

ssh_reading_denials contains "the command was not read by the PDP's shell parser" if {
	input.command.kind == "ssh.exec"
	not ssh_parsed
}

ssh_parsed if is_array(input.command.ssh.parts)

# ssh_denials and ssh_approvals gather their reasons from sets of at most five rules each
# (below), not from rules of their own: OPA 1.20.2 keeps one slot per rule position any
# lookup has returned and walks every slot on each lookup (decision.rego), and an exec's
# decision entered every rule of both sets, ssh_approvals' 17 (18 with the journal's
# fields): that many slots walked on each of its 80-150 lookups, and on every later
# decision of that evaluation worker, an SQL statement's too. An exec's rules now come
# within the first 6 of their sets but for its two allow rules (15th and 16th of allow,
# after every module's before this one). Each set opens with the kind's equality, as every
# rule of theirs does.
ssh_denials contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_reading_denials
}

ssh_denials contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_part_denials
}

ssh_approvals contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_listed_approvals
}

ssh_approvals contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_option_approvals
}

ssh_approvals contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_expansion_approvals
}

ssh_approvals contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_mask_approvals
}

ssh_reading_denials contains "empty command" if {
	input.command.kind == "ssh.exec"
	ssh_parsed
	count(ssh_parts) == 0
	not input.command.ssh.malformed
}

ssh_reading_denials contains sprintf("%q is not an allowed command", [part.command]) if {
	input.command.kind == "ssh.exec"
	some i, part in input.command.ssh.parts
	count(part.argv) > 0
	not i in ssh_listed_parts
	not i in ssh_filter_parts
}

ssh_reading_denials contains sprintf("%q: the command's name is computed when it runs", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	0 in part.dynamic
}

ssh_part_denials contains sprintf("%q sets %s", [part.command, concat(", ", part.assignments)]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	some assignment in part.assignments
	not ssh_locale_assignment(assignment)
}

# `LANG=C df -h`, `LC_ALL=C.UTF-8 sort`: the locale of a command's messages and formats, set
# to the C locale by name only (a locale's name may be a path glibc loads, or a directory
# gettext reads translations from: no other value).
ssh_locale_assignment(assignment) if {
	regex.match(`^(LANG|LC_ALL|LC_MESSAGES|LC_TIME|LC_NUMERIC|LC_COLLATE|LC_CTYPE)=(C|POSIX|C\.UTF-8|C\.utf8)$`, assignment)
}

# A `for` loop assigns its variable as an assignment does, to every command after it in
# the loop and past its end, exported if the name was: `for PATH in /tmp; do df; done` runs
# /tmp/df (anyone who can write /tmp, or a dba's SFTP upload, chooses what), though no part
# sets anything. The parser lists each loop's name (input.command.ssh.loop_variables, any
# depth); a name is allowed by its shape only, lowercase letters and digits: bash reads no
# such variable, and sshd exports none (environment variables are upper case, or hold an
# underscore: http_proxy).
ssh_part_denials contains sprintf("a loop sets %s: a loop's variable may only be named in lowercase letters and digits (PATH, HOME, IFS, ... are read by the shell and the commands it runs)", [name]) if {
	input.command.kind == "ssh.exec"
	some name in object.get(input.command.ssh, "loop_variables", [])
	not regex.match(`^[a-z][a-z0-9]*$`, name)
}

ssh_part_denials contains sprintf("%q %s %s: only /dev/null may be redirected to or from", [part.command, r.op, r.target]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	some r in part.redirects
	r.kind in {"read", "write"}
	not ssh_null_redirect(r)
}

ssh_null_redirect(r) if {
	r.target == "/dev/null"
	not r.dynamic
}

# A command the shell does not wait for outlives the line, its channel and its session:
# one run in the background (`x &`, `nohup x &`), in a process substitution (`df <(x)`:
# bash does not wait for it) or under setsid (a session of its own). The proxy ends a
# command whose client left before it ended (KILL to the line's process group, which sshd
# sends: proxies/ssh/channel.py), but once the shell has exited nothing is left to signal,
# and setsid's command is out of that group: `free -s 1 >/dev/null &` ran for ever after
# the session closed. So is timeout's (a group of its own unless --foreground) for as long
# as its DURATION: past a minute it counts as detached. The parser names these in a part's
# via ("&", "<(...)", ">(...)", "setsid", "timeout past 60 s"); such a part is denied
# unless data.portcullis.ssh.detached is true.
ssh_part_denials contains sprintf("%q runs detached (%s): out of reach of the signal that ends the line when its client leaves, it may outlive the session (data.portcullis.ssh.detached)", [part.command, how]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	some how in part.via
	how in {"&", "<(...)", ">(...)", "setsid", "timeout past 60 s"}
	object.get(data.portcullis.ssh, "detached", false) != true
}

# A command run above the account's default priority: nice with a negative adjustment
# (`nice -n -20 free -s 0.001 >/dev/null`: only root may, and a root upstream account
# does) or ionice's real-time class (`ionice -c1 journalctl`): a loop at the top of the
# scheduler's or the disk's queue, ahead of what the server is for. The parser names it in
# a part's via ("raised priority"); such a part is denied unless
# data.portcullis.ssh.raised_priority is true.
ssh_part_denials contains sprintf("%q runs at a raised priority (nice below 0, or ionice's real-time class), ahead of what the server is for (data.portcullis.ssh.raised_priority)", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	"raised priority" in part.via
	object.get(data.portcullis.ssh, "raised_priority", false) != true
}

allow contains sprintf("%q is an allowed command", [pattern]) if {
	input.command.kind == "ssh.exec"
	some [_, "allowed_commands", pattern] in ssh_listed
}

ssh_listed_approvals contains sprintf("%q needs approval (%q)", [pattern, ssh_parts[i].command]) if {
	input.command.kind == "ssh.exec"
	some [i, "approval_commands", pattern] in ssh_listed
}

# Which listed command each part matches, worked out once per decision (the rules above and
# below read it, where each matched every part against every pattern again): [i, list,
# pattern] for part i and a pattern of data.portcullis.ssh.allowed_commands or
# approval_commands. A pattern is tried only on the parts its first word can match, their
# command's name itself (ssh_matches asks for that word as any other), or on every part
# when that word is a glob (the second rule).
ssh_listed contains [i, list, pattern] if {
	some i, part in input.command.ssh.parts
	name := part.argv[0]
	some list in ["allowed_commands", "approval_commands"]
	some pattern in data.portcullis.ssh[list]
	startswith(pattern, name) # a builtin first: most patterns fail here
	split(pattern, " ")[0] == name
	ssh_matches(pattern, part)
}

ssh_listed contains [i, list, pattern] if {
	some list in ["allowed_commands", "approval_commands"]
	some pattern in data.portcullis.ssh[list]
	contains(pattern, "*")
	contains(split(pattern, " ")[0], "*")
	some i, part in input.command.ssh.parts
	ssh_matches(pattern, part)
}

ssh_listed_parts := {i | some [i, _, _] in ssh_listed}

# the parts matching a listed command that ends in a glob (`cat /var/log/*`)
ssh_globbed_parts := {i |
	some [i, "allowed_commands", pattern] in ssh_listed
	contains(pattern, "*")
}

# the parts that are filters (ssh_filter, below), once per decision: three rules ask
ssh_filter_parts := {i |
	some i, part in input.command.ssh.parts
	ssh_filter(part)
}

# Options by which an allowed command writes: journalctl deletes, rotates or flushes its
# journal (--vacuum-*, --rotate, ...) and writes a cursor file (--cursor-file). Matched as
# getopt_long reads a long option: any unique prefix of its name is that option (`--vac`,
# `--rot=`), with or without `=value`; an argument computed when it runs may be one too.
# Listed per command in data.portcullis.ssh.write_options; such an exec needs approval.
ssh_listed_approvals contains sprintf("%q writes with %s", [part.command, arg]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	options := data.portcullis.ssh.write_options[part.argv[0]]
	some i, arg in part.argv
	i > 0
	startswith(arg, "--")
	name := split(arg, "=")[0]
	count(name) > 2
	some option in options
	startswith(option, name)
}

ssh_listed_approvals contains sprintf("%q has an argument computed when it runs, which may be an option that writes", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	data.portcullis.ssh.write_options[part.argv[0]]
	some i in part.dynamic
	i > 0
}

# Words xargs appends from its input (more_args) are known only when it runs: any may be
# an option that writes (`journalctl -u sshd -o cat | xargs -n1 journalctl` with
# `--vacuum-time=1s` logged as a user name), as a computed argument may.
ssh_listed_approvals contains sprintf("%q takes further words from its input (xargs), which may be an option that writes", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	data.portcullis.ssh.write_options[part.argv[0]]
	part.more_args
}

# Options an allowed command may take, by allow-list (data.portcullis.ssh.read_options
# replaces these defaults): for each command, the long options by exact name (getopt_long's
# unique prefixes are not taken: `--ima` is --image), the short ones that take no value and
# those that take one (the rest of a cluster, `-usshd`, or the next word). An argument of
# such a command that begins with `-` (bar `--` and negative numbers: `-b -1`) and is not
# allowed — systemctl's -H/--host, -M/--machine, -r (other machines and containers),
# journalctl's -D/--directory, --file, --root, --image, -m (other files) — needs approval;
# so does one with a glob character (`*`, `?`, `[`: a unit or match pattern names more than
# it says), one computed when it runs, and words xargs appends. Every word that begins with
# `-` is read as an option, even where getopt would take it as the value of the one
# before: more is asked for, never less.
# Not systemctl's --with-dependencies: it adds the slices a unit is in (below, status).
# Not --no-full: it cuts each entry to 80 columns (a pipe's width) with an ellipsis at 90%,
# so a value crossing the cut comes back as its first digits (4532015112830... past one
# output mode's prefix, 453201511283036... past another's: one Luhn digit from the card),
# which no detector reads.
# Output modes whose text the detectors read: not json, json-pretty, json-sse or json-seq,
# which write a field holding a control character (a coloured log line) as an array of
# byte values — a card number in it passes every detector as a list of numbers.
ssh_text_output_modes := [
	"short", "short-full", "short-iso", "short-iso-precise", "short-precise", "short-monotonic",
	"short-unix", "short-delta", "verbose", "export", "cat", "with-unit",
]

ssh_default_read_options := {
	"journalctl": {
		"long": [
			"--no-pager", "--pager-end", "--follow", "--reverse", "--quiet", "--utc", "--no-hostname",
			"--full", "--all", "--catalog", "--dmesg", "--list-boots", "--system",
			"--show-cursor", "--no-tail", "--disk-usage", "--fields", "--help", "--version",
			"--truncate-newline", "--output-fields", "--lines", "--since", "--until", "--unit",
			"--user-unit", "--identifier", "--exclude-identifier", "--priority", "--facility",
			"--grep", "--case-sensitive", "--boot", "--cursor", "--after-cursor", "--output",
			"--field",
		],
		"short": ["e", "f", "r", "q", "l", "a", "x", "k", "N", "h"],
		"short_with_value": ["u", "t", "T", "p", "g", "c", "o", "S", "U", "F", "b", "n"],
		"values": {"--output": ssh_text_output_modes, "o": ssh_text_output_modes},
	},
	"systemctl": {
		"long": [
			"--no-pager", "--full", "--all", "--lines", "--output", "--quiet", "--no-legend",
			"--legend", "--type", "--state", "--property", "--value", "--plain",
			"--system", "--failed", "--help", "--version", "--show-types", "--reverse", "--after",
			"--before",
		],
		"short": ["l", "a", "q", "h"],
		"short_with_value": ["n", "o", "t", "p", "P"],
		"values": {"--output": ssh_text_output_modes, "o": ssh_text_output_modes},
		# of "long", those that take no value (systemd 252: the next word is the verb);
		# only these, and "long" ones with their `=value`, may come before the verb
		"long_flags": [
			"--no-pager", "--full", "--all", "--quiet", "--no-legend", "--plain", "--system",
			"--failed", "--show-types", "--reverse", "--after", "--before", "--value",
		],
	},
}

ssh_read_options := object.get(data.portcullis.ssh, "read_options", ssh_default_read_options)

ssh_option_approvals contains sprintf("%q uses %s, which is not among the options allowed to %s", [part.command, arg, part.argv[0]]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	options := ssh_read_options[part.argv[0]]
	some i, arg in part.argv
	i > 0
	not i in part.dynamic
	startswith(arg, "-")
	not ssh_option_allowed(arg, options)
}

ssh_option_approvals contains sprintf("%q has %q, a glob that may match more than it names", [part.command, arg]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	ssh_read_options[part.argv[0]]
	some i, arg in part.argv
	i > 0
	regex.match(`[*?\[]`, arg)
}

ssh_option_approvals contains sprintf("%q has an argument computed when it runs, which may be an option not allowed to it", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	ssh_read_options[part.argv[0]]
	some i in part.dynamic
	i > 0
}

ssh_option_approvals contains sprintf("%q takes further words from its input (xargs), which may be options not allowed to it", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	ssh_read_options[part.argv[0]]
	part.more_args
}

# Any other listed command's words are its own, but not what the shell makes of them: a
# word with a glob character (`*`, `?`, `[`; quoted or not, as the parts say it) is
# expanded into the names of the files it matches, anywhere the upstream's account may
# look: `df --output=file /root/.*` lists a directory the reader could not list (and a
# later `$_` holds the pattern, globbed again: the word that put it there asks). Such an
# argument needs approval, as it does for the commands with an allow-list of options
# (above), unless the command's pattern is a glob itself (`cat /var/log/*`: each word must
# match it and be known before it runs). A computed word's value is globbed too: a glob
# character in its text (`~root/.*`) asks; a value holding one comes only from the output
# of a command run before.
ssh_expansion_approvals contains sprintf("%q has %q, which the shell may expand into the names of files anywhere", [part.command, arg]) if {
	input.command.kind == "ssh.exec"
	some p, part in input.command.ssh.parts
	count(part.argv) > 1
	not ssh_read_options[part.argv[0]]
	not p in ssh_globbed_parts
	some i, arg in part.argv
	i > 0
	regex.match(`[*?\[]`, arg)
	not ssh_echo_status_word(part, i)
}

# A computed word outside quotes is split and globbed once its value is known, and that
# value may hold a glob character the line's text does not: $BASH_EXECUTION_STRING is the
# line itself (`df $BASH_EXECUTION_STRING # /root/.*`), a `for` loop's variable its list,
# `sh -c 'df $0' '/root/.*'` a word of the line, $(journalctl ...) what was logged. The
# parser lists such words in part.globbed (all but the parameters sshd and bash set, HOME,
# USER, ..., `~user`, and $(uptime) or $(free) alone); each needs approval, as a glob
# character in the text does.
ssh_expansion_approvals contains sprintf("%q has %q, computed when it runs, whose value the shell may expand into the names of files anywhere", [part.command, part.argv[i]]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	not ssh_read_options[part.argv[0]]
	some i in object.get(part, "globbed", [])
	i > 0
}

# A variable the line reads that neither sshd nor the shell sets, nor a loop of the line,
# is the upstream account's environment — its startup files (Debian's bash reads ~/.bashrc
# for an sshd exec), sshd's SetEnv, PAM's: `printf '%s\n' "$DB_PASSWORD"`, `df "$API_KEY"`
# (df names its operand in its error) print what no allowed command shows (env and
# printenv are not allowed). A computed word naming one needs approval, as the client's
# own words for it would. Names are read from the word's text (quotes removed: a `$NAME`
# that was single-quoted in a computed word asks too — more is asked for, never less);
# data.portcullis.ssh.parameters replaces the names known.
ssh_default_parameters := {
	# sshd (sshd(8) ENVIRONMENT) and the login
	"HOME", "USER", "LOGNAME", "SHELL", "PATH", "MAIL", "TZ", "TERM", "DISPLAY",
	"SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_ORIGINAL_COMMAND",
	# bash's own (bash(1) Shell Variables it sets)
	"_", "PWD", "OLDPWD", "BASH", "BASHPID", "BASH_VERSION", "BASH_SUBSHELL",
	"BASH_EXECUTION_STRING", "BASH_COMMAND", "EUID", "UID", "PPID", "RANDOM", "SRANDOM", "LINENO",
	"SECONDS", "EPOCHSECONDS", "EPOCHREALTIME", "HOSTNAME", "HOSTTYPE", "OSTYPE", "MACHTYPE",
	"SHLVL", "IFS", "OPTIND", "OPTERR",
}

ssh_parameters := object.get(data.portcullis.ssh, "parameters", ssh_default_parameters)

ssh_expansion_approvals contains sprintf("%q reads $%s, a variable of the upstream's environment: neither sshd nor the shell sets it (data.portcullis.ssh.parameters)", [part.command, name]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	some i in part.dynamic
	contains(part.argv[i], "$")
	some found in regex.find_all_string_submatch_n(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`, part.argv[i], -1)
	name := found[1]
	not name in ssh_parameters
	not name in object.get(input.command.ssh, "loop_variables", [])
}

# What a command's substitution printed, given to a command whose messages quote it: df,
# uptime and free name an operand they refuse in coreutils' shell quoting, a tab or a
# control character written `'$'\t''` (`df "$(cat /var/log/x)"` of a card logged as
# 4111<TAB>1111<TAB>1111<TAB>1111: df: '4111'$'\t''1111'...), which no detector reads —
# the value printed otherwise, as printf's %x did (test_ssh_probe_p10). Outside pii-readers
# such an argument of a command that is no filter needs approval when the line runs a
# command whose output the mask is for (any but ssh_quiet_commands: uptime's and free's
# numbers, df's mounts are not; `df $(uptime | free)` stays allowed). What a command
# printed reaches a word through a variable too: `$_`, the last word of the command before
# (`printf '%s\n' "$(cat /var/log/x)"; df "$_"`), and a `for` loop's variable, its list
# (`for x in "$(cat /var/log/x)"; do df "$x"; done`): such a word counts as a substitution.
ssh_quiet_commands := {"uptime", "free", "df", "true", "false", ":", "echo", "printf", "set"}

ssh_expansion_approvals contains sprintf("%q is given %q, what a command printed, which its messages may print otherwise than the mask reads (outside pii-readers)", [part.command, part.argv[i]]) if {
	input.command.kind == "ssh.exec"
	some p, part in input.command.ssh.parts
	some i in part.dynamic
	i > 0
	not pii_reader
	ssh_printed_value(part.argv[i])
	ssh_requoted(p)
	some source in input.command.ssh.parts
	count(source.argv) > 0
	not source.argv[0] in ssh_quiet_commands
}

# Whose words may come back in a quoting the detectors do not read: any command but a
# filter (its messages name an operand it refuses), and, once the line turns on xtrace
# (`set -x`, `set -o xtrace`, `sh -x -c`), every command: bash prints each command's words
# before running it, in $'...' escapes for the bytes its locale does not print — a card
# logged with en dashes between its groups came back from `set -x; printf '%s\n' "$(cat
# /var/log/x)" >/dev/null` as $'4111\342\200\2231111...' in the C locale (sshd's, without
# PAM's), which no detector reads (tests/test_ssh_probe_p19.py).
ssh_requoted(p) if not p in ssh_filter_parts

ssh_requoted(_) if ssh_xtrace

ssh_xtrace if {
	some part in input.command.ssh.parts
	part.argv[0] == "set"
	some i, arg in part.argv
	i > 0
	regex.match(`^-[a-z]*x`, arg)
}

ssh_xtrace if {
	some part in input.command.ssh.parts
	part.argv[0] == "set"
	some i, arg in part.argv
	i > 1
	arg == "xtrace"
	startswith(part.argv[i - 1], "-")
}

ssh_xtrace if {
	some part in input.command.ssh.parts
	some via in part.via
	endswith(via, " -x -c")
}

ssh_printed_value(word) if regex.match("\\$\\(|`|\\$\\{?_([^A-Za-z0-9_]|$)", word)

ssh_printed_value(word) if {
	some name in object.get(input.command.ssh, "loop_variables", [])
	regex.match(sprintf("\\$\\{?%s([^A-Za-z0-9_]|$)", [name]), word)
}

# A here-string's computed word (`cat <<< "$DB_PASSWORD"`) is read by no part's argv: the
# parser gives only that it is computed, so the names it reads are not known; it needs
# approval as a variable above does.
ssh_expansion_approvals contains sprintf("%q reads a computed here-string (<<<), which may hold a variable of the upstream's environment", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	some r in part.redirects
	r.op == "<<<"
	r.dynamic
}

# Filters: commands that only compute over what they are given — their arguments or their
# standard input (a pipe, a here-document, the client's own data; a redirection from a
# file is decided as any other: only /dev/null) — allowed in any line by the shape of
# their argv, an allow-list (data.portcullis.ssh.filters replaces these defaults; `{}`
# allows none): `df -h || true`, `uptime && echo ok`, `journalctl -n 20 | head -n 5`.
# Not a file operand (`uniq in out` writes out, `grep x /etc/shadow` reads it), not an
# option that reads or writes a file or runs a program (`grep -f F`, `grep -r` with no
# file: the working directory, `sort -o F`, `sort --compress-program`, `wc
# --files0-from`), follows (`tail -f`), or cuts a line's characters apart (`head -c`,
# `grep -o`, `grep --color`: the detectors mask what they read whole, `4111...` split
# over lines or wrapped in colour codes is no card to them); no computed word (its value
# may be any of those), no words xargs appends. Each option is allowed by name as
# read_options' are ("short" take no value, "short_with_value" theirs attached or the next
# word, not beginning with `-`; "long" exactly; "long_with_value" only with `=value`;
# "numbered": `-20`); "pattern": one operand, the pattern, unless `-e` gives it; "oracle":
# outside pii-readers it needs approval, as journalctl --grep does: which lines match (or
# their order, or which repeat) tells what the mask hides, digit by digit.
# echo and printf print their words: echo without options (`-n`, or `\c` in a word — dash's
# echo reads it —, and the next output would continue the line: `echo -n 1; journalctl`
# makes a card 17 digits, which no detector reads; nor words xargs appends, which may be
# those), its computed words `$?` alone; printf by a format that ends its output with a
# newline (`%b` and escapes but `\n` and `\t` not taken; bash's `printf -v NAME` sets a
# variable, PATH among them: no leading `-`; widths of 3 digits at most: `%999999999d`
# prints a gigabyte in a second, through the proxy's masking, from a line of a few bytes). true, false and `:` without words; `set`
# with a few of the shell's options (below).
ssh_default_filters := {
	"true": {},
	"false": {},
	":": {},
	"echo": {},
	"printf": {},
	"set": {},
	"cat": {},
	"head": {"short_with_value": ["n"], "long_with_value": ["--lines"], "numbered": true},
	"tail": {"short_with_value": ["n"], "long_with_value": ["--lines"], "numbered": true},
	"wc": {"short": ["l"], "long": ["--lines"]},
	"grep": {
		"short": ["i", "v", "c", "n", "w", "x", "q", "s", "E", "F", "h", "H"],
		"short_with_value": ["e", "A", "B", "C", "m"],
		"long": [
			"--ignore-case", "--invert-match", "--count", "--line-number", "--word-regexp",
			"--line-regexp", "--quiet", "--no-messages", "--extended-regexp", "--fixed-strings",
		],
		"long_with_value": ["--max-count", "--after-context", "--before-context", "--context"],
		"pattern": true,
		"oracle": true,
	},
	"sort": {
		"short": ["r", "n", "u", "h", "f", "b", "V", "g", "M", "s"],
		"short_with_value": ["k", "t"],
		"long": [
			"--reverse", "--numeric-sort", "--unique", "--human-numeric-sort", "--ignore-case",
			"--version-sort", "--stable",
		],
		"oracle": true,
	},
	"uniq": {
		"short": ["c", "d", "u", "i"],
		"short_with_value": ["f", "s", "w"],
		"long": ["--count", "--repeated", "--unique", "--ignore-case"],
		"oracle": true,
	},
}

ssh_filters := object.get(data.portcullis.ssh, "filters", ssh_default_filters)

ssh_filter(part) if {
	spec := ssh_filters[part.argv[0]]
	not part.argv[0] in {"echo", "printf", "set"} # their own shapes, below
	not part.more_args
	count(part.dynamic) == 0
	every i, arg in part.argv {
		ssh_filter_word(spec, part.argv, i, arg)
	}
	ssh_filter_operands(spec, part.argv)
}

ssh_filter(part) if {
	ssh_filters.echo
	part.argv[0] == "echo"
	not part.more_args
	not ssh_echo_option(part)
	every i, arg in part.argv {
		ssh_echo_word(part, i, arg)
	}
}

ssh_filter(part) if {
	ssh_filters.printf
	part.argv[0] == "printf"
	not part.more_args
	count(part.argv) > 1
	not 1 in part.dynamic
	format := part.argv[1]
	not startswith(format, "-")
	regex.match(`^([^\\%]|%[-+ #0]*[0-9]{0,3}(\.[0-9]{0,3})?[sdiouxXc%]|\\[nt])*\\n$`, format)
	ssh_printf_arguments(part, format)
}

# A computed argument (`"$(cat /var/log/x)"`, `"$_"`) is text the upstream read, which the
# detectors see only as printf prints it: through %x, %o, %d (of `'X`: a character's code),
# %c or a precision (%.8s: a card's first 8 digits) it comes out as no detector reads it
# (`printf '%x\n' "$(cat /var/log/cards)"` gave a card in hex). With one, every conversion
# must print its argument whole: %s, padded at most (`%-10s`), or `%%`. Literal arguments
# are the client's own words: any conversion above.
ssh_printf_arguments(part, _) if {
	every i in part.dynamic {
		i < 2
	}
}

ssh_printf_arguments(part, format) if {
	regex.match(`^([^\\%]|%-?[0-9]{0,3}s|%%|\\[nt])*\\n$`, format)
}

ssh_echo_option(part) if startswith(part.argv[1], "-")

# `set -euo pipefail`, `set -x`, `set +e`: the shell's options e, u, x and -o pipefail,
# errexit, nounset, xtrace only (set's other words are the positional parameters, `$1`,
# which the parser reads as set by no one; -k makes any `NAME=value` word an assignment,
# -B and +f change what the shell expands)
ssh_shell_options := {"pipefail", "errexit", "nounset", "xtrace"}

ssh_filter(part) if {
	ssh_filters.set
	part.argv[0] == "set"
	count(part.argv) > 1
	not part.more_args
	count(part.dynamic) == 0
	every i, arg in part.argv {
		ssh_set_word(part.argv, i, arg)
	}
}

ssh_set_word(_, 0, _)

ssh_set_word(argv, i, arg) if {
	i > 0
	regex.match(`^[-+]([eux]+|[eux]*o)$`, arg)
	ssh_set_value(argv, i, arg)
}

ssh_set_word(argv, i, arg) if {
	i > 1
	arg in ssh_shell_options
	regex.match(`^[-+][eux]*o$`, argv[i - 1])
}

ssh_set_value(_, _, arg) if not endswith(arg, "o")

ssh_set_value(argv, i, arg) if {
	endswith(arg, "o")
	argv[i + 1] in ssh_shell_options
}

ssh_echo_word(_, 0, _)

ssh_echo_word(part, i, arg) if {
	i > 0
	not i in part.dynamic
	not contains(arg, "\\")
}

ssh_echo_word(part, i, _) if ssh_echo_status_word(part, i)

# `echo $?`, `echo "rc=$?"`: a computed word whose one `$` is `$?` (the word is computed,
# so that `$` is an expansion; no other can hide in these characters), a number
ssh_echo_status_word(part, i) if {
	part.argv[0] == "echo"
	i in part.dynamic
	regex.match(`^[A-Za-z0-9_=:./@%+, ]*\$\?[A-Za-z0-9_=:./@%+, -]*$`, part.argv[i])
}

ssh_filter_word(_, _, 0, _)

ssh_filter_word(_, argv, i, arg) if {
	i > 0
	not startswith(arg, "-")
}

ssh_filter_word(spec, argv, i, arg) if {
	i > 0
	startswith(arg, "-")
	ssh_filter_option(spec, arg)
	ssh_filter_value_follows(spec, argv, i)
}

ssh_filter_option(spec, arg) if arg in object.get(spec, "long", [])

ssh_filter_option(spec, arg) if {
	startswith(arg, "--")
	contains(arg, "=")
	split(arg, "=")[0] in object.get(spec, "long_with_value", [])
}

ssh_filter_option(spec, arg) if {
	object.get(spec, "numbered", false)
	regex.match(`^-[0-9]+$`, arg)
}

ssh_filter_option(spec, arg) if {
	not startswith(arg, "--")
	not regex.match(`^-[0-9]+$`, arg)
	ssh_option_allowed(arg, ssh_filter_options(spec))
}

ssh_filter_options(spec) := {
	"short": object.get(spec, "short", []),
	"short_with_value": object.get(spec, "short_with_value", []),
	"long": [],
}

ssh_filter_value_follows(spec, argv, i) if not ssh_takes_next_word(argv[i], ssh_filter_options(spec))

ssh_filter_value_follows(spec, argv, i) if {
	ssh_takes_next_word(argv[i], ssh_filter_options(spec))
	value := argv[i + 1]
	not startswith(value, "-")
}

ssh_filter_operands(spec, argv) if {
	not object.get(spec, "pattern", false)
	count(ssh_filter_operand_words(spec, argv)) == 0
}

ssh_filter_operands(spec, argv) if {
	object.get(spec, "pattern", false)
	count(ssh_filter_operand_words(spec, argv)) == 1
	not ssh_filter_pattern_given(spec, argv)
}

ssh_filter_operands(spec, argv) if {
	object.get(spec, "pattern", false)
	count(ssh_filter_operand_words(spec, argv)) == 0
	ssh_filter_pattern_given(spec, argv)
}

ssh_filter_operand_words(spec, argv) := [i |
	some i, arg in argv
	i > 0
	not startswith(arg, "-")
	not ssh_takes_next_word(argv[i - 1], ssh_filter_options(spec))
]

# `-e PATTERN` (in a cluster: `-ie x`): every operand is then a file
ssh_filter_pattern_given(_, argv) if {
	some i, arg in argv
	i > 0
	startswith(arg, "-")
	not startswith(arg, "--")
	contains(arg, "e")
}

allow contains sprintf("%q only computes over what it is given", [ssh_parts[i].command]) if {
	input.command.kind == "ssh.exec"
	some i in ssh_filter_parts
}

ssh_mask_approvals contains sprintf("%q: which lines it matches, orders or counts would tell what the mask hides (outside pii-readers)", [part.command]) if {
	input.command.kind == "ssh.exec"
	not pii_reader
	some i in ssh_filter_parts
	part := ssh_parts[i]
	object.get(ssh_filters[part.argv[0]], "oracle", false)
}

# A pattern search of the journal (--grep, -g) is an oracle on what the mask hides: the
# entries come back masked, but which ones match says whether a card number begins with
# 4111, then 41111, ... digit by digit. Outside pii-readers it needs approval; any short
# option cluster holding a g counts (-rg, -ng: more is asked for, never less).
ssh_mask_approvals contains sprintf("%q searches the journal by a pattern (%s): which entries match would tell what the mask hides", [part.command, arg]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	part.argv[0] == "journalctl"
	not pii_reader
	some i, arg in part.argv
	i > 0
	ssh_journal_search(arg)
}

ssh_journal_search(arg) if split(arg, "=")[0] == "--grep"

# Words xargs takes from its input reach the command it runs as arguments, and the command
# prints each apart (df's, uptime's, free's errors: `df: 4111: No such file or directory`):
# xargs splits its input at blanks, or at any character `-d` names, so a value the detectors
# find on one line (a card logged as `4111 1111 1111 1111`, or 4532015112830366 cut at
# every 5 by `journalctl -o cat | xargs -d 5 df`) reaches the client in pieces none of
# them reads. Outside pii-readers a command xargs runs needs approval, unless xargs reads
# nothing (`-a /dev/null`, or its standard input last redirected from /dev/null).
ssh_mask_approvals contains sprintf("%q takes its words from its input (xargs) and prints them apart, in pieces the mask does not read (outside pii-readers)", [part.command]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	"xargs" in part.via
	not pii_reader
	not ssh_xargs_reads_nothing(part)
}

ssh_xargs_reads_nothing(part) if {
	some r in part.redirects
	r.op == "xargs -a"
	ssh_null_redirect(r)
}

ssh_xargs_reads_nothing(part) if {
	stdin := [r | some r in part.redirects; ssh_stdin_redirect(r)]
	last := stdin[count(stdin) - 1]
	last.op == "<"
	ssh_null_redirect(last)
}

ssh_stdin_redirect(r) if {
	r.fd == null
	r.op in {"<", "<&", "<>", "<<", "<<-", "<<<"}
}

ssh_stdin_redirect(r) if r.fd == 0

# a match (FIELD=VALUE, as a word of its own: `journalctl MESSAGE=<a whole line>`,
# `CARD=4111...`) says whether an entry holds exactly that value: whether anything comes
# back tells a guessed masked value is in the journal. A value word of an option holding
# `=` (`-u a=b`) is asked about too: more is asked for, never less.
ssh_journal_search(arg) if {
	not startswith(arg, "-")
	contains(arg, "=")
}

ssh_journal_search(arg) if {
	startswith(arg, "-")
	not startswith(arg, "--")
	contains(arg, "g")
}

# An option whose values are an allow-list too (options.values: --output, -o): the value
# given with it, attached (`--output=json`, `-ojson`, `-fojson`) or the next word. Of those
# values, the output modes that print every field of an entry (verbose, export) are the
# privileged groups' only (below: ssh_every_field_modes).
ssh_option_approvals contains ssh_refused_value(part, option, value, allowed) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	options := ssh_read_options[part.argv[0]]
	some option, allowed in object.get(options, "values", {})
	some i, arg in part.argv
	i > 0
	# what ssh_value_at needs of the word it starts at, in builtins: an option word
	# (`--output...`, a cluster holding the letter), so that the line's other words are
	# not looked up in its three bodies (each call a rule lookup, with a walk of the rule
	# index's slots: 35 of `journalctl -u nginx -n 50 --no-pager`'s 135 lookups)
	startswith(arg, "-")
	contains(arg, trim_left(option, "-"))
	value := ssh_value_at(part, i, option, options)
	not ssh_value_allowed(value, allowed)
}

ssh_value_allowed(value, allowed) if {
	value in allowed
	not value in ssh_every_field_modes
}

ssh_value_allowed(value, allowed) if {
	value in allowed
	value in ssh_every_field_modes
	privileged
}

ssh_refused_value(part, option, value, allowed) := sprintf("%q: %s %q is not among the values allowed to it", [part.command, option, value]) if {
	not value in allowed
}

ssh_refused_value(part, option, value, allowed) := sprintf("%q: %s %s prints every field of an entry (a crashed process's environment, COREDUMP_ENVIRON; command lines): outside the privileged groups it needs approval", [part.command, option, value]) if {
	value in allowed
	value in ssh_every_field_modes
}

ssh_value_at(part, i, option, _) := substring(arg, count(option) + 1, -1) if {
	startswith(option, "--")
	arg := part.argv[i]
	startswith(arg, concat("", [option, "="]))
}

ssh_value_at(part, i, option, _) := part.argv[i + 1] if {
	startswith(option, "--")
	part.argv[i] == option
}

ssh_value_at(part, i, option, options) := value if {
	not startswith(option, "-")
	arg := part.argv[i]
	startswith(arg, "-")
	not startswith(arg, "--")
	chars := split(substring(arg, 1, -1), "")
	some j, c in chars
	c == option
	every k, before in chars {
		ssh_flag_before(k, j, before, options)
	}
	rest := substring(arg, j + 2, -1)
	value := ssh_attached_or_next(rest, part, i)
}

# What a journal entry holds beyond its message and the metadata the short modes show is
# not every reader's: systemd-coredump logs a crashed process's environment
# (COREDUMP_ENVIRON: its DB_PASSWORD, its cloud keys), its open files, memory maps and
# command line, and, under Storage=journal, the core itself (COREDUMP: its memory); any
# process's _CMDLINE is what it was started with (a password given as an argument). The
# output modes verbose and export print every field of every entry (`systemctl status x
# -o verbose` too, of x's crashes: it matches COREDUMP_UNIT), and --output-fields and
# -F/--field name the fields `-o cat` prints or whose every value is listed
# (`journalctl -F COREDUMP_ENVIRON`). Outside the privileged groups such an exec needs
# approval, unless the fields it names are all of ssh_journal_fields (the message and the
# metadata of the short modes; data.portcullis.ssh.journal_fields replaces them). The
# output modes are refused by the rule of allowed values above (ssh_value_allowed), in its
# one pass over the words: a rule of their own cost a decided journalctl line ~0.4 M
# evaluator instructions (bench/pdp/policy_ir.py --set ssh).
ssh_every_field_modes := {"verbose", "export"}

ssh_default_journal_fields := {
	"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER", "SYSLOG_PID",
	"SYSLOG_TIMESTAMP", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "ERRNO", "UNIT", "USER_UNIT",
	"INVOCATION_ID", "_PID", "_UID", "_GID", "_COMM", "_EXE", "_HOSTNAME", "_TRANSPORT",
	"_BOOT_ID", "_MACHINE_ID", "_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT", "_SYSTEMD_SLICE",
	"_SYSTEMD_INVOCATION_ID", "_SOURCE_REALTIME_TIMESTAMP", "_SOURCE_MONOTONIC_TIMESTAMP",
	"__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "__CURSOR",
}

ssh_journal_fields := object.get(data.portcullis.ssh, "journal_fields", ssh_default_journal_fields)

ssh_mask_approvals contains sprintf("%q: %s names %s, a field of the journal outside data.portcullis.ssh.journal_fields (a crashed process's environment, COREDUMP_ENVIRON; command lines): outside the privileged groups it needs approval", [part.command, option, name]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	part.argv[0] == "journalctl"
	options := ssh_read_options.journalctl
	some option in ["--output-fields", "--field", "F"]
	some i, arg in part.argv
	i > 0
	startswith(arg, "-")
	contains(arg, trim_left(option, "-"))
	value := ssh_value_at(part, i, option, options)
	some name in split(value, ",")
	not name in ssh_journal_fields
	not privileged
}

# What `systemctl status` shows of a unit is its processes too, each with its whole command
# line (the CGroup tree): a password given as an argument (`mysqldump -pS3cret`, a cron
# job's, in cron.service), which no detector reads as anything to mask — the journal's
# _CMDLINE is the privileged groups' only (above). Without a unit it shows the whole
# system's tree, every process of every login session (`systemctl status`, as `ps -eww`
# would); a slice or a scope (user.slice, session-3.scope) or a PID (`systemctl status
# 1234`: the unit of that process, a login's scope) names sessions' processes, and
# --with-dependencies adds the slices a unit is in (system.slice: every service's
# processes; not in read_options). Outside the privileged groups a status needs approval
# unless it names one unit at least, each of a type whose processes are a service's own
# (data.portcullis.ssh.status_unit_types; a name without a type is a service), named as
# a unit, not a path nor a number (below).
ssh_default_status_unit_types := {"service", "socket", "timer", "target", "path", "mount", "automount", "swap", "device"}

ssh_status_unit_types := object.get(data.portcullis.ssh, "status_unit_types", ssh_default_status_unit_types)

ssh_mask_approvals contains sprintf("%q: systemctl status shows processes' command lines (a password given as an argument); outside the privileged groups it needs approval unless it names units of the types %s (not a slice, a scope or a PID: login sessions' processes)", [part.command, concat(", ", sort(ssh_status_unit_types))]) if {
	input.command.kind == "ssh.exec"
	some part in input.command.ssh.parts
	part.argv[0] == "systemctl"
	"status" in part.argv
	not privileged
	not ssh_status_names_units(part)
}

ssh_status_names_units(part) if {
	not "--" in part.argv # after it a word beginning with `-` is a unit too (-.slice)
	options := object.get(ssh_read_options, "systemctl", {})
	units := [w |
		some i, w in part.argv
		i > 0
		not startswith(w, "-")
		w != "status"
		not ssh_status_value(part.argv[i - 1], options)
	]
	count(units) > 0
	every w in units {
		ssh_status_unit(w)
	}
}

# a word after an option that takes the next word as its value (`-n 5`, `--lines 5`)
ssh_status_value(before, options) if ssh_takes_next_word(before, options)

ssh_status_value(before, options) if {
	startswith(before, "--")
	not contains(before, "=")
	before in object.get(options, "long", [])
	not before in object.get(options, "long_flags", [])
}

# A unit's name as systemctl reads it: one beginning with a letter (a word it reads as a
# number is a PID: `1234`, `0x4d2`, ` 1234`, `+1234`; one beginning with `/` a path), of
# one of the allowed types by its last `.suffix`, or without a `.` (a service: systemctl
# makes `nginx; id` nginx\x3b\x20id.service).
ssh_status_unit(name) if {
	regex.match(`^[A-Za-z][^.]*$`, name)
}

ssh_status_unit(name) if {
	regex.match(`^[A-Za-z].*\.[a-z]+$`, name)
	parts := split(name, ".")
	parts[count(parts) - 1] in ssh_status_unit_types
}

ssh_attached_or_next(rest, _, _) := rest if rest != ""

ssh_attached_or_next("", part, i) := part.argv[i + 1]

ssh_option_allowed("--", _)

ssh_flag_before(k, j, _, _) if k >= j

ssh_flag_before(k, j, c, options) if {
	k < j
	c in options.short
}

ssh_option_allowed(arg, _) if regex.match(`^-[0-9]+$`, arg)

ssh_option_allowed(arg, options) if {
	startswith(arg, "--")
	split(arg, "=")[0] in options.long
}

# a cluster of short options: each a flag, up to one that takes the rest as its value
ssh_option_allowed(arg, options) if {
	not startswith(arg, "--")
	chars := split(substring(arg, 1, -1), "")
	count(chars) > 0
	every c in chars {
		c in options.short
	}
}

ssh_option_allowed(arg, options) if {
	not startswith(arg, "--")
	chars := split(substring(arg, 1, -1), "")
	some j, c in chars
	c in options.short_with_value
	every k, before in chars {
		ssh_flag_before(k, j, before, options)
	}
}

# One rule per interactive kind, each opening with an equality on input.command.kind: the
# index skips all eight for any other kind (a rule opening with `kind in {...}` is entered
# and fails at that line, on every SQL statement; callgrind: 0.03M instructions each).
# What a shell computes is nothing the proxy can mask: its output is masked by the
# detectors as it passes, but `| base64`, `| tr 0-9 a-j` or `| rev` turn any value into
# text no detector reads. So, as with forwarding, a shell goes only to those whose answers
# are not masked (pii-readers), unless the policy allows it to masked members by name
# (data.portcullis.ssh.shell_unmasked: true), and that allow says so.
allow contains sprintf("%s may use %s", [subject, ssh_interactive_kinds["ssh.shell"]]) if {
	input.command.kind == "ssh.shell"
	privileged
	pii_reader
}

allow contains sprintf("%s may use %s; its output is masked by the detectors only, which what the shell computes (base64, tr) escapes, though %s's answers are masked (data.portcullis.ssh.shell_unmasked)", [subject, ssh_interactive_kinds["ssh.shell"], subject]) if {
	input.command.kind == "ssh.shell"
	privileged
	not pii_reader
	object.get(data.portcullis.ssh, "shell_unmasked", false) == true
}

deny contains sprintf("%s: the proxy cannot mask what a shell computes (base64, tr), and %s's answers are masked (not a pii-reader); data.portcullis.ssh.shell_unmasked does not allow it", [ssh_interactive_kinds["ssh.shell"], subject]) if {
	input.command.kind == "ssh.shell"
	privileged
	not pii_reader
	object.get(data.portcullis.ssh, "shell_unmasked", false) != true
}

deny contains sprintf("%s are reserved to %s", [ssh_interactive_kinds["ssh.shell"], concat(", ", data.portcullis.privileged_groups)]) if {
	input.command.kind == "ssh.shell"
	not privileged
}

# A forwarded connection's bytes are nothing the proxy reads, so nothing it can mask: to
# those whose answers are masked (outside pii-readers) forwarding is denied, unless the
# policy allows it unmasked by name (data.portcullis.ssh.forward_unmasked: true); every
# allow says the bytes pass unread. A rule on the destination reads input.command.ssh.host
# (one spelling: an IP literal canonical, also as `address`; a name lower-cased; the proxy
# refuses any other, proxies/ssh/destinations.py) and port. The upstream resolves a name:
# decide names by an allow-list, never by the address they may resolve to.
allow contains sprintf("%s may use %s; the proxy cannot read a forwarded connection: its bytes pass undecided and unmasked", [subject, ssh_interactive_kinds["ssh.forward"]]) if {
	input.command.kind == "ssh.forward"
	privileged
	pii_reader
}

allow contains sprintf("%s may use %s; the proxy cannot read a forwarded connection: its bytes pass undecided and unmasked, though %s's answers are masked (data.portcullis.ssh.forward_unmasked)", [subject, ssh_interactive_kinds["ssh.forward"], subject]) if {
	input.command.kind == "ssh.forward"
	privileged
	not pii_reader
	object.get(data.portcullis.ssh, "forward_unmasked", false) == true
}

deny contains sprintf("%s: the proxy cannot mask a forwarded connection, and %s's answers are masked (not a pii-reader); data.portcullis.ssh.forward_unmasked does not allow it", [ssh_interactive_kinds["ssh.forward"], subject]) if {
	input.command.kind == "ssh.forward"
	not pii_reader
	object.get(data.portcullis.ssh, "forward_unmasked", false) != true
}

deny contains sprintf("%s are reserved to %s", [ssh_interactive_kinds["ssh.forward"], concat(", ", data.portcullis.privileged_groups)]) if {
	input.command.kind == "ssh.forward"
	not privileged
}

# A subsystem is allowed by name. The proxy reads one, sftp (each request decided, kind
# ssh.sftp); any other the policy names in data.portcullis.ssh.subsystems (none by default)
# is relayed as bytes nobody decides or masks, and its allow says so, in the decision the
# evidence keeps. A subsystem neither readable nor named is denied, to everyone.
ssh_readable_subsystems := {"sftp"}

ssh_named_subsystems := {name | some name in object.get(data.portcullis.ssh, "subsystems", [])}

allow contains sprintf("%s may use the %q subsystem (each request decided)", [subject, name]) if {
	input.command.kind == "ssh.subsystem"
	privileged
	name := object.get(input.command, ["ssh", "subsystem"], "")
	name in ssh_readable_subsystems
}

allow contains sprintf("%s may use the %q subsystem, allowed by name: the proxy cannot read it, its bytes pass undecided and unmasked", [subject, name]) if {
	input.command.kind == "ssh.subsystem"
	privileged
	name := object.get(input.command, ["ssh", "subsystem"], "")
	not name in ssh_readable_subsystems
	name in ssh_named_subsystems
}

deny contains sprintf("the subsystem %q is not allowed by the policy (allowed: %s)", [name, concat(", ", sort(ssh_readable_subsystems | ssh_named_subsystems))]) if {
	input.command.kind == "ssh.subsystem"
	name := object.get(input.command, ["ssh", "subsystem"], "")
	not name in ssh_readable_subsystems
	not name in ssh_named_subsystems
}

deny contains sprintf("%s are reserved to %s", [ssh_interactive_kinds["ssh.subsystem"], concat(", ", data.portcullis.privileged_groups)]) if {
	input.command.kind == "ssh.subsystem"
	not privileged
}

allow contains sprintf("%s may use %s", [subject, ssh_interactive_kinds["ssh.sftp"]]) if {
	input.command.kind == "ssh.sftp"
	privileged
}

deny contains sprintf("%s are reserved to %s", [ssh_interactive_kinds["ssh.sftp"], concat(", ", data.portcullis.privileged_groups)]) if {
	input.command.kind == "ssh.sftp"
	not privileged
}

# A file's contents read through SFTP are masked as `cat`'s output is, outside pii-readers:
# the detectors (the proxy, which cannot mask data read at offsets, refuses such a read).
# An open for reading counts whatever else its flags say.
mask_rules contains rule if {
	input.command.kind == "ssh.sftp"
	ssh_sftp_reads_contents
	not pii_reader
	some rule in pii_detector_masks
}

ssh_sftp_reads_contents if input.command.ssh.operation == "read"

# The names the server answers with — a directory's entries, a resolved path, a link's
# target — are masked as `ls`'s output is, outside pii-readers: a file named like a card
# number or an e-mail address (the proxy masks each name of the answer).
mask_rules contains rule if {
	input.command.kind == "ssh.sftp"
	input.command.ssh.operation in ssh_sftp_named
	not pii_reader
	some rule in pii_detector_masks
}

ssh_sftp_named := {"list", "realpath", "readlink"}

ssh_sftp_reads_contents if "read" in object.get(input.command.ssh, "flags", [])

# An open without the WRITE bit reads, whatever else its flags say: OpenSSH's sftp-server
# opens it O_RDONLY (CREAT, APPEND or EXCL alone read an existing file). The proxy puts
# `read` among such an open's flags; flags that do not are read so all the same.
ssh_sftp_reads_contents if {
	input.command.ssh.operation == "write"
	flags := input.command.ssh.flags
	not "write" in flags
}


ssh_matches(pattern, part) if {
	words := split(pattern, " ")
	count(part.argv) >= count(words)
	every i, w in words {
		ssh_word_matches(w, part, i)
	}
	ssh_rest_matches(words, part)
}

# `cat -- /var/log/x`: a listed command ending in a glob takes getopt's end of options,
# `--`, right after its listed words (the first only: a second is a file name, and must
# match the glob as any other argument), known before it runs, then at least one argument,
# each matching the glob as above. A command the operator lists this way must read `--` as
# getopt does (GNU cat, head, tail, grep and less do); one that does not reads a file named
# `--` in the account's home directory.
ssh_matches(pattern, part) if {
	words := split(pattern, " ")
	last := count(words) - 1
	contains(words[last], "*")
	count(part.argv) > count(words)
	part.argv[last] == "--"
	not last in part.dynamic
	not part.more_args
	every i, w in array.slice(words, 0, last) {
		ssh_word_matches(w, part, i)
	}
	every i in numbers.range(last + 1, count(part.argv) - 1) {
		ssh_word_matches(words[last], part, i)
	}
}

# `systemctl --no-pager status ssh`: a listed command of several words whose command has
# an allow-list of options (read_options) takes options before its second word (the verb),
# as getopt_long does (systemctl permutes: `status ssh --no-pager` runs too). The verb is
# the first word that is neither an option nor an option's value, read exactly: before it
# only options that take no value (short ones of "short", long ones of "long_flags",
# without a value there being an error) or whose value is attached (`--lines=5`, `-n5`),
# and short ones whose value is the next word (`-n 5`), a word not beginning with `-`.
# Anything else before it (a long option whose value may be the next word: `--state
# status stop nginx` stops nginx; `--`, a number, a computed word) and the words are
# matched where they stand.
ssh_matches(pattern, part) if {
	words := split(pattern, " ")
	count(words) > 1
	not contains(pattern, "*")
	options := ssh_read_options[part.argv[0]]
	words[0] == part.argv[0]
	not 0 in part.dynamic
	some v, verb in part.argv
	v > 1
	verb == words[1]
	not v in part.dynamic
	count(part.argv) >= (v + count(words)) - 1
	not ssh_takes_next_word(part.argv[v - 1], options)
	every k in numbers.range(1, v - 1) {
		ssh_before_the_verb(part, k, options)
	}
	every j, w in array.slice(words, 2, count(words)) {
		ssh_word_matches(w, part, (v + j) + 1)
	}
}

ssh_before_the_verb(part, k, options) if {
	not k in part.dynamic
	arg := part.argv[k]
	startswith(arg, "-")
	ssh_flag_or_attached(arg, options)
	ssh_value_follows(part, k, options)
}

ssh_before_the_verb(part, k, options) if {
	not k in part.dynamic
	not startswith(part.argv[k], "-")
	ssh_takes_next_word(part.argv[k - 1], options)
}

ssh_flag_or_attached(arg, options) if arg in object.get(options, "long_flags", [])

ssh_flag_or_attached(arg, options) if {
	startswith(arg, "--")
	contains(arg, "=")
	split(arg, "=")[0] in options.long
}

ssh_flag_or_attached(arg, options) if {
	not startswith(arg, "--")
	count(arg) > 1
	ssh_option_allowed(arg, options)
	not regex.match(`^-[0-9]+$`, arg)
}

ssh_value_follows(part, k, options) if not ssh_takes_next_word(part.argv[k], options)

ssh_value_follows(part, k, options) if {
	ssh_takes_next_word(part.argv[k], options)
	value := part.argv[k + 1]
	not startswith(value, "-")
	not (k + 1) in part.dynamic
}

# a cluster of short flags ending in one whose value is the next word (`-n`, `-ln`)
ssh_takes_next_word(arg, options) if {
	startswith(arg, "-")
	not startswith(arg, "--")
	chars := split(substring(arg, 1, -1), "")
	count(chars) > 0
	chars[count(chars) - 1] in options.short_with_value
	every c in array.slice(chars, 0, count(chars) - 1) {
		c in options.short
	}
}

ssh_word_matches(pattern, part, i) if {
	not contains(pattern, "*")
	not i in part.dynamic
	pattern == part.argv[i]
}

# Globs never cross "/" and never accept "..", so /var/log/* stays in /var/log.
ssh_word_matches(pattern, part, i) if {
	contains(pattern, "*")
	not i in part.dynamic
	word := part.argv[i]
	not contains(word, "..")
	glob.match(pattern, ["/"], word)
}

ssh_rest_matches(words, _) if not contains(words[count(words) - 1], "*")

ssh_rest_matches(words, part) if {
	last := words[count(words) - 1]
	contains(last, "*")
	not part.more_args
	every i, _ in part.argv {
		ssh_rest_word(last, count(words), part, i)
	}
}

ssh_rest_word(_, listed, _, i) if i < listed

ssh_rest_word(last, listed, part, i) if {
	i >= listed
	ssh_word_matches(last, part, i)
}

ssh_sftp_reads := {"read", "list", "stat", "realpath", "readlink", "statvfs"}

ssh_sftp_writes := {"write", "remove", "rename", "mkdir", "rmdir", "setstat", "symlink", "link"}

deny contains sprintf("the SFTP operation %q is not known to the policy", [op]) if {
	input.command.kind == "ssh.sftp"
	op := object.get(input.command, ["ssh", "operation"], "")
	not op in ssh_sftp_reads
	not op in ssh_sftp_writes
}

deny contains "an SFTP request without an absolute path" if {
	input.command.kind == "ssh.sftp"
	not startswith(object.get(input.command, ["ssh", "path"], ""), "/")
}

needs_approval contains sprintf("SFTP %s of %s: writes under %s need approval", [op, path, under]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	op in ssh_sftp_writes
	some path in [input.command.ssh.path, object.get(input.command.ssh, "target", "")]
	some under in data.portcullis.ssh.sftp.approval_paths
	ssh_path_under(path, under)
}

# The upstream account's login files: sshd runs ~/.ssh/rc for every channel and logs in
# whoever holds a key of ~/.ssh/authorized_keys (past the proxy), and the account's shell
# reads its startup files before every line the proxy sends (bash run by sshd ~/.bashrc, a
# login shell ~/.profile and what that puts on PATH, Debian's ~/bin): a function or a
# DEBUG trap there runs in place of every command decided, any session's, readers' too,
# and forges what the proxy reads back. The proxy gives every SFTP request the account's
# `homes` (the server's start directory, and the account's home as the server names it);
# a write to one of them itself (or a directory above it), to a dot entry in it or
# anything under one, or to its bin/ needs approval, whatever the groups, approval_paths and write_paths say. (A dot
# file that is a symlink already, the target elsewhere, is written there as its target's
# path: keep the account's login files its own, not links, on the upstream host.)
needs_approval contains sprintf("SFTP %s of %s: the upstream account's login files (its home %s, the dot files in it, ~/.ssh, ~/bin) are read by its sshd and shell before every command decided, any session's; a write there needs approval", [op, path, home]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	op in ssh_sftp_writes
	some path in [input.command.ssh.path, object.get(input.command.ssh, "target", "")]
	some home in object.get(input.command.ssh, "homes", [])
	ssh_login_file(path, home)
}

# Any account's ~/.ssh (authorized_keys, rc, environment), wherever its home: a key added
# there logs in to the server past the proxy, as that account.
needs_approval contains sprintf("SFTP %s of %s: an account's .ssh directory (authorized_keys: a login past the proxy) needs approval", [op, path]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	op in ssh_sftp_writes
	some path in [input.command.ssh.path, object.get(input.command.ssh, "target", "")]
	".ssh" in split(path, "/")
}

ssh_login_file(path, home) if path == home

# a directory above the home (a rename of /home, its files edited elsewhere, renamed back)
ssh_login_file(path, home) if {
	startswith(path, "/")
	startswith(home, concat("", [trim_right(path, "/"), "/"]))
}

ssh_login_file(path, home) if {
	prefix := concat("", [trim_right(home, "/"), "/"])
	startswith(path, prefix)
	entry := split(substring(path, count(prefix), -1), "/")[0]
	ssh_login_entry(entry)
}

ssh_login_entry(entry) if startswith(entry, ".")

ssh_login_entry("bin")

# What a request's ATTRS set (open, setstat, mkdir, lsetstat; an fsetstat as a setstat of
# its handle's path): `mode`, the permission bits, and `owner`, "uid:gid". A set-user-ID
# or set-group-ID bit makes the file run as its owner (the upstream account: root's, for
# a root account) for whoever runs it: a masked dba's upload to /tmp (allowed without
# approval, write_paths) chmod 4755 was a root shell for every local user of the server.
# A change of owner gives the file to another account. Either needs approval, whatever
# the groups and paths; a mode that is no number too.
needs_approval contains sprintf("SFTP %s of %s: it sets the set-user-ID or set-group-ID bit (mode %v, decimal): the file would run as its owner, the upstream account, for whoever runs it; it needs approval", [op, path, mode]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	path := object.get(input.command.ssh, "path", "")
	mode := input.command.ssh.mode
	not ssh_plain_mode(mode)
}

ssh_plain_mode(mode) if {
	is_number(mode)
	bits.and(mode, 3072) == 0 # 0o6000
}

needs_approval contains sprintf("SFTP %s of %s: it gives the file to owner %v (uid:gid); it needs approval", [op, path, owner]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	path := object.get(input.command.ssh, "path", "")
	owner := input.command.ssh.owner
}

# A write whose request does not say the account's homes (no proxy of this version sent
# it) cannot be held by the rule above: it needs approval.
needs_approval contains sprintf("SFTP %s of %s: the request does not name the upstream account's home, whose login files a write may change; it needs approval", [op, path]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	op in ssh_sftp_writes
	path := object.get(input.command.ssh, "path", "")
	not ssh_homes_named
}

ssh_homes_named if {
	homes := input.command.ssh.homes
	is_array(homes)
	count(homes) > 0
	every home in homes {
		startswith(home, "/")
	}
}

# Outside pii-readers (a dba whose answers are masked, who gets no shell: 75065d9), a write
# anywhere is a way to a shell: a file the server runs as root (/var/spool/cron/crontabs/
# root, a unit under /run/systemd, /proc/sys/kernel/core_pattern) runs `base64` over what
# the mask hides, and `cat /var/log/x` brings it back as text no detector reads. Where a
# masked member may write without approval is an allow-list,
# data.portcullis.ssh.sftp.write_paths (default /tmp and /var/tmp; inside them, not the
# directory itself), for both of a request's paths; data.portcullis.ssh.shell_unmasked (a
# shell allowed anyway) lifts it.
ssh_default_sftp_write_paths := ["/tmp", "/var/tmp"]

ssh_sftp_write_paths := object.get(data.portcullis.ssh, ["sftp", "write_paths"], ssh_default_sftp_write_paths)

needs_approval contains sprintf("SFTP %s of %s: outside %s a write may be a program the server runs, a shell whose output the proxy cannot mask; it needs approval outside pii-readers (data.portcullis.ssh.sftp.write_paths)", [op, path, concat(", ", ssh_sftp_write_paths)]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	op in ssh_sftp_writes
	not pii_reader
	object.get(data.portcullis.ssh, "shell_unmasked", false) != true
	some path in [input.command.ssh.path, object.get(input.command.ssh, "target", "")]
	path != ""
	not ssh_path_under_one(path, ssh_sftp_write_paths)
}

ssh_path_under_one(path, dirs) if {
	some dir in dirs
	startswith(path, concat("", [trim_right(dir, "/"), "/"]))
}

# A path is under a directory when it is that directory or inside it (/etc, not /etcetera).
ssh_path_under(path, dir) if path == dir

ssh_path_under(path, dir) if startswith(path, concat("", [trim_right(dir, "/"), "/"]))
