"""The PDP's domain: what a decision point knows and decides, apart from any transport.

- identity.py: tokens verified (issuer, audience, expiry, keys) into identities.
- sessions.py: the sessions a PDP holds; policy_input.py the input document of a command.
- decisions.py: evaluate, log, answer (the Decider); effects.py what a verdict changes.
- approvals.py: approval requests and their book; approver_view.py what an approver sees.
- recordings.py: session events as hash-chained records; timeline.py a session replayed.
"""
