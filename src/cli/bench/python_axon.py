# The Python SDK's axon serving CodingTask (defined just before this, from coding_task.py) on
# loopback: `bench axon` measures against it. Arguments: wallets directory, port.
import sys, time
import bittensor.utils.networking as net
net.get_external_ip = lambda: "127.0.0.1"
def forward(s: CodingTask) -> CodingTask:
    s.patch = "patch for " + s.repo
    return s
w = bt.Wallet(name="axon", hotkey="default", path=sys.argv[1])
ax = bt.Axon(wallet=w, port=int(sys.argv[2]), ip="127.0.0.1", external_ip="127.0.0.1")
ax.attach(forward_fn=forward)
ax.start()
time.sleep(3600)
