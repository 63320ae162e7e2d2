"""agentao's runner of a miner's agent file, inside the task's sandbox.

argv: the agent file, the input JSON file, the result file. Imports the agent as a module,
calls agent_main(input) and writes the string it returns (a unified diff) to the result file.
Anything else it returns, or an exception, is an error: exit 3 with the reason on stderr.
"""

import importlib.util
import json
import sys
import traceback


def main() -> int:
    agent_path, input_path, result_path = sys.argv[1:4]
    with open(input_path, encoding="utf-8") as f:
        agent_input = json.load(f)
    spec = importlib.util.spec_from_file_location("agent", agent_path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        entry = getattr(module, "agent_main", None)
        if not callable(entry):
            print("agentao-runner: the file defines no agent_main(input)", file=sys.stderr)
            return 3
        patch = entry(agent_input)
    except BaseException:  # the agent's own failure, SystemExit included
        traceback.print_exc()
        print("agentao-runner: agent_main raised", file=sys.stderr)
        return 3
    if not isinstance(patch, str):
        print(
            f"agentao-runner: agent_main returned {type(patch).__name__}, not str",
            file=sys.stderr,
        )
        return 3
    with open(result_path, "w", encoding="utf-8") as f:
        f.write(patch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
