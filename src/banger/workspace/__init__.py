"""Workspaces: a host git checkout copied into a guest, and its changes brought back."""
