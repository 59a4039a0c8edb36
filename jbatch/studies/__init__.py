"""Study names -> modules. Each module has default_config, validate, run and report."""

from jbatch.studies import accuracy, critical_batch, determinism, dynamics, loader, throughput

STUDIES = {m.NAME: m for m in (throughput, accuracy, dynamics, loader, determinism,
                               critical_batch)}
