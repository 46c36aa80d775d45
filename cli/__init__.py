"""The `infc` command line: parses arguments, does the I/O, prints."""
