"""TLS end to end, with certificates from a throwaway CA (trustme): an edge reaches a TLS hub through the fleet's
CA (``--hub-ca``); an edge given another CA, or an address the certificate does not name, sends nothing and says
why; a renewed certificate is served without a restart, and the ships' uploads go on (issue 16)."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
import trustme
from cryptography import x509

from edge_node.client import EdgeClient
from scenarios.supervisor import Supervisor, wait_until

from .conftest import HARBOUR, REPO, free_port, harbour

pytestmark = pytest.mark.integration


class TlsHub:
    def __init__(self, tmp_path: Path, ca: trustme.CA, *names: str) -> None:
        self.data, self.port = tmp_path / "hub", free_port()
        self.cert, self.key = tmp_path / "hub.pem", tmp_path / "hub.key"
        self.ca_file = tmp_path / "fleet-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.serial = self.issue(ca, *names)
        log = open(tmp_path / "hub.log", "ab")  # noqa: SIM115 -- handed to the child
        self.log_path = tmp_path / "hub.log"
        self.process = subprocess.Popen(
            [*HARBOUR, "hub", "run", "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}",
             "--tls-cert", str(self.cert), "--tls-key", str(self.key)], stdout=log, stderr=log, cwd=REPO)
        log.close()
        wait_until(lambda: self.served_serial() is not None, 30, "the TLS hub to listen")

    def issue(self, ca: trustme.CA, *names: str) -> int:
        issued = ca.issue_cert(*names)
        staged = self.cert.with_suffix(".new")  # as a renewal tool does: the new pair appears whole
        staged.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        key = self.key.with_suffix(".newkey")
        issued.private_key_pem.write_to_path(str(key))
        key.replace(self.key)
        staged.replace(self.cert)
        return x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()).serial_number

    def served_serial(self) -> int | None:
        """The serial of the certificate a new connection is served (checked against the fleet CA)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as tls:
                der = tls.getpeercert(binary_form=True)
        except OSError:
            return None
        return x509.load_der_x509_certificate(der).serial_number

    def rows(self, site: str) -> int:
        result = harbour("hub", "query", "--data", str(self.data), "--format", "csv",
                         f"SELECT count(*) FROM telemetry WHERE _site = '{site}'", check=False)
        return int(result.stdout.splitlines()[-1]) if result.returncode == 0 else 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def fleet_ca():
    return trustme.CA()


@pytest.fixture
def tls_hub(tmp_path, fleet_ca):
    hub = TlsHub(tmp_path, fleet_ca, "localhost")
    yield hub
    hub.stop()


def ship(supervisor: Supervisor, hub: TlsHub, site: str, url: str, ca_file: Path):
    token = harbour("hub", "add-site", site, "--data", str(hub.data)).stdout.strip()
    edge = supervisor.edge(site, hub_url=url, token=token,
                           extra=("--hub-ca", str(ca_file), "--seal-age", "1s")).start()
    EdgeClient(edge.url).write("telemetry", pa.table({"row_id": pa.array([1, 2, 3], pa.int64())}))
    return edge


@pytest.mark.guarantee("G5")
def test_only_a_hub_the_fleet_ca_vouches_for_under_its_own_name_gets_rows(tmp_path, tls_hub):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with Supervisor(tmp_path / "run") as supervisor:
        good = ship(supervisor, tls_hub, "ship-good", f"https://localhost:{tls_hub.port}", tls_hub.ca_file)
        wrong_ca = ship(supervisor, tls_hub, "ship-wrong-ca", f"https://localhost:{tls_hub.port}", other_ca)
        wrong_host = ship(supervisor, tls_hub, "ship-wrong-host", f"https://127.0.0.1:{tls_hub.port}",
                          tls_hub.ca_file)
        wait_until(lambda: tls_hub.rows("ship-good") == 3, 60, "the good ship's rows at the hub")
        for edge in (wrong_ca, wrong_host):
            problem = wait_until(lambda e=edge: e.status().get("sync", {}).get("hub_problem"), 30,
                                 f"{edge.site} to name its certificate problem")
            assert "certificate" in problem and "--hub-ca" in problem, problem
            assert tls_hub.rows(edge.site) == 0
        assert good.status()["sync"]["hub_problem"] is None


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path, tls_hub, fleet_ca):
    with Supervisor(tmp_path / "run") as supervisor:
        edge = ship(supervisor, tls_hub, "ship-1", f"https://localhost:{tls_hub.port}", tls_hub.ca_file)
        wait_until(lambda: tls_hub.rows("ship-1") == 3, 60, "the rows before the renewal")
        old, pid = tls_hub.serial, tls_hub.process.pid
        tls_hub.serial = tls_hub.issue(fleet_ca, "localhost")
        assert tls_hub.serial != old
        wait_until(lambda: tls_hub.served_serial() == tls_hub.serial, 10, "the renewed certificate to be served")
        assert tls_hub.process.poll() is None and tls_hub.process.pid == pid  # the same process, never restarted
        EdgeClient(edge.url).write("telemetry", pa.table({"row_id": pa.array([4, 5], pa.int64())}))
        wait_until(lambda: tls_hub.rows("ship-1") == 5, 60, "the rows after the renewal")
        assert "loaded the renewed TLS certificate" in tls_hub.log_path.read_text()


def test_a_renewal_caught_half_written_keeps_the_old_pair_until_a_whole_one_appears(tmp_path, fleet_ca, caplog):
    from hub.tls import RELOAD_CHECK_SECONDS, ReloadingCertificate

    caplog.set_level(logging.INFO, logger="harbour.hub.tls")
    cert, key = tmp_path / "hub.pem", tmp_path / "hub.key"
    first = fleet_ca.issue_cert("localhost")
    first.cert_chain_pems[0].write_to_path(str(cert))
    first.private_key_pem.write_to_path(str(key))
    now = [0.0]
    reloading = ReloadingCertificate(cert, key, clock=lambda: now[0])
    loaded = reloading._current
    cert.write_text("-----BEGIN CERTIFICATE-----\ntruncated")  # the tool is half-way through writing it
    now[0] += RELOAD_CHECK_SECONDS
    reloading._reload_if_changed()
    assert reloading._current is loaded and "do not load" in caplog.text
    second = fleet_ca.issue_cert("localhost")
    second.private_key_pem.write_to_path(str(key))
    second.cert_chain_pems[0].write_to_path(str(cert))
    reloading._reload_if_changed()  # within the second: not looked at yet
    assert reloading._current is loaded
    now[0] += RELOAD_CHECK_SECONDS
    reloading._reload_if_changed()
    assert reloading._current is not loaded and "loaded the renewed TLS certificate" in caplog.text
