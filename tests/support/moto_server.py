"""Starts moto's server on 127.0.0.1 on a free port, prints "PORT <n>", and runs until its
standard input closes (the test process that started it has exited)."""
import logging
import sys

from moto.server import ThreadedMotoServer

# One access-log line per AWS call is noise in `make run` and in test output.
logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(f"PORT {server.get_host_and_port()[1]}", flush=True)
sys.stdin.read()
server.stop()
