"""Redis persistence: the key layout, the atomic writer (Lua) and the reader."""
