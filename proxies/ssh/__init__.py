"""The SSH proxy: exec decided per command, shells recorded, keys kept in the gateway."""

import warnings

# asyncssh still names DSA keys at import; cryptography (≥ 48) warns of DSA's removal on
# each name. asyncssh offers and accepts no ssh-dss by default (nor does this proxy), so
# the warning only fills the operator's console at every start.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
