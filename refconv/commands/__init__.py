"""One module per `refconv` subcommand: HELP, add_arguments(parser), main(args) -> int."""
