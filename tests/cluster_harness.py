"""A two-node Ray test cluster (ray.cluster_utils.Cluster) that runs `whisper-gl transcribe --ray`
and disturbs it: run by tests/test_cluster.py inside a loopback-only network namespace.

    unshare -rn sh -c 'ip link set lo up && exec python tests/cluster_harness.py STEPS.json RESULTS.json'

STEPS.json: a list of steps, each {"args": [...transcribe arguments, without --ray...], and
optionally "add_worker": true (a worker node joins first, if none is there), "remove_worker_after":
N (once the ledger has N lines and the worker node runs an actor, the node is killed with all its
processes) or "terminate_after": N (ledger lines: the driver gets SIGTERM)}. RESULTS.json: per
step, its exit code, stdout and stderr, the ledger's length when it was disturbed, and the
ledger's lines when it ended.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from ray.cluster_utils import Cluster

# Logical CPUs, more than the machine's 2 cores: Ray Data must never wait for a CPU that an
# actor holds (the tests' actors reserve a fraction of one each).
NODE_CPUS = 4
LEDGER = ".whisper-gl-done.jsonl"


def ledger(args: list[str]) -> list[str]:
    """The lines of the ledger of the run with these arguments."""
    path = Path(args[args.index("--output-dir") + 1]) / LEDGER
    return path.read_text().splitlines() if path.is_file() else []


class TestCluster:
    """A head node and at most one worker node, both on this machine."""

    def __init__(self):
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": NODE_CPUS})
        self.worker = None
        self.add_worker()

    def add_worker(self) -> None:
        if self.worker is None:
            self.worker = self.cluster.add_node(num_cpus=NODE_CPUS)
            self.cluster.wait_for_nodes()

    def remove_worker(self) -> None:
        self.cluster.remove_node(self.worker, allow_graceful=False)  # SIGKILL: a machine that dies
        self.worker = None

    def worker_runs_an_actor(self) -> bool:
        """An engine actor (a child of the worker node's raylet, titled after its class) is up there."""
        raylet = psutil.Process(self.worker.all_processes["raylet"][0].process.pid)
        titles = []
        for child in raylet.children(recursive=True):
            try:
                titles.append(" ".join(child.cmdline()))
            except psutil.Error:  # ended meanwhile
                continue
        return any("TranscribeActor" in title for title in titles)

    def run_step(self, step: dict) -> dict:
        if step.get("add_worker"):
            self.add_worker()
        command = [sys.executable, "-m", "whisper_gl", "transcribe", *step["args"], "--ray", self.cluster.address]
        driver = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        seen = None
        for event, ready, act in (("remove_worker_after", self.worker_runs_an_actor, self.remove_worker),
                                  ("terminate_after", lambda: True, lambda: driver.send_signal(signal.SIGTERM))):
            if event in step:
                while driver.poll() is None and (len(ledger(step["args"])) < step[event] or not ready()):
                    time.sleep(0.05)
                seen = len(ledger(step["args"]))
                if driver.poll() is None:
                    act()
        stdout, stderr = driver.communicate(timeout=600)
        return {"returncode": driver.returncode, "stdout": stdout, "stderr": stderr, "disturbed_at": seen,
                "ledger": ledger(step["args"])}


def main(steps_file: str, results_file: str) -> None:
    cluster, results = TestCluster(), []
    try:
        for step in json.loads(Path(steps_file).read_text()):
            results.append(cluster.run_step(step))
            Path(results_file).write_text(json.dumps(results))
    finally:
        cluster.cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
