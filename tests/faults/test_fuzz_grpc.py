"""Hostile gRPC input: for every RPC of both services, hypothesis builds request messages from the proto
descriptors (fields missing or set, out-of-range and non-finite numbers, huge and odd strings, unknown enum
values, nested messages, repeated fields) and calls the real servers. Every call must end OK or with a
client-error status that carries a message; never INTERNAL/UNKNOWN (a crash), never a hang, and the servers
keep serving. Messages over the 64 MiB limit are refused with RESOURCE_EXHAUSTED.

``FUZZ_EXAMPLES`` sets the examples per RPC (as for the REST fuzz); ``FUZZ_AUTH=user`` runs it with users and
roles on (every call with a user's key; PERMISSION_DENIED is then a client error too).
"""

from __future__ import annotations

import os

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aragora.training.v1 import exporter_pb2, trainer_pb2
from services.common.grpc_server import MAX_MESSAGE_BYTES
from tests.faults.conftest import FUZZ_AUTH, BackgroundBackends, auth_settings, fuzz_auth

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE}
if FUZZ_AUTH:
    CLIENT_ERRORS |= {grpc.StatusCode.PERMISSION_DENIED}
METADATA: tuple = ()
HUGE = "x" * 1_000_000
ODD = ["", " ", "..", "../../etc/passwd", "/etc/passwd", "%2e%2e/x", "a\x00b", "\u202e\ufeff", "job-" + "0" * 16,
       "'; DROP TABLE jobs; --", "{}", "null"]

_INT_RANGES = {FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_SINT32: (-2**31, 2**31 - 1),
               FD.TYPE_SFIXED32: (-2**31, 2**31 - 1), FD.TYPE_INT64: (-2**63, 2**63 - 1),
               FD.TYPE_SINT64: (-2**63, 2**63 - 1), FD.TYPE_SFIXED64: (-2**63, 2**63 - 1),
               FD.TYPE_UINT32: (0, 2**32 - 1), FD.TYPE_FIXED32: (0, 2**32 - 1), FD.TYPE_UINT64: (0, 2**64 - 1),
               FD.TYPE_FIXED64: (0, 2**64 - 1)}


def scalar(field) -> st.SearchStrategy:
    t = field.type
    if t == FD.TYPE_STRING:
        return st.one_of(st.text(max_size=40), st.sampled_from(ODD), st.just(HUGE))
    if t == FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(HUGE.encode()), st.just(b"\xff\xfe{not json"))
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        width = 64 if t == FD.TYPE_DOUBLE else 32
        return st.one_of(st.floats(width=width), st.sampled_from([0.0, -1.0, 1e308 if width == 64 else 3e38,
                                                                   float("nan"), float("inf"), -float("inf")]))
    if t == FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 2**31 - 1))  # unknown values included
    lo, hi = _INT_RANGES[t]
    return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, -1 if lo < 0 else 1]))


def message(descriptor, depth: int = 0) -> st.SearchStrategy:
    """A strategy for messages of ``descriptor``: each field missing or set to a hostile value."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(lambda s, n: _make(descriptor, {"seconds": s, "nanos": n}),
                         st.integers(-62135596800, 253402300799), st.integers(0, 999_999_999))
    parts = {}
    for field in descriptor.fields:
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                key = scalar(field.message_type.fields_by_name["key"])
                vf = field.message_type.fields_by_name["value"]
                value = message(vf.message_type, depth + 1) if vf.message_type else scalar(vf)
                inner = st.dictionaries(key, value, max_size=3)
            elif depth >= 2:
                continue
            else:
                inner = message(field.message_type, depth + 1)
                if field.is_repeated:
                    inner = st.lists(inner, max_size=2)
        else:
            inner = scalar(field)
            if field.is_repeated:
                inner = st.lists(inner, max_size=3)
        parts[field.name] = st.one_of(st.none(), inner)
    return st.fixed_dictionaries(parts).map(lambda values: _make(descriptor, values))


def _make(descriptor, values: dict):
    from google.protobuf import message_factory

    msg = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        if value is None:
            continue
        field = descriptor.fields_by_name[name]
        target = getattr(msg, name) if field.message_type is not None or field.is_repeated else None
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for k, v in value.items():
                if field.message_type.fields_by_name["value"].message_type is not None:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            if field.message_type is not None:
                for v in value:
                    target.add().CopyFrom(v)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    global METADATA
    root = tmp_path_factory.mktemp("fuzz-grpc")
    url, key = fuzz_auth(root)
    exporter_extra, trainer_extra = auth_settings(url)
    backends = BackgroundBackends(root, exporter_extra=exporter_extra, **trainer_extra)
    METADATA = (("authorization", f"Bearer {key}"),) if key else ()
    yield backends
    backends.close()


def _services() -> dict[str, tuple]:
    """Every service of every proto file in the contract (a new service or RPC is fuzzed without an edit here):
    name -> (pb2 module, pb2_grpc module). The exporter serves ExporterService; the trainer serves the rest."""
    import importlib
    import pkgutil

    import aragora.training.v1 as contract

    found = {}
    for info in pkgutil.iter_modules(contract.__path__):
        if info.name.endswith("_pb2"):
            pb2 = importlib.import_module(f"{contract.__name__}.{info.name}")
            grpc_mod = importlib.import_module(f"{contract.__name__}.{info.name}_grpc")
            for name in pb2.DESCRIPTOR.services_by_name:
                found[name] = (pb2, grpc_mod)
    return found


SERVICES = _services()
RPCS = [(svc, m.name) for svc, (pb2, _) in sorted(SERVICES.items())
        for m in pb2.DESCRIPTOR.services_by_name[svc].methods]


def test_every_service_of_the_contract_is_fuzzed():
    assert {"ExporterService", "TrainerService", "InferenceService", "ModelExportService"} <= set(SERVICES)


def _stub(servers, service: str):
    address = servers.exporter.address if service == "ExporterService" else servers.trainer.address
    channel = grpc.insecure_channel(address)
    return channel, getattr(SERVICES[service][1], f"{service}Stub")(channel)


@pytest.mark.parametrize(("service", "rpc"), RPCS, ids=[f"{s}.{r}" for s, r in RPCS])
def test_every_rpc_answers_hostile_requests_with_a_status(servers, service, rpc):
    pb2 = SERVICES[service][0]
    method = pb2.DESCRIPTOR.services_by_name[service].methods_by_name[rpc]
    channel, stub = _stub(servers, service)
    call = getattr(stub, rpc)
    requests = message(method.input_type)
    if method.client_streaming:
        requests = st.lists(requests, max_size=4)

    @given(request=requests)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(request):
        try:
            if method.client_streaming:
                call(iter(request), timeout=20, metadata=METADATA)
            elif method.server_streaming:
                stream = call(request, timeout=20, metadata=METADATA)
                for n, _ in enumerate(stream):
                    if n >= 3:  # a live watch never ends by itself; a few messages prove it works
                        stream.cancel()
                        break
            else:
                call(request, timeout=20, metadata=METADATA)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and method.server_streaming:
                return  # our own cancel
            assert exc.code() in CLIENT_ERRORS, f"{rpc}: {exc.code().name}: {exc.details()}"
            assert exc.details(), f"{rpc}: {exc.code().name} without a message"

    try:
        check()
    finally:
        channel.close()
    for address in (servers.exporter.address, servers.trainer.address):
        with grpc.insecure_channel(address) as ch:
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_message_over_the_size_limit_is_refused(servers):
    channel, stub = _stub(servers, "TrainerService")
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateJob(trainer_pb2.CreateJobRequest(name="x" * (MAX_MESSAGE_BYTES + 1)), timeout=60,
                           metadata=METADATA)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Just under the limit is read, and refused for what it says, not for its size.
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateJob(trainer_pb2.CreateJobRequest(name="x" * (MAX_MESSAGE_BYTES - 1024)), timeout=60,
                           metadata=METADATA)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in err.value.details()
    channel, stub = _stub(servers, "ExporterService")
    with channel:
        big = exporter_pb2.ImportDebatesRequest(record_json="x" * (MAX_MESSAGE_BYTES + 1))
        with pytest.raises(grpc.RpcError) as err:
            stub.ImportDebates(iter([big]), timeout=60, metadata=METADATA)
        # (A role below admin may import nothing: refused before the message is read.)
        allowed = {grpc.StatusCode.RESOURCE_EXHAUSTED} | (
            {grpc.StatusCode.PERMISSION_DENIED} if FUZZ_AUTH not in ("", "admin") else set())
        assert err.value.code() in allowed
