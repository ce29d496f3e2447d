"""What every subsystem uses: errors and exit statuses, where orch keeps
its files, running processes (proc) and sandboxing them, progress lines, the
typed models passed between stages, and reading untrusted files safely.
Imports nothing of orch outside core."""
