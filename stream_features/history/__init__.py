"""History loads: events from files (JSON Lines, CSV, Parquet) into Redis with the stream's own
rules, then handed over to the live stream (SPEC §5a; ``load.py`` says how)."""
