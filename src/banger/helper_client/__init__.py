"""bangerd's side of banger-helper: the client of its socket, and starting it.

Kept apart from ``banger.helper`` (the root process's own code) so that
package stays small enough to review in one sitting and imports nothing of
the daemon.
"""
