"""The command line, one module per command: each adds its parser
(``add_parser``) and runs it (``run``) over the library."""
