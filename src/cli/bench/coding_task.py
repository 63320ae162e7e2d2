# agentao's CodingTask as a Python SDK class (bittensor 10.5.0): the original subnet's three
# fields, ours with defaults, and the fields the signed body hash covers. The Python axon of
# `bench axon` serves it, and the tests' Python neurons (tests/it/subnet.rs) speak it.
import typing
import bittensor as bt
class CodingTask(bt.Synapse):
    required_hash_fields: typing.ClassVar[tuple[str, ...]] = (
        "repo", "problem_statement", "task_id", "version", "hints", "time_limit", "spec_hash")
    repo: str = ""
    problem_statement: str = ""
    patch: typing.Optional[str] = ""
    task_id: str = ""
    version: str = ""
    hints: str = ""
    time_limit: float = 0.0
    agent_name: str = ""
    spec: typing.Optional[dict] = None
    spec_hash: str = ""
    bundle: str = ""
