"""gunicorn settings of the benchmark servers: nothing beyond what the command line of each benchmark says.

gunicorn reads ``gunicorn.conf.py`` from the folder it starts in unless ``--config`` names another
file. The project's production file recycles workers after about 2,000 requests and sets up shared
Prometheus files for several workers; either would change what a benchmark measures without the
benchmark saying so (the memory benchmark follows one worker's pid through 10,000 sends). The
benchmarks therefore start gunicorn with this file, and state their workers and threads themselves.
"""

# Each benchmark server is a gunicorn of its own, sometimes several at once on the same machine:
# the default control socket is one path per user, which they would contend for.
control_socket_disable = True
