#!/usr/bin/env python3
"""Use a log through nothing but the trust files `rekor-node trust-files` wrote.

sigstore-python reads the client trust config (trusted root + signing config, as its
`--trust-config` does), takes the transparency log to write to from the signing config (which
must list exactly one, a Rekor v2 log), submits entries built as it builds them, and verifies
each returned entry with `TransparencyLogEntry._verify` against the trusted root's keyring.

Usage: trust_config_check.py --trust-config trust_config.json [--entries 5]
Exit status 0 only if every check passed; the last line is "N passed, M failed".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import sha256_digest
from sigstore.models import ClientTrustConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import CALL_TIMEOUT_SECONDS, RESULTS, check  # noqa: E402


def signer():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trust-files.rekor.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trust-config", required=True)
    parser.add_argument("--entries", type=int, default=5)
    args = parser.parse_args()

    config = ClientTrustConfig.from_json(Path(args.trust_config).read_text())
    keyring = config.trusted_root.rekor_keyring(KeyringPurpose.VERIFY)
    tlogs = config.signing_config.get_tlogs()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    key, cert = signer()

    def one_v2_log():
        assert len(tlogs) == 1, f"{len(tlogs)} transparency logs in the signing config"
        assert isinstance(tlogs[0], RekorV2Client), type(tlogs[0])

    def entries_verify():
        for n in range(args.entries):
            hashed = sha256_digest(f"trust files {n} {datetime.datetime.now().isoformat()}".encode())
            sig = key.sign(hashed.digest, ec.ECDSA(hashed._as_prehashed()))
            req = RekorV2Client._build_hashed_rekord_request(hashed_input=hashed, signature=sig, certificate=cert)
            tle = pool.submit(tlogs[0].create_entry, req).result(timeout=CALL_TIMEOUT_SECONDS)
            tle._verify(keyring)

    check("the signing config names one Rekor v2 log", one_v2_log)
    check(f"{args.entries} entries verify with the trusted root's keyring", entries_verify)
    pool.shutdown(wait=False, cancel_futures=True)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed", flush=True)
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
