"""A TVM RPC server for aarch64 targets on an x86 host: sessions run under qemu-user.

TVM's own server (``python -m tvm.exec.rpc_server``) must run on the device, with an aarch64
Python and TVM. This one splits the work: the tracker registration, the listening socket and
the handshake run here in Python with TVM's server code, and each accepted session is handed
(its socket inherited) to dwc's aarch64 program ``dwc-aarch64-rpc-server`` under qemu-user,
which serves it with the aarch64 TVM runtime alone. Tuning jobs then measure aarch64 modules
through the tracker exactly as on a device (``dwc tune --rpc-tracker ... --rpc-key ...``); the
timings are qemu's, so they check the path, not the speed.

usage: python -m dwc_compiler.rpc_qemu --tracker HOST:PORT --key KEY [--target aarch64-neon]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .runtime.emulated import RPC_SERVER_NAME, ensure_aarch64_runtime, program_file_name, qemu_command
from .errors import DwcError, InvalidArgumentError

logger = logging.getLogger(__name__)


def _session_under_qemu(target, runtime: Path, connection: socket.socket, address: Any,
                        options: dict[str, Any]) -> None:
    """Serve one accepted RPC session with the aarch64 program in `runtime`; ends it after its timeout."""
    work_dir = tempfile.mkdtemp(prefix="dwc-rpc-session-")
    descriptor = connection.fileno()
    command = qemu_command(target, runtime) + [str(runtime / program_file_name(RPC_SERVER_NAME)), str(descriptor), work_dir]
    logger.info("session from %s served under qemu in %s", address, work_dir)
    process = subprocess.Popen(command, pass_fds=[descriptor])
    try:
        process.wait(timeout=options.get("timeout"))
    except subprocess.TimeoutExpired:
        logger.warning("session from %s passed its %ss timeout; ended", address, options.get("timeout"))
        process.kill()
        process.wait()
    finally:
        connection.close()
        shutil.rmtree(work_dir, ignore_errors=True)


def serve(tracker: str, key: str, target_name: str = "aarch64-neon", host: str = "127.0.0.1", port: int = 0) -> None:
    """Register with the TVM RPC `tracker` (``HOST:PORT``) under `key` and serve sessions forever.

    Raises:
        InvalidArgumentError: a malformed tracker address, or a target that is not aarch64.
        MissingToolError: qemu-user or the aarch64 toolchain is missing.
    """
    from tvm.rpc import server as tvm_server

    from .targets import resolve_target

    target = resolve_target(target_name)
    if target.family != "arm":
        raise InvalidArgumentError(f"target: expected an aarch64 target such as aarch64-neon, got {target_name!r}")
    tracker_host, _, tracker_port = tracker.rpartition(":")
    if not tracker_host or not tracker_port.isdigit():
        raise InvalidArgumentError(f"tracker: expected HOST:PORT such as 127.0.0.1:9190, got {tracker!r}")
    runtime = ensure_aarch64_runtime()  # built once, before the first session
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1)
    bound_port = listener.getsockname()[1]
    logger.info("serving %s sessions under qemu on %s:%d for key %r", target.name, host, bound_port, key)

    # TVM's listen loop does the tracker protocol and the handshake; it calls its module's
    # `_serving` for each accepted session, which here runs the session under qemu.
    tvm_server._serving = lambda connection, address, options, _load_library: _session_under_qemu(
        target, runtime, connection, address, options)
    tvm_server._listen_loop(listener, bound_port, key, (tracker_host, int(tracker_port)), None, host)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module doc."""
    parser = argparse.ArgumentParser(prog="python -m dwc_compiler.rpc_qemu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracker", required=True, help="the TVM RPC tracker, HOST:PORT (e.g. 127.0.0.1:9190)")
    parser.add_argument("--key", required=True, help="the device key to register (e.g. aarch64)")
    parser.add_argument("--target", default="aarch64-neon", help="the aarch64 dwc target (default aarch64-neon)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        serve(arguments.tracker, arguments.key, arguments.target, arguments.host, arguments.port)
    except DwcError as error:
        parser.error(str(error))  # one line naming the option, exit status 2


if __name__ == "__main__":
    main()
