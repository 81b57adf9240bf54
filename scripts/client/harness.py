#!/usr/bin/env python3
"""Drive a running Rekor v2 server with the real sigstore-python client (sigstore==4.5.1).

What it does (client-harness.md and rekor-v2-api.md §16.2; docs/spec-references.md maps the
section numbers to public sources):

1. self-test without a server: the complete response of rekor-v2-api.md §15.3 must pass
   `TransparencyLogEntry._verify` with the trusted root of client-harness.md §4.2;
2. submits entries built by `RekorV2Client._build_hashed_rekord_request` (x509Certificate
   verifier, P-256 signer), verifies each returned entry with `_verify`, and adds the checks
   `_verify` skips (§6);
3. checks the zero values on a raw response of a fresh log, a 409 duplicate with x-log-index,
   a publicKey verifier, the tampered responses of §7 (all must be rejected) and the bad
   requests of §8 (all must be refused with the documented status);
4. optionally, that a frozen server answers 405 plain text.

Exit status 0 only if every check passed. The last line is "N passed, M failed".

Usage:
  harness.py --base-url http://127.0.0.1:PORT --origin rekor.local \
      --log-key-type ed25519|ecdsa-p256 --log-key-spki-b64 <DER SPKI> [--entries 300] \
      [--expect-fresh] [--frozen-url http://127.0.0.1:PORT2]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import copy
import datetime
import hashlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import requests
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sigstore._internal.rekor import RekorClientError
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import sha256_digest
from sigstore.models import TransparencyLogEntry, TrustedRoot
from sigstore_models.rekor.v1 import TransparencyLogEntry as _TLE

# A stuck server must fail the run, not hang it (create_entry has no timeout of its own).
CALL_TIMEOUT_SECONDS = 60
MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"

RESULTS = {"passed": 0, "failed": 0}


def check(name: str, fn) -> None:
    """Runs one named check, recording (not raising) its failure."""
    try:
        fn()
    except Exception:  # noqa: BLE001 - every failure is reported with its traceback
        RESULTS["failed"] += 1
        print(f"FAIL {name}", flush=True)
        traceback.print_exc()
    else:
        RESULTS["passed"] += 1
        print(f"ok   {name}", flush=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def log_id_for(key_type: str, origin: str, spki_der: bytes) -> bytes:
    """The 32-byte checkpoint key ID (client-harness.md §4.1)."""
    if key_type == "ed25519":
        pub = serialization.load_der_public_key(spki_der)
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()
    if key_type == "ecdsa-p256":
        return hashlib.sha256(spki_der).digest()
    raise ValueError(f"unknown log key type {key_type}")


def trusted_root(directory: Path, origin: str, key_type: str, spki_der: bytes, log_id: bytes) -> TrustedRoot:
    """Writes a trusted_root.json listing only this log (client-harness.md §4)."""
    key_details = {"ed25519": "PKIX_ED25519", "ecdsa-p256": "PKIX_ECDSA_P256_SHA_256"}[key_type]
    root = {
        "mediaType": MEDIA_TYPE,
        "tlogs": [
            {
                "baseUrl": f"https://{origin}",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki_der),
                    "keyDetails": key_details,
                    "validFor": {"start": "2025-01-01T00:00:00Z"},
                },
                "logId": {"keyId": b64(log_id)},
                "checkpointKeyId": {"keyId": b64(log_id)},
            }
        ],
        "certificateAuthorities": [],
        "ctlogs": [],
    }
    path = directory / f"trusted_root_{key_type}_{origin}.json"
    path.write_text(json.dumps(root))
    return TrustedRoot.from_file(str(path))


SECTION_15_3 = {
    "logIndex": "0",
    "logId": {"keyId": "2AtEIMfG6Y41yK0tcwRTBS2tjhOrjKGIpDkHFgp65g0="},
    "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
    "integratedTime": "0",
    "inclusionPromise": None,
    "inclusionProof": {
        "logIndex": "0",
        "rootHash": "Uym3efeSrMCTH0BDFLAnqwbi1GjOYfydlkHmJc5gw9o=",
        "treeSize": "1",
        "hashes": [],
        "checkpoint": {
            "envelope": "rekor-local\n1\nUym3efeSrMCTH0BDFLAnqwbi1GjOYfydlkHmJc5gw9o=\n\n\u2014 rekor-local 2AtEIEto2rjdlosAMG1UeQxPSPDLPF/diOZaxmBU6ZUumCnIXhVrKnLhLCmYJhYatg4p1t4CBmp+m+w3CAOtQkysKwo=\n"
        },
    },
    "canonicalizedBody": "eyJhcGlWZXJzaW9uIjoiMC4wLjIiLCJraW5kIjoiaGFzaGVkcmVrb3JkIiwic3BlYyI6eyJoYXNoZWRSZWtvcmRWMDAyIjp7ImRhdGEiOnsiYWxnb3JpdGhtIjoiU0hBMl8yNTYiLCJkaWdlc3QiOiJkeWo0ZWRuWUhqTjQvenNqakJlZUxhaFM5c2xwOTdaNjdMVEFWeGpyalh3PSJ9LCJzaWduYXR1cmUiOnsiY29udGVudCI6Ik1FUUNJQitZUGE5bzNTTjBzUTR1ZHVHZittWnh3RmZPaEZaMENneStwN1Z0MW8yU0FpQVBGREhxT0FKTFltdnRDV09zRHlOWTFINFYzem00TkVEWXMzTnl2SGgxUGc9PSIsInZlcmlmaWVyIjp7ImtleURldGFpbHMiOiJQS0lYX0VDRFNBX1AyNTZfU0hBXzI1NiIsInB1YmxpY0tleSI6eyJyYXdCeXRlcyI6Ik1Ga3dFd1lIS29aSXpqMENBUVlJS29aSXpqMERBUWNEUWdBRTJzbE9mOGVaY2oybW9XMnQ0VUZqN3ZDTDZRcER6a0RxcVNVbW00T0pDVnZJYXVLTHhtMGFHczNWTVBQZmF1TVBhTXV0bjAvczNqZzBycm9GeG9pY3lnPT0ifX19fX19",
}
UPSTREAM_ED25519_SPKI = base64.b64decode("MCowBQYDK2VwAyEAREvJyNZGjX6B3DAIuD3BTg9rIwV00GY8Xg5FU+IFDUQ=")


def verify_raw(raw: dict, keyring) -> None:
    TransparencyLogEntry(_TLE.from_dict(raw))._verify(keyring)


class Harness:
    def __init__(self, args, workdir: Path):
        self.base_url = args.base_url.rstrip("/")
        self.origin = args.origin
        self.spki = base64.b64decode(args.log_key_spki_b64)
        self.log_id = log_id_for(args.log_key_type, self.origin, self.spki)
        root = trusted_root(workdir, self.origin, args.log_key_type, self.spki, self.log_id)
        self.keyring = root.rekor_keyring(KeyringPurpose.VERIFY)
        self.rekor = RekorV2Client(self.base_url)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        # The signer: an ephemeral P-256 key and a self-signed certificate for it (the server
        # does not validate chains; _verify does not read the certificate).
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harness.rekor.test")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.counter = 0

    def request(self, artifact: bytes | None = None) -> dict:
        """A request exactly as sigstore-python builds it (client-harness.md §5.1)."""
        if artifact is None:
            self.counter += 1
            artifact = f"artifact {self.counter} {datetime.datetime.now().isoformat()}".encode()
        hashed = sha256_digest(artifact)
        sig = self.key.sign(hashed.digest, ec.ECDSA(hashed._as_prehashed()))
        return RekorV2Client._build_hashed_rekord_request(hashed_input=hashed, signature=sig, certificate=self.cert)

    def create(self, req: dict) -> TransparencyLogEntry:
        return self.pool.submit(self.rekor.create_entry, req).result(timeout=CALL_TIMEOUT_SECONDS)

    def post_raw(self, req, expect: int = 201) -> requests.Response:
        data = req if isinstance(req, (bytes, str)) else json.dumps(req)
        resp = requests.post(
            f"{self.base_url}/api/v2/log/entries",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=CALL_TIMEOUT_SECONDS,
        )
        assert resp.status_code == expect, f"HTTP {resp.status_code}, wanted {expect}: {resp.text[:300]}"
        return resp

    def assert_contract(self, raw: dict, req: dict, wire: bool = True) -> None:
        """The checks `_verify` skips (client-harness.md §6). `wire=False` for a dict rebuilt
        from the client's model, which drops null and zero-valued members."""
        ip = raw["inclusionProof"]
        assert raw["logIndex"] == ip["logIndex"], "top-level logIndex != inclusionProof.logIndex"
        assert raw["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}
        if wire:
            assert raw["integratedTime"] == "0"
            assert "inclusionPromise" in raw and raw["inclusionPromise"] is None
        assert base64.b64decode(raw["logId"]["keyId"]) == self.log_id, "logId.keyId is not the full key ID"
        text, sigs = ip["checkpoint"]["envelope"].rsplit("\n\n", 1)
        origin, size, root = text.split("\n")[:3]
        assert origin == self.origin, f"origin {origin!r}"
        assert int(size) == int(ip["treeSize"]), "checkpoint size != treeSize"
        assert root == ip["rootHash"], "checkpoint root != rootHash"
        name, blob = sigs.split("\n")[0].removeprefix("\u2014 ").split(" ")
        assert name == self.origin, f"key name {name!r}"
        assert base64.b64decode(blob)[:4] == self.log_id[:4], "key hint != logId.keyId[:4]"
        body = base64.b64decode(raw["canonicalizedBody"])
        assert rfc8785.dumps(json.loads(body)) == body, "body is not RFC 8785 canonical"
        r = req["hashedRekordRequestV002"]
        expected = {
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {
                "hashedRekordV002": {
                    "data": {"algorithm": "SHA2_256", "digest": r["digest"]},
                    "signature": r["signature"],
                }
            },
        }
        assert json.loads(body) == expected, "body does not echo the request verbatim"

    # ---- the checks ----

    def fresh_log_zero_values(self) -> None:
        req = self.request()
        raw = self.post_raw(req).json()
        assert raw["logIndex"] == "0", raw["logIndex"]
        assert raw["inclusionProof"]["logIndex"] == "0"
        assert raw["inclusionProof"]["treeSize"] == "1"
        assert raw["inclusionProof"]["hashes"] == []
        verify_raw(raw, self.keyring)
        self.assert_contract(raw, req)

    def many_entries(self, count: int) -> None:
        """Entries across tile boundaries, verified one by one, submitted concurrently."""
        reqs = [self.request() for _ in range(count)]
        futures = [self.pool.submit(self.rekor.create_entry, req) for req in reqs]
        indices = set()
        for req, future in zip(reqs, futures):
            tle = future.result(timeout=CALL_TIMEOUT_SECONDS)
            tle._verify(self.keyring)
            raw = json.loads(tle._inner.to_json())
            self.assert_contract(raw, req, wire=False)
            indices.add(int(raw["logIndex"]))
        assert len(indices) == count, "two entries got the same index"

    def duplicate(self) -> None:
        req = self.request()
        first = self.create(req)
        first._verify(self.keyring)
        try:
            self.create(req)
        except RekorClientError as e:
            response = e.__context__.response
            assert response.status_code == 409, response.status_code
            assert response.headers["x-log-index"] == str(first._inner.log_index)
            assert "an equivalent entry already exists" in str(e), str(e)
        else:
            raise AssertionError("duplicate accepted")
        self.duplicate_index = int(first._inner.log_index)
        self.duplicate_request = req

    def entry_lookup(self, urls: list[str]) -> None:
        """Our extension: the TLE behind a 409, from `GET /api/v2/log/entries/{index}` on each
        node, verifies with the client's own `_verify` and keeps the 201's contract."""
        index, req = self.duplicate_index, self.duplicate_request
        for url in urls:
            deadline = time.monotonic() + 20
            while True:
                resp = requests.get(f"{url.rstrip('/')}/api/v2/log/entries/{index}", timeout=CALL_TIMEOUT_SECONDS)
                # A node that has not yet integrated the entry answers 404 until it has.
                if resp.status_code != 404 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert resp.status_code == 200, f"{url}: HTTP {resp.status_code}: {resp.text[:300]}"
            assert resp.headers["content-type"] == "application/json"
            raw = resp.json()
            assert raw["logIndex"] == str(index), raw["logIndex"]
            verify_raw(raw, self.keyring)
            self.assert_contract(raw, req)
            missing = requests.get(f"{url.rstrip('/')}/api/v2/log/entries/{2**62}", timeout=CALL_TIMEOUT_SECONDS)
            assert missing.status_code == 404, missing.status_code
            assert missing.json()["code"] == 5, missing.text

    def public_key_verifier(self) -> None:
        req = self.request()
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        req["hashedRekordRequestV002"]["signature"]["verifier"] = {
            "publicKey": {"rawBytes": b64(spki)},
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
        }
        raw = self.post_raw(req).json()
        verify_raw(raw, self.keyring)
        self.assert_contract(raw, req)

    def tampering(self) -> None:
        """client-harness.md §7: every mutation must be rejected (by _verify or by §6)."""
        # Two entries so the latest has a non-empty proof.
        self.post_raw(self.request())
        req = self.request()
        raw = self.post_raw(req).json()
        verify_raw(raw, self.keyring)
        assert raw["inclusionProof"]["hashes"], "expected a non-empty proof"

        def envelope(d):
            return d["inclusionProof"]["checkpoint"]["envelope"]

        def set_envelope(d, text):
            d["inclusionProof"]["checkpoint"]["envelope"] = text

        def sig_blob(d, edit):
            text, sigs = envelope(d).rsplit("\n\n", 1)
            first, rest = sigs.split("\n", 1)
            dash, name, blob = first.split(" ")
            blob = bytearray(base64.b64decode(blob))
            edit(blob)
            set_envelope(d, f"{text}\n\n{dash} {name} {b64(bytes(blob))}\n{rest}")

        def flip(index):
            def edit(blob):
                blob[index] ^= 0x01

            return edit

        rejected_by_verify = {
            "canonicalizedBody replaced": lambda d: d.__setitem__("canonicalizedBody", b64(b'{"x":1}')),
            "rootHash 0x11": lambda d: d["inclusionProof"].__setitem__("rootHash", b64(b"\x11" * 32)),
            "rootHash as base64 of hex": lambda d: d["inclusionProof"].__setitem__(
                "rootHash", b64(base64.b64decode(d["inclusionProof"]["rootHash"]).hex().encode())
            ),
            "treeSize + 1": lambda d: d["inclusionProof"].__setitem__(
                "treeSize", str(int(d["inclusionProof"]["treeSize"]) + 1)
            ),
            "extra proof hash": lambda d: d["inclusionProof"]["hashes"].append(b64(b"\x22" * 32)),
            "proof logIndex >= treeSize": lambda d: d["inclusionProof"].__setitem__(
                "logIndex", d["inclusionProof"]["treeSize"]
            ),
            "hashes removed": lambda d: d["inclusionProof"].pop("hashes"),
            "logIndex removed": lambda d: d.pop("logIndex"),
            "inclusionProof removed": lambda d: d.pop("inclusionProof"),
            "logId zeroed": lambda d: d["logId"].__setitem__("keyId", b64(bytes(32))),
            "checkpoint signature bit flipped": lambda d: sig_blob(d, flip(10)),
            "checkpoint key hint changed": lambda d: sig_blob(d, flip(0)),
            "checkpoint origin changed": lambda d: set_envelope(d, "x" + envelope(d)),
            "blank line removed": lambda d: set_envelope(d, envelope(d).replace("\n\n", "\n", 1)),
            "final newline removed": lambda d: set_envelope(d, envelope(d)[:-1]),
        }
        for name, mutate in rejected_by_verify.items():
            d = copy.deepcopy(raw)
            mutate(d)
            try:
                verify_raw(d, self.keyring)
            except Exception:  # noqa: BLE001 - VerificationError or pydantic ValidationError
                continue
            raise AssertionError(f"tampered entry accepted by _verify: {name}")

        # Not detected by _verify: the contract checks must catch them.
        rejected_by_contract = {
            "top-level logIndex changed": lambda d: d.__setitem__("logIndex", str(int(d["logIndex"]) + 1)),
            "logId truncated to 4 bytes": lambda d: d["logId"].__setitem__(
                "keyId", b64(base64.b64decode(d["logId"]["keyId"])[:4])
            ),
            "key name changed": lambda d: set_envelope(
                d, envelope(d).replace(f"\u2014 {self.origin} ", "\u2014 other.name ")
            ),
        }
        for name, mutate in rejected_by_contract.items():
            d = copy.deepcopy(raw)
            mutate(d)
            try:
                verify_raw(d, self.keyring)
                self.assert_contract(d, req)
            except (AssertionError, Exception):  # noqa: BLE001
                continue
            raise AssertionError(f"tampered entry passed every check: {name}")

    def bad_requests(self) -> None:
        """client-harness.md §8: hand-made bad requests and their statuses."""
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)

        def h(req):
            return req["hashedRekordRequestV002"]

        def flip_sig(req):
            sig = bytearray(base64.b64decode(h(req)["signature"]["content"]))
            sig[-1] ^= 0x01
            h(req)["signature"]["content"] = b64(bytes(sig))

        cases = {
            "signature byte changed": (flip_sig, 400, "invalid hashedrekord request"),
            "digest cut to 31 bytes": (
                lambda r: h(r).__setitem__("digest", b64(base64.b64decode(h(r)["digest"])[:31])),
                400,
                "invalid hashedrekord request",
            ),
            "PEM certificate": (
                lambda r: h(r)["signature"]["verifier"]["x509Certificate"].__setitem__("rawBytes", b64(cert_pem)),
                400,
                "invalid hashedrekord request",
            ),
            "SPKI as certificate": (
                lambda r: h(r)["signature"]["verifier"]["x509Certificate"].__setitem__("rawBytes", b64(spki)),
                400,
                "invalid hashedrekord request",
            ),
            "PKIX_ED25519 with a P-256 certificate": (
                lambda r: h(r)["signature"]["verifier"].__setitem__("keyDetails", "PKIX_ED25519"),
                400,
                "invalid hashedrekord request",
            ),
            "unknown field": (lambda r: h(r).__setitem__("unknownField", 1), 400, None),
            "empty request": (lambda r: (r.clear()), 400, "invalid type, must be hashedrekord"),
        }
        for name, (mutate, status, message) in cases.items():
            req = self.request()
            mutate(req)
            try:
                self.create(req)
            except RekorClientError as e:
                got = e.__context__.response.status_code
                assert got == status, f"{name}: HTTP {got}"
                if message is not None:
                    assert str(e) == f"3: {message}", f"{name}: {e}"
            else:
                raise AssertionError(f"bad request accepted: {name}")

        # Over 4 MiB: 400, not 413.
        big = self.request()
        h(big)["signature"]["verifier"]["x509Certificate"]["rawBytes"] = b64(b"\0" * (3 * 1024 * 1024 + 16))
        resp = self.post_raw(big, expect=400)
        assert resp.json()["message"] == "http: request body too large", resp.text

    def frozen(self, url: str) -> None:
        client = RekorV2Client(url.rstrip("/"))
        try:
            self.pool.submit(client.create_entry, self.request()).result(timeout=CALL_TIMEOUT_SECONDS)
        except RekorClientError as e:
            assert str(e) == "Rekor returned an unknown error with HTTP 405", str(e)
            response = e.__context__.response
            assert response.headers["content-type"].startswith("text/plain"), response.headers
            assert response.text == "This log has been frozen, please switch to the latest log.\n"
        else:
            raise AssertionError("frozen log accepted an entry")


def self_test(workdir: Path) -> None:
    """client-harness.md §5.3: the §15.3 response verifies with the §4.2 root, tampered not."""
    log_id = log_id_for("ed25519", "rekor-local", UPSTREAM_ED25519_SPKI)
    assert b64(log_id) == SECTION_15_3["logId"]["keyId"]
    keyring = trusted_root(workdir, "rekor-local", "ed25519", UPSTREAM_ED25519_SPKI, log_id).rekor_keyring(
        KeyringPurpose.VERIFY
    )
    verify_raw(copy.deepcopy(SECTION_15_3), keyring)
    bad = copy.deepcopy(SECTION_15_3)
    bad["inclusionProof"]["rootHash"] = b64(b"\x11" * 32)
    try:
        verify_raw(bad, keyring)
    except Exception:  # noqa: BLE001
        return
    raise AssertionError("self-test: tampered §15.3 response accepted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--log-key-type", required=True, choices=["ed25519", "ecdsa-p256"])
    parser.add_argument("--log-key-spki-b64", required=True)
    parser.add_argument("--entries", type=int, default=300)
    parser.add_argument("--expect-fresh", action="store_true", help="the log is empty at start")
    parser.add_argument("--frozen-url", help="a read-only server to check the 405 answer")
    parser.add_argument(
        "--entry-lookup-url",
        action="append",
        default=[],
        help="a node serving GET /api/v2/log/entries/{index} (repeatable): the 409's entry is read from each",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        check("self-test: §15.3 response verifies", lambda: self_test(workdir))
        harness = Harness(args, workdir)
        if args.expect_fresh:
            check("fresh log: zero values emitted", harness.fresh_log_zero_values)
        check(f"{args.entries} entries verified", lambda: harness.many_entries(args.entries))
        check("duplicate: 409 + x-log-index", harness.duplicate)
        if args.entry_lookup_url:
            check(
                "entry lookup: the TLE behind a 409 verifies on every node",
                lambda: harness.entry_lookup(args.entry_lookup_url),
            )
        check("publicKey verifier", harness.public_key_verifier)
        check("tampered responses rejected", harness.tampering)
        check("bad requests refused", harness.bad_requests)
        if args.frozen_url:
            check("frozen log: 405 plain text", lambda: harness.frozen(args.frozen_url))
        harness.pool.shutdown(wait=False, cancel_futures=True)

    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed", flush=True)
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
