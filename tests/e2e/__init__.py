"""End-to-end tests: the etlconsole CLI run as real subprocesses."""
