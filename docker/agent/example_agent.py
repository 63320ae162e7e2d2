"""An example agent file for agentao's agents-as-code mining.

Validators call agent_main(input) inside the task's sandbox, with the repository at
input["repo_path"] and a model reachable only through the proxy at input["proxy_url"]
(OpenAI chat completions; OPENAI_BASE_URL is set too). It returns a unified diff.
Standard library only (plus the base image's pinned packages).
"""

import json
import subprocess
import urllib.error
import urllib.request


def chat(url, model, messages):
    body = json.dumps({"model": model, "messages": messages, "max_tokens": 512}).encode()
    request = urllib.request.Request(
        url + "/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as answer:
        return json.load(answer)["choices"][0]["message"]["content"] or ""


def diff_in(text):
    if "```" in text:
        text = text.split("```", 2)[1]
        if text.startswith("diff"):
            text = text[len("diff"):]
    return text.lstrip("\n")


def agent_main(input):
    repo = input["repo_path"]
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=repo, capture_output=True, text=True
    ).stdout.split()
    messages = [
        {"role": "system", "content": "You fix bugs. Answer with one unified diff in a ```diff fence."},
        {"role": "user", "content": input["problem_statement"] + "\n\nFiles:\n" + "\n".join(files[:200])},
    ]
    for _ in range(3):
        try:
            reply = chat(input["proxy_url"], input["model"], messages)
        except urllib.error.HTTPError as e:  # 429: the run's budget or rate is spent
            if e.code == 429:
                break
            raise
        applied = subprocess.run(
            ["git", "apply", "-"], input=diff_in(reply), text=True, cwd=repo, capture_output=True
        )
        if applied.returncode == 0:
            break
        messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": "That did not apply: " + applied.stderr[-500:]})
    return subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True).stdout
