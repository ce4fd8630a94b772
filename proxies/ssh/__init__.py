"""The SSH proxy: exec decided per command, shells recorded, keys kept in the gateway."""
