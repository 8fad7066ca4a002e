"""The `sub` command line: for people (tables, progress on stderr) and scripts (-o json)."""
