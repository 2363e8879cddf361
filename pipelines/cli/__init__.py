"""The `callqa` command line (`main`) and its report/review subcommands (`report`)."""
