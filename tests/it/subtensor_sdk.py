"""The Python Bittensor SDK's side of the subtensor tests (run in the bittensor 10.5.0 venv).

Reads a JSON request on stdin, answers JSON on stdout. Every answer comes from the SDK's own
code: async_substrate_interface's compose_call / generate_signature_payload /
create_signed_extrinsic and StorageKey, cyscale's decoders, bt_decode and bittensor_wallet.

  {"op": "keys", ...}        storage keys the SDK would read for set_weights
  {"op": "extrinsic", ...}   the SDK's extrinsic for the same call (`call_function`,
                             set_weights by default) with our signature, and
                             whether our signature verifies over the SDK's payload
  {"op": "neurons", ...}     bt_decode's reading of a get_neurons_lite answer
  {"op": "commit", ...}      the SDK's commit_timelocked_weights_extrinsic (bittensor-drand
                             2.0.0 inside) run on a given epoch schedule, its call's
                             arguments, and what bittensor-drand decrypts from its commit
                             and from ours with a published drand round signature
  {"op": "reveal_round", ...} bittensor-drand's reveal round for an epoch schedule, with the
                             clock read just before and just after
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
    wanted.update(req.get("extra", {}))
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


DRAND_GENESIS, DRAND_PERIOD = 1692803367, 3


def scale_bytes(data):
    """SCALE Vec<u8>: compact length, then the bytes."""
    n = len(data)
    if n < 1 << 6:
        prefix = bytes([n << 2])
    elif n < 1 << 14:
        prefix = ((n << 2) | 1).to_bytes(2, "little")
    else:
        prefix = ((n << 2) | 2).to_bytes(4, "little")
    return prefix + data


def open_commit(commit, round_, signature):
    """bittensor-drand's decryption of a raw commit (it takes the commit with its round)."""
    import bittensor_drand

    wrapped = scale_bytes(commit) + round_.to_bytes(8, "little")
    return bittensor_drand.decrypt_with_signature(wrapped, signature)


def schedule(req):
    from bittensor.core.types import EpochScheduleState

    return EpochScheduleState(**req["state"])


def commit(req):
    """The SDK's own commit path on a scripted chain state; the clock is the SDK's, so the
    block time is chosen to land on `target_round`, whose signature is public."""
    import time
    from bittensor.core.extrinsics.weights import commit_timelocked_weights_extrinsic
    from bittensor.core.types import ExtrinsicResponse

    fake = runtime(req)
    captured = {}

    def sign_and_send_extrinsic(call, **_kw):
        captured["call"] = call
        return ExtrinsicResponse(True, "captured")

    subtensor = SimpleNamespace(
        get_current_block=lambda: req["state"]["current_block"],
        get_subnet_hyperparameters=lambda netuid, block=None: SimpleNamespace(
            commit_reveal_period=req["reveal_period"]
        ),
        get_epoch_schedule_state=lambda netuid, block=None: schedule(req),
        compose_call=lambda call_module, call_function, call_params, **_k: (
            SubstrateInterface.compose_call(fake, call_module, call_function, call_params)
        ),
        sign_and_send_extrinsic=sign_and_send_extrinsic,
    )
    hotkey = Keypair.create_from_mnemonic(req["phrase"])
    wallet = SimpleNamespace(hotkey=hotkey, unlock_hotkey=lambda: None)
    target = DRAND_GENESIS + DRAND_PERIOD * req["target_round"] + DRAND_PERIOD / 2
    block_time = (target - time.time()) / req["blocks_until_ingest"]
    response = commit_timelocked_weights_extrinsic(
        subtensor, wallet, req["netuid"], req["mechid"], req["uids"], req["weights"],
        block_time=block_time, version_key=req["version_key"], raise_error=True,
    )
    assert response.success, response.message
    call = captured["call"]
    args = call.value["call_args"]
    if isinstance(args, list):
        args = {a["name"]: a["value"] for a in args}
    sdk_commit = args["commit"]
    if isinstance(sdk_commit, str):
        sdk_commit = bytes.fromhex(sdk_commit.removeprefix("0x"))
    ours = bytes.fromhex(req["our_commit"][2:])
    sig = req["signature"]
    return {
        "call_function": call.value["call_function"],
        "netuid": args["netuid"],
        "mecid": args["mecid"],
        "reveal_round": args["reveal_round"],
        "commit_reveal_version": args["commit_reveal_version"],
        "sdk_plaintext": "0x" + open_commit(sdk_commit, args["reveal_round"], sig).hex(),
        "our_plaintext": "0x" + open_commit(ours, req["target_round"], sig).hex(),
    }


def reveal_round(req):
    """bittensor-drand's round for a schedule (the commit itself is thrown away)."""
    import time
    import bittensor_drand

    st = req["state"]
    before = time.time()
    _, round_ = bittensor_drand.get_encrypted_commit_v2(
        [0], [65535], 0, st["last_epoch_block"], st["pending_epoch_at"],
        st["subnet_epoch_index"], st["tempo"], st["blocks_since_last_step"],
        st["current_block"], req["reveal_period"], req["block_time"], bytes(32),
    )
    return {"round": round_, "before": before, "after": time.time()}


if __name__ == "__main__":
    req = json.load(sys.stdin)
    ops = {"keys": keys, "extrinsic": extrinsic, "neurons": neurons, "commit": commit,
           "reveal_round": reveal_round}
    print(json.dumps(ops[req["op"]](req)))
