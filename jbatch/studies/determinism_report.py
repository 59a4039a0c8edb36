"""The determinism study's report: ms per step with and without XLA's deterministic ops,
the cost against the default, and whether repeated runs end bit-identical."""

from jbatch.results import report as report_lib



def report(records, workdir):
  out = ["## Determinism: XLA's deterministic ops on and off (S2, seeds/000)", ""]
  done = [r for r in records if r["status"] == "ok"]
  if not done:
    return "\n".join(out + ["No finished points yet."])
  c = done[0]["config"]
  out.append(f"Model `{c['model']}` {c.get(c['model'], '')}, dataset `{c['dataset']}`, "
             f"{c['steps']} steps per run, {c['runs']} runs per mode, each in a new process. "
             "On a CPU, XLA's reductions are deterministic with or without the flag.")
  by = {(r["device_kind"], r["batch_size"], r["mode"]): r for r in done}
  rows = []
  for (kind, b, mode), r in sorted(by.items()):
    base = by.get((kind, b, "default"))
    rows.append([kind, r["device_name"], b, mode, r["step_ms_median"],
                 r["step_ms_median"] / base["step_ms_median"] if base else None,
                 "yes" if r["identical"] else "no", r.get("compile_s"), r["xla_flags"] or "-"])
  out += ["", report_lib.table(["device", "name", "batch", "mode", "ms/step", "vs default",
                                "identical parameters", "compile s (first run)", "XLA_FLAGS"],
                               rows)]
  return "\n".join(out)
