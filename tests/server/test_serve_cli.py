"""The server's command line as an operator meets it: one-line errors for a busy port, a
metrics address that cannot be bound and an unreachable store (exit 1, the password kept out)
and for configurations refused before anything is opened (exit 2), `health` honouring
$PRICEGRID_TARGET and the client commands' TLS variables, `pricegrid --help` listing serve and
health."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

PRICEGRID = os.path.join(os.path.dirname(sys.executable), "pricegrid")  # the console script
SERVE = [PRICEGRID, "serve", "--metrics-port", "-1"]


def _run(args, env=None, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_a_busy_port_is_one_line_and_exit_1():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _run([*SERVE, "--port", str(port), "--store", ":memory:"])
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.startswith("pricegrid serve:")]
    assert lines == [f"pricegrid serve: cannot listen on 127.0.0.1:{port}: the port is in use or the address is not "
                     "this machine's (GRPC_VERBOSITY=debug tells why)"]
    assert "Traceback" not in r.stderr


def test_an_unreachable_store_is_one_line_without_the_password():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there
    r = _run([*SERVE, "--port", "0", "--store", f"postgresql://app:s3cret@127.0.0.1:{port}/risk"])
    assert r.returncode == 1 and "Traceback" not in r.stderr and "s3cret" not in r.stderr
    assert f"pricegrid serve: cannot open the store postgresql://app:***@127.0.0.1:{port}/risk: OperationalError" \
        in r.stderr


def test_health_honours_pricegrid_target_and_help_lists_the_server_commands(server):
    r = _run([PRICEGRID, "health"], env={"PRICEGRID_TARGET": server.address})
    assert r.returncode == 0 and r.stdout.strip() == f"{server.address}: SERVING"
    r = _run([PRICEGRID, "--help"])
    assert r.returncode == 0
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert {"serve", "health", "price", "risk", "bench"} <= listed


def test_version():
    from importlib.metadata import version

    r = _run([PRICEGRID, "--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"pricegrid {version('pricegrid')}"


def test_serve_help_names_every_setting_with_its_variable_and_default():
    from pricegrid.server.app.cli import serve_parser
    from pricegrid.server.app.settings import Settings, variables

    parser = serve_parser()
    by_dest = {a.dest: a for a in parser._actions}
    flags = [name for name in variables().values() if name in by_dest]
    assert len(flags) >= 30  # every setting with a flag
    for env, name in variables().items():
        if name not in by_dest:
            continue
        text = by_dest[name].help
        assert f"${env}; default: " in text, (name, text)
    # the defaults shown are the Settings' own
    assert "default: 50051" in by_dest["port"].help
    assert f"default: {Settings().max_rows}" in by_dest["max_rows"].help
    r = _run([PRICEGRID, "serve", "--help"])
    assert r.returncode == 0 and "$PRICEGRID_MAX_SCENARIO_CELLS; default:" in " ".join(r.stdout.split())


def test_every_client_and_tool_option_with_a_default_says_it():
    import argparse

    from pricegrid.clients import cli
    from pricegrid.tools import bench

    checked = 0
    for parser in (cli.build_parser(), bench.build_parser()):
        todo = [parser]
        while todo:
            p = todo.pop()
            for action in p._actions:
                if isinstance(action, argparse._SubParsersAction):
                    todo.extend(action.choices.values())
                elif action.option_strings and action.default not in (None, False, "", [], argparse.SUPPRESS):
                    checked += 1
                    assert "default" in (action.help or ""), (p.prog, action.option_strings, action.help)
    assert checked > 40


def _one_line(r) -> str:
    lines = [x for x in r.stderr.splitlines() if x.startswith("pricegrid serve:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_configuration_refusals_are_one_line_exit_2_before_anything_is_opened(tmp_path):
    """Plaintext off loopback, a broken auth policy, certificate files that do not parse: one
    line naming the reason, exit 2 (a configuration error, as a bad setting), and the store
    is not created (the checks run before anything is opened or bound)."""
    (tmp_path / "typo.toml").write_text('[roles]\ntrader = ["*"]\n[jwt]\nkeys = ["k.pem"]\naudiance = "x"\n')
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate")
    store = tmp_path / "store.db"
    cases = [
        (["--host", "0.0.0.0"], "pricegrid serve: refusing plaintext on 0.0.0.0:"),
        (["--auth-policy", str(tmp_path / "typo.toml")],
         f"pricegrid serve: auth policy {tmp_path / 'typo.toml'}: unknown key(s) jwt.audiance"),
        (["--tls-cert", str(tmp_path / "nonexistent.pem"), "--tls-key", str(tmp_path / "garbage.pem")],
         f"pricegrid serve: TLS: {tmp_path / 'nonexistent.pem'}: No such file or directory"),
        (["--tls-cert", str(tmp_path / "garbage.pem"), "--tls-key", str(tmp_path / "garbage.pem")],
         f"pricegrid serve: TLS: {tmp_path / 'garbage.pem'}: not a PEM certificate"),
    ]
    for args, line in cases:
        r = _run([*SERVE, "--port", "0", "--store", str(store), *args])
        assert r.returncode == 2, (args, r.stderr)
        assert _one_line(r).startswith(line), (args, r.stderr)
        assert not store.exists()


def test_a_metrics_address_that_cannot_be_bound_is_one_line_and_exit_1():
    r = _run([PRICEGRID, "serve", "--port", "0", "--store", ":memory:", "--metrics-port", "0",
              "--metrics-host", "no-such-host.invalid"])
    assert r.returncode == 1
    assert _one_line(r).startswith("pricegrid serve: cannot serve metrics on no-such-host.invalid:0: ")


def test_health_speaks_tls_with_the_client_commands_variables(tmp_path):
    """`pricegrid health` (the image's HEALTHCHECK) against a server serving mutual TLS: with
    $PRICEGRID_CA, $PRICEGRID_CERT and $PRICEGRID_KEY, as `pricegrid info` takes them, it reports
    SERVING; without them it cannot (it used to be plaintext only, so unhealthy for ever)."""
    from tests.conftest import start_server
    from tests.server.certs import TestCA

    ca = TestCA(tmp_path)
    cert, key = ca.issue("pricegrid-test-server", server=True)
    client_cert, client_key = ca.issue("health-check", server=False)
    running = start_server(tls_cert=str(cert), tls_key=str(key), tls_client_ca=str(ca.ca_file))
    try:
        env = {"PRICEGRID_TARGET": running.address, "PRICEGRID_CA": str(ca.ca_file),
               "PRICEGRID_CERT": str(client_cert), "PRICEGRID_KEY": str(client_key)}
        r = _run([PRICEGRID, "health"], env=env)
        assert r.returncode == 0 and r.stdout.strip() == f"{running.address}: SERVING", r.stderr
        r = _run([PRICEGRID, "health", "--target", f"localhost:{running.port}", "--server-name", "localhost"],
                 env=env)
        assert r.returncode == 0, r.stderr
        r = _run([PRICEGRID, "health", "--server-name", "not-its-name.test"], env=env)
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr  # the certificate does not name it
        r = _run([PRICEGRID, "health"], env={**env, "PRICEGRID_CERT": "", "PRICEGRID_KEY": ""})
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr  # no client certificate: no handshake
        r = _run([PRICEGRID, "health", "--ca", "", "--target", running.address],
                 env={"PRICEGRID_CA": "", "PRICEGRID_CERT": "", "PRICEGRID_KEY": ""})
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr  # plaintext against a TLS port
    finally:
        running.stop(1.0)
