"""The read models' stores outside the process (Redis)."""
