from pathtrace.cli import entry

entry()
