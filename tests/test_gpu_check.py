"""scripts/gpu_check.py's plumbing on the CPU (no GPU here): tiny sizes, every section."""

import json
import subprocess
import sys

from conftest import REPO


def test_gpu_check_plumbing_on_the_cpu(tmp_path):
  out = tmp_path / "section.md"
  proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device_kind=cpu", "--tiny",
                         f"--workdir={tmp_path / 'run'}", f"--out={out}"],
                        cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  section = out.read_text()
  assert section.startswith("## GPU check: cpu (cpu)") and "jax " in section.splitlines()[2]
  for part in ("### Throughput", "torch_eager / jax_fused (cpu)", "Largest batch",
               "### Determinism", "### Critical batch", "Every trial",
               "### MobileNetV2 224x224", "### Per-example gradient norms", "jax_fast"):
    assert part in section, part
  with open(tmp_path / "run" / "mobilenet224" / "results.jsonl") as f:
    mobile = [json.loads(line) for line in f]
  assert {(r["variant"], r["model"], r["precision"], r["status"]) for r in mobile} == {
      ("jax_fused", "cnn", "bfloat16", "ok"),  # --tiny: a small CNN stands in
      ("torch_eager", "cnn", "bfloat16", "ok")}
  assert [r["torch_autocast"] for r in mobile if r["framework"] == "torch"] == [True]
  assert section == proc.stdout.rstrip("\n") + "\n" or section.rstrip() in proc.stdout


def test_gpu_check_without_the_device_says_so_and_exits_0(tmp_path):
  proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device_kind=tpu",
                         f"--workdir={tmp_path / 'run'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0
  assert proc.stdout.strip() == "gpu_check: no tpu device on this machine; nothing to check"
  assert not (tmp_path / "run").exists()
