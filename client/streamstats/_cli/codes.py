"""The exit codes, one meaning each (``streamstats --help`` lists them)."""

EXIT_OK = 0
EXIT_REFUSED = 1  # the server refused the request, or stdin had lines that are not numbers
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4  # unauthenticated or permission denied
EXIT_UNAVAILABLE = 5  # cannot reach the server, or it did not answer in time
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process killed by SIGINT
