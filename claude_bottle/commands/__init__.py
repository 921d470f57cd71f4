"""One module per subcommand; cli.py only parses arguments and dispatches here."""
