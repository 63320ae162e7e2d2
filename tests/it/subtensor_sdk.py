"""The Python Bittensor SDK's side of the subtensor tests (run in the bittensor 10.5.0 venv).

Reads a JSON request on stdin, answers JSON on stdout. Every answer comes from the SDK's own
code: async_substrate_interface's compose_call / generate_signature_payload /
create_signed_extrinsic and StorageKey, cyscale's decoders, bt_decode and bittensor_wallet.

  {"op": "keys", ...}        storage keys the SDK would read for set_weights
  {"op": "extrinsic", ...}   the SDK's extrinsic for the same call (`call_function`,
                             set_weights by default) with our signature, and
                             whether our signature verifies over the SDK's payload
  {"op": "neurons", ...}     bt_decode's reading of a get_neurons_lite answer
"""
import gzip, json, sys
from types import SimpleNamespace

from async_substrate_interface.sync_substrate import SubstrateInterface
from async_substrate_interface.utils.storage import StorageKey
from bittensor_wallet import Keypair
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset
from scalecodec.utils.ss58 import ss58_encode


def runtime(req):
    rc = RuntimeConfigurationObject(ss58_format=42)
    rc.update_type_registry(load_type_registry_preset("core"))
    md = rc.create_scale_object(
        "MetadataVersioned", data=ScaleBytes(gzip.open(req["metadata"]).read())
    )
    md.decode()
    rc.add_portable_registry(md)
    rt = SimpleNamespace(
        metadata=md,
        runtime_config=rc,
        runtime_version=req.get("spec_version", 0),
        transaction_version=req.get("transaction_version", 0),
    )
    # Just enough of a SubstrateInterface for its own methods to run without a node.
    fake = SimpleNamespace(runtime=rt, runtime_config=rc)
    fake.init_runtime = lambda **_: rt
    fake.get_block_hash = lambda block_id=None: (
        req.get("genesis_hash") if block_id == 0 else req.get("birth_hash")
    )
    fake.get_block_number = lambda *_a, **_k: req.get("current")
    fake.get_chain_finalised_head = lambda: req.get("birth_hash")
    return fake


def keys(req):
    fake = runtime(req)
    netuid, hotkey = req["netuid"], req["hotkey"]
    wanted = {
        "Uids": [netuid, hotkey],
        "LastUpdate": [netuid],
        "WeightsSetRateLimit": [netuid],
        "CommitRevealWeightsEnabled": [netuid],
        "WeightsVersionKey": [netuid],
    }
    out = {}
    for name, params in wanted.items():
        key = StorageKey.create_from_storage_function(
            "SubtensorModule", name, params,
            runtime_config=fake.runtime_config, metadata=fake.runtime.metadata,
        )
        out[name] = "0x" + key.data.hex()
    return out


def extrinsic(req):
    fake = runtime(req)
    ours = bytes.fromhex(req["extrinsic"][2:])
    decoded = fake.runtime_config.create_scale_object(
        "Extrinsic", data=ScaleBytes(ours), metadata=fake.runtime.metadata
    )
    decoded.decode()
    v = decoded.value
    signature = bytes.fromhex(v["signature"]["Sr25519"][2:])
    call = SubstrateInterface.compose_call(
        fake, "SubtensorModule", req.get("call_function", "set_weights"), req["call_args"]
    )
    era = {"period": req["period"], "current": req["current"]}
    payload = SubstrateInterface.generate_signature_payload(
        fake, call, era=dict(era), nonce=req["nonce"]
    )
    signer = Keypair(ss58_address=req["hotkey"])
    sdk = SubstrateInterface.create_signed_extrinsic(
        fake, call, signer, era=dict(era), nonce=req["nonce"], signature=signature
    )
    return {
        "sdk_extrinsic": "0x" + bytes(sdk.data.data).hex(),
        "sdk_call": "0x" + bytes(call.data.data).hex(),
        "signature_verifies": signer.verify(bytes(payload.data), signature),
        "decoded": {
            "address": v["address"],
            "nonce": v["nonce"],
            "tip": v["tip"],
            "era": v["era"],
            "call_module": v["call"]["call_module"],
            "call_function": v["call"]["call_function"],
            "call_args": {a["name"]: a["value"] for a in v["call"]["call_args"]},
        },
    }


def neurons(req):
    import bt_decode

    out = []
    for n in bt_decode.NeuronInfoLite.decode_vec(bytes.fromhex(req["bytes"][2:])):
        out.append({
            "hotkey": ss58_encode(bytes(n.hotkey), 42),
            "coldkey": ss58_encode(bytes(n.coldkey), 42),
            "uid": n.uid,
            "netuid": n.netuid,
            "active": n.active,
            "axon_ip": n.axon_info.ip,
            "axon_port": n.axon_info.port,
            "axon_ip_type": n.axon_info.ip_type,
            "stake_rao": sum(s for _, s in n.stake),
            "last_update": n.last_update,
            "validator_permit": n.validator_permit,
            "pruning_score": n.pruning_score,
        })
    return out


if __name__ == "__main__":
    req = json.load(sys.stdin)
    print(json.dumps({"keys": keys, "extrinsic": extrinsic, "neurons": neurons}[req["op"]](req)))
