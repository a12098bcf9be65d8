"""STAND-INS for Firecracker and its jailer, for hosts that cannot run the real ones.

Not Firecracker: programs that speak its API (checked against its published
spec) and its jailer's command line, and boot the configured machine with
QEMU ``-M microvm -accel tcg``, whose device model follows Firecracker's.
"""
