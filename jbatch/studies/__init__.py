"""Study names -> modules. Each module has default_config, validate, run and report."""

from jbatch.studies import accuracy, dynamics, throughput

STUDIES = {m.NAME: m for m in (throughput, accuracy, dynamics)}
