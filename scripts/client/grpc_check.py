#!/usr/bin/env python3
"""Drive a node's gRPC listener (dev.sigstore.rekor.v2.Rekor) with grpcio and compare it with the
HTTP API of the same cluster (run by cluster-tests/tests/grpc.rs, interpreter REKOR_TEST_PYTHON).

Stubs are generated at run time from the repository's own grpc/proto by grpcio-tools, into a
temporary directory: what is checked is the contract as our .proto files state it.

Checks (each named in the output; the last line is "N passed, M failed"):
- submit: hashedrekord entries over gRPC to every --grpc target and over HTTP to every --http
  URL; each TransparencyLogEntry has the HTTP 201 body's shape and content (kind/version, log ID,
  canonicalized body, checkpoint origin) and its inclusion proof verifies against its checkpoint;
- duplicates: a request logged over one protocol and sent again over the other is refused with
  the same index (gRPC ALREADY_EXISTS + x-log-index + google.rpc.ErrorInfo; HTTP 409);
- bad requests: the bad-input table of harness.py that protobuf can express, sent over both
  protocols: gRPC code and HTTP status are of the same class, with the same message;
- reads: GetCheckpoint, GetTile and GetEntryBundle return the HTTP read routes' bytes; absent
  tiles are NOT_FOUND; malformed indices INVALID_ARGUMENT;
- health: grpc.health.v1 Check is SERVING for "" and the Rekor service, NOT_FOUND for others;
- reflection: v1 and v1alpha list the services, and the descriptors they return have exactly the
  names and field numbers of --upstream-table (upstream's contract).

Usage:
  grpc_check.py --proto-dir grpc/proto --grpc 127.0.0.1:P1 [--grpc ...] --http http://127.0.0.1:Q1
      [--http ...] [--upstream-table testdata/upstream-grpc/rekor-v2.json] [--ca ca.pem]
      [--only health,reflection]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import grpc
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import datetime

TIMEOUT = 60
RESULTS = {"passed": 0, "failed": 0}
SERVICE = "dev.sigstore.rekor.v2.Rekor"


def check(name: str, fn) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - every failure is reported with its traceback
        RESULTS["failed"] += 1
        print(f"FAIL {name}", flush=True)
        traceback.print_exc()
    else:
        RESULTS["passed"] += 1
        print(f"ok   {name}", flush=True)


def generate_stubs(proto_dir: Path, out: Path) -> None:
    """grpcio-tools' protoc over every .proto of proto_dir, well-known types from grpc_tools."""
    from grpc_tools import protoc
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    args = ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + files) != 0:
        raise SystemExit(f"protoc failed on {files}")


class Stubs:
    """The generated modules. Our google.api/google.rpc files are loaded under their own names
    only if no installed package already provides them."""

    def __init__(self, out: Path):
        sys.path.insert(0, str(out))
        self.service = importlib.import_module("rekor.v2.rekor_service_pb2")
        self.service_grpc = importlib.import_module("rekor.v2.rekor_service_pb2_grpc")
        self.entry = importlib.import_module("rekor.v2.entry_pb2")
        self.hashedrekord = importlib.import_module("rekor.v2.hashedrekord_pb2")
        self.dsse = importlib.import_module("rekor.v2.dsse_pb2")
        self.verifier = importlib.import_module("rekor.v2.verifier_pb2")
        self.common = importlib.import_module("sigstore_common_pb2")
        self.rekor_v1 = importlib.import_module("sigstore_rekor_pb2")
        self.envelope = importlib.import_module("envelope_pb2")
        self.rpc_status = importlib.import_module("google.rpc.status_pb2")
        self.error_details = importlib.import_module("google.rpc.error_details_pb2")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Signer:
    """An ephemeral P-256 key and a self-signed certificate for it."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "grpc-check.rekor.test")])
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

    def fields(self) -> dict:
        """The fields of one fresh hashedrekord request (bytes values), x509Certificate verifier."""
        self.counter += 1
        artifact = f"grpc check {self.counter} {time.time_ns()} {os.getpid()}".encode()
        return {
            "digest": hashlib.sha256(artifact).digest(),
            "signature": self.key.sign(artifact, ec.ECDSA(hashes.SHA256())),
            "cert": self.cert.public_bytes(serialization.Encoding.DER),
            "key_details": "PKIX_ECDSA_P256_SHA_256",
            "public_key": None,
        }


def as_message(stubs: Stubs, f: dict | None):
    """The protobuf CreateEntryRequest of `fields` (None: the empty request)."""
    request = stubs.entry.CreateEntryRequest()
    if f is None:
        return request
    hashed = request.hashed_rekord_request_v002
    hashed.digest = f["digest"]
    hashed.signature.content = f["signature"]
    verifier = hashed.signature.verifier
    if f["public_key"] is not None:
        verifier.public_key.raw_bytes = f["public_key"]
    else:
        verifier.x509_certificate.raw_bytes = f["cert"]
    if isinstance(f["key_details"], int):
        verifier.key_details = f["key_details"]
    else:
        verifier.key_details = stubs.common.PublicKeyDetails.Value(f["key_details"])
    return request


def as_json(f: dict | None) -> dict:
    """The proto3-JSON body of `fields`, as sigstore clients send it."""
    if f is None:
        return {}
    verifier = {"keyDetails": f["key_details"]}
    if f["public_key"] is not None:
        verifier["publicKey"] = {"rawBytes": b64(f["public_key"])}
    else:
        verifier["x509Certificate"] = {"rawBytes": b64(f["cert"])}
    return {
        "hashedRekordRequestV002": {
            "digest": b64(f["digest"]),
            "signature": {"content": b64(f["signature"]), "verifier": verifier},
        }
    }


def leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to."""
    if index >= size:
        raise AssertionError(f"index {index} beyond size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AssertionError("proof too short")
    return r


def shape(value):
    """The key structure of a JSON value (dict keys, recursively; leaves by type)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def checkpoint_parts(note: str) -> tuple[str, int, bytes]:
    lines = note.split("\n")
    return lines[0], int(lines[1]), base64.b64decode(lines[2])


class Check:
    def __init__(self, args, stubs: Stubs):
        self.args = args
        self.stubs = stubs
        self.signer = Signer()
        self.http = [u.rstrip("/") for u in args.http]
        self.channels = []
        for target in args.grpc:
            if args.ca:
                creds = grpc.ssl_channel_credentials(root_certificates=Path(args.ca).read_bytes())
                options = [("grpc.ssl_target_name_override", args.tls_name)] if args.tls_name else []
                self.channels.append(grpc.secure_channel(target, creds, options=options))
            else:
                self.channels.append(grpc.insecure_channel(target))
        for channel in self.channels:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        self.rekor = [stubs.service_grpc.RekorStub(c) for c in self.channels]

    # --- helpers -------------------------------------------------------------------------------

    def grpc_create(self, stub, request):
        return stub.CreateEntry.with_call(request, timeout=TIMEOUT)

    def http_create(self, url: str, body: dict) -> requests.Response:
        return requests.post(f"{url}/api/v2/log/entries", json=body, timeout=TIMEOUT)

    def verify_tle(self, tle, fields: dict) -> None:
        """A gRPC TransparencyLogEntry: right kind, proof verifies, checkpoint matches the proof."""
        assert tle.kind_version.kind == "hashedrekord", tle.kind_version
        assert tle.kind_version.version == "0.0.2", tle.kind_version
        assert len(tle.log_id.key_id) == 32, tle.log_id
        assert tle.integrated_time == 0
        assert not tle.HasField("inclusion_promise")
        body = json.loads(tle.canonicalized_body)
        digest = body["spec"]["hashedRekordV002"]["data"]["digest"]
        assert base64.b64decode(digest) == fields["digest"], body
        proof = tle.inclusion_proof
        assert proof.log_index == tle.log_index
        root = root_from_inclusion(
            proof.log_index, proof.tree_size, leaf_hash(tle.canonicalized_body), list(proof.hashes)
        )
        assert root == proof.root_hash, "inclusion proof does not lead to root_hash"
        _, size, note_root = checkpoint_parts(proof.checkpoint.envelope)
        assert (size, note_root) == (proof.tree_size, proof.root_hash), "checkpoint differs from the proof"

    def compare_with_http(self, tle, http_json: dict) -> None:
        """Same fields and same content as an HTTP 201 body (indices and proofs aside)."""
        from google.protobuf import json_format

        as_json = json_format.MessageToDict(tle, always_print_fields_with_no_presence=True)
        http_json = dict(http_json)
        assert http_json.pop("inclusionPromise") is None
        assert "inclusionPromise" not in as_json, as_json
        assert shape(as_json) == shape(http_json), f"{shape(as_json)} != {shape(http_json)}"
        assert as_json["logId"] == http_json["logId"]
        assert as_json["kindVersion"] == http_json["kindVersion"]
        assert as_json["integratedTime"] == http_json["integratedTime"] == "0"
        grpc_body = json.loads(tle.canonicalized_body)
        http_body = json.loads(base64.b64decode(http_json["canonicalizedBody"]))
        assert shape(grpc_body) == shape(http_body)
        for path in (("apiVersion",), ("kind",)):
            assert grpc_body[path[0]] == http_body[path[0]]
        grpc_origin = checkpoint_parts(tle.inclusion_proof.checkpoint.envelope)[0]
        http_origin = checkpoint_parts(http_json["inclusionProof"]["checkpoint"]["envelope"])[0]
        assert grpc_origin == http_origin, (grpc_origin, http_origin)

    # --- checks --------------------------------------------------------------------------------

    def submit(self) -> None:
        rounds = self.args.entries
        for i in range(rounds):
            for stub, url in zip(self.rekor, self.http * len(self.rekor)):
                grpc_fields = self.signer.fields()
                tle, call = self.grpc_create(stub, as_message(self.stubs, grpc_fields))
                self.verify_tle(tle, grpc_fields)
                initial = dict(call.initial_metadata())
                assert initial.get("x-http-code") == "201", initial
                http_fields = self.signer.fields()
                response = self.http_create(url, as_json(http_fields))
                assert response.status_code == 201, response.text
                self.compare_with_http(tle, response.json())

    def duplicates(self) -> None:
        stub, url = self.rekor[-1], self.http[0]
        # gRPC first, then the same request over HTTP.
        fields = self.signer.fields()
        tle, _ = self.grpc_create(stub, as_message(self.stubs, fields))
        response = self.http_create(url, as_json(fields))
        assert response.status_code == 409, response.text
        assert response.headers["x-log-index"] == str(tle.log_index), response.headers
        # HTTP first, then the same request over gRPC.
        fields = self.signer.fields()
        response = self.http_create(url, as_json(fields))
        assert response.status_code == 201, response.text
        index = int(response.json()["logIndex"])
        try:
            self.grpc_create(stub, as_message(self.stubs, fields))
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e
            assert e.details() == response_409_message(index), e.details()
            trailing = dict(e.trailing_metadata())
            assert trailing.get("x-log-index") == str(index), trailing
            status = self.stubs.rpc_status.Status.FromString(trailing["grpc-status-details-bin"])
            assert status.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
            info = self.stubs.error_details.ErrorInfo()
            assert status.details[0].Unpack(info), status.details
            assert info.reason == "DUPLICATE_ENTRY" and info.metadata["log_index"] == str(index), info
        else:
            raise AssertionError("duplicate accepted over gRPC")

    def bad_requests(self) -> None:
        """harness.py's bad-request table, in the forms protobuf can carry, over both protocols."""

        def flip(f):
            sig = bytearray(f["signature"])
            sig[-1] ^= 1
            f["signature"] = bytes(sig)

        cert_pem = self.signer.cert.public_bytes(serialization.Encoding.PEM)
        invalid = "invalid hashedrekord request"
        cases = {
            "signature byte changed": (flip, invalid),
            "digest cut to 31 bytes": (lambda f: f.__setitem__("digest", f["digest"][:31]), invalid),
            "PEM certificate": (lambda f: f.__setitem__("cert", cert_pem), invalid),
            "SPKI as certificate": (lambda f: f.__setitem__("cert", self.signer.spki), invalid),
            "PKIX_ED25519 with a P-256 certificate": (
                lambda f: f.__setitem__("key_details", "PKIX_ED25519"),
                invalid,
            ),
            "public key verifier, wrong key": (
                lambda f: f.__setitem__("public_key", Signer().spki),
                invalid,
            ),
            "unknown key details number": (lambda f: f.__setitem__("key_details", 99), invalid),
            "empty request": (None, "invalid type, must be hashedrekord"),
        }
        stub, url = self.rekor[0], self.http[0]
        for name, (mutate, message) in cases.items():
            fields = None
            if mutate is not None:
                fields = self.signer.fields()
                mutate(fields)
            try:
                self.grpc_create(stub, as_message(self.stubs, fields))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {e.code()}"
                assert e.details() == message, f"{name}: {e.details()}"
            else:
                raise AssertionError(f"bad request accepted over gRPC: {name}")
            body = as_json(fields)
            if isinstance(fields and fields["key_details"], int):
                body["hashedRekordRequestV002"]["signature"]["verifier"]["keyDetails"] = fields["key_details"]
            response = self.http_create(url, body)
            assert response.status_code == 400, f"{name}: HTTP {response.status_code}"
            assert response.json()["message"] == message, f"{name}: {response.text}"

        # Legacy DSSE is off: the same refusal as an empty request.
        request = self.stubs.entry.CreateEntryRequest()
        request.dsse_request_v002.envelope.payload = b"{}"
        try:
            self.grpc_create(stub, request)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
            assert e.details() == "invalid type, must be hashedrekord", e.details()
        else:
            raise AssertionError("dsse accepted with legacy DSSE off")

        # Over the message cap (the HTTP body cap): refused before it is decoded.
        big = as_message(self.stubs, self.signer.fields())
        big.hashed_rekord_request_v002.signature.verifier.x509_certificate.raw_bytes = b"\0" * (5 * 1024 * 1024)
        try:
            self.grpc_create(stub, big)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED), e
        else:
            raise AssertionError("a 5 MiB message was accepted")

    def reads(self) -> None:
        from google.protobuf import empty_pb2

        for stub, channel_url in zip(self.rekor, self.http * len(self.rekor)):
            # The checkpoint changes while entries land: compare a read of each protocol that
            # agree, within a few tries.
            for attempt in range(20):
                got = stub.GetCheckpoint(empty_pb2.Empty(), timeout=TIMEOUT)
                want = requests.get(f"{channel_url}/api/v2/checkpoint", timeout=TIMEOUT)
                assert want.status_code == 200, want.text
                if got.data == want.content:
                    break
                time.sleep(0.25)
            else:
                raise AssertionError(f"GetCheckpoint never matched: {got.data!r} vs {want.content!r}")
            assert got.content_type == "text/plain; charset=utf-8", got.content_type
            _, size, _ = checkpoint_parts(got.data.decode())
            assert size > 0
            full, partial = divmod(min(size, 256 * 3), 256)
            tiles = [(0, f"{i:03d}") for i in range(full)]
            if partial and size < 256 * 3:
                tiles.append((0, f"{full:03d}.p/{partial}"))
            for level, n in tiles:
                tile = stub.GetTile(self.stubs.service.TileRequest(L=level, N=n), timeout=TIMEOUT)
                http_tile = requests.get(f"{channel_url}/api/v2/tile/{level}/{n}", timeout=TIMEOUT)
                assert http_tile.status_code == 200, (n, http_tile.status_code)
                assert tile.data == http_tile.content, f"tile {level}/{n} differs"
                assert tile.content_type == "application/octet-stream"
                bundle = stub.GetEntryBundle(self.stubs.service.EntryBundleRequest(N=n), timeout=TIMEOUT)
                http_bundle = requests.get(f"{channel_url}/api/v2/tile/entries/{n}", timeout=TIMEOUT)
                assert http_bundle.status_code == 200, (n, http_bundle.status_code)
                assert bundle.data == http_bundle.content, f"bundle {n} differs"
        stub = self.rekor[0]
        for call, request, code in [
            (stub.GetTile, self.stubs.service.TileRequest(L=0, N="x999/999"), grpc.StatusCode.NOT_FOUND),
            (stub.GetEntryBundle, self.stubs.service.EntryBundleRequest(N="x999/999"), grpc.StatusCode.NOT_FOUND),
            (stub.GetTile, self.stubs.service.TileRequest(L=0, N="../000"), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.GetTile, self.stubs.service.TileRequest(L=99, N="000"), grpc.StatusCode.INVALID_ARGUMENT),
            (stub.GetEntryBundle, self.stubs.service.EntryBundleRequest(N="0" * 100), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            try:
                call(request, timeout=TIMEOUT)
            except grpc.RpcError as e:
                assert e.code() == code, f"{request}: {e.code()}"
            else:
                raise AssertionError(f"{request} answered")

    def health(self) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        want = health_pb2.HealthCheckResponse.SERVING
        if self.args.expect_not_serving:
            want = health_pb2.HealthCheckResponse.NOT_SERVING
        for channel in self.channels:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            for service in ("", SERVICE):
                while True:
                    status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT).status
                    if status == want or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert status == want, (service, status)
            try:
                health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
            else:
                raise AssertionError("health answered for an unknown service")

    def plaintext_refused(self) -> None:
        """With --ca: the listener speaks TLS only; a plaintext client gets no answer."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(self.args.grpc[0]) as channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e
            else:
                raise AssertionError("a plaintext client was answered on the TLS listener")

    def reflection(self) -> None:
        from google.protobuf.descriptor_pool import DescriptorPool
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
        from grpc_reflection.v1alpha import reflection_pb2

        channel = self.channels[0]
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        for expected in (
            SERVICE,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ):
            assert expected in services, services
        # v1 speaks the same messages as v1alpha under another method name.
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        answers = list(
            v1(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT)
        )
        v1_services = {s.name for s in answers[0].list_services_response.service}
        assert v1_services == services, (v1_services, services)
        answers = list(
            v1(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]), timeout=TIMEOUT)
        )
        assert answers[0].file_descriptor_response.file_descriptor_proto, answers[0]
        if self.args.upstream_table:
            compare_with_upstream(DescriptorPool(database), json.loads(Path(self.args.upstream_table).read_text()))


def response_409_message(index: int) -> str:
    return f"an equivalent entry already exists in the transparency log with index {index}"


SCALAR_TYPES = {
    "double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "fixed64": 6, "fixed32": 7,
    "bool": 8, "string": 9, "bytes": 12, "uint32": 13, "sfixed32": 15, "sfixed64": 16,
    "sint32": 17, "sint64": 18,
}


def compare_with_upstream(pool, table: dict) -> None:
    """Every service, method, message, field, oneof and enum value of the table, with the same
    names, numbers and types, and nothing more, in what reflection returned."""
    problems = []
    for name, service in table["services"].items():
        desc = pool.FindServiceByName(name)
        ours = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in desc.methods}
        theirs = {m: (v["input"], v["output"]) for m, v in service["methods"].items()}
        if ours != theirs:
            problems.append(f"service {name}: ours {ours} upstream {theirs}")
    for name, message in table["messages"].items():
        desc = pool.FindMessageTypeByName(name)
        ours = {}
        for field in desc.fields:
            if field.message_type is not None:
                typ = field.message_type.full_name
            elif field.enum_type is not None:
                typ = field.enum_type.full_name
            else:
                typ = next(k for k, v in SCALAR_TYPES.items() if v == field.type)
            repeated = field.is_repeated
            ours[field.name] = (field.number, typ, repeated)
        theirs = {
            f: (v["number"], v["type"], v["label"] == "repeated") for f, v in message["fields"].items()
        }
        if ours != theirs:
            problems.append(f"message {name}: ours {ours} upstream {theirs}")
        our_oneofs = {o.name: [f.name for f in o.fields] for o in desc.oneofs if not o.name.startswith("_")}
        if our_oneofs != message["oneofs"]:
            problems.append(f"oneofs of {name}: ours {our_oneofs} upstream {message['oneofs']}")
    for name, enum in table["enums"].items():
        desc = pool.FindEnumTypeByName(name)
        ours = {v.name: v.number for v in desc.values}
        if ours != enum["values"]:
            problems.append(f"enum {name}: ours {ours} upstream {enum['values']}")
    assert not problems, "\n".join(problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proto-dir", required=True, type=Path)
    parser.add_argument("--grpc", action="append", required=True, help="host:port of a gRPC listener")
    parser.add_argument("--http", action="append", default=[], help="base URL of an HTTP listener")
    parser.add_argument("--upstream-table", help="testdata/upstream-grpc/rekor-v2.json")
    parser.add_argument("--ca", help="PEM CA bundle: connect with TLS trusting it")
    parser.add_argument("--tls-name", help="server name to verify instead of the target host")
    parser.add_argument("--entries", type=int, default=3, help="submission rounds per target")
    parser.add_argument("--only", help="comma-separated checks to run (default: all)")
    parser.add_argument("--expect-not-serving", action="store_true", help="health must be NOT_SERVING")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        generate_stubs(args.proto_dir.resolve(), Path(tmp))
        stubs = Stubs(Path(tmp))
        checker = Check(args, stubs)
        checks = {
            "health": checker.health,
            "submit": checker.submit,
            "duplicates": checker.duplicates,
            "bad requests": checker.bad_requests,
            "reads": checker.reads,
            "reflection": checker.reflection,
        }
        if args.ca:
            checks["plaintext refused"] = checker.plaintext_refused
        wanted = set(args.only.split(",")) if args.only else set(checks)
        if args.ca:
            wanted.add("plaintext refused")
        unknown = wanted - set(checks)
        if unknown:
            raise SystemExit(f"unknown checks: {unknown}")
        if not args.http and wanted & {"submit", "duplicates", "bad requests", "reads"}:
            raise SystemExit("these checks compare with HTTP: give --http")
        for name, fn in checks.items():
            if name in wanted:
                check(name, fn)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed", flush=True)
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
