"""Study names -> modules. Each module has default_config, validate, run and report."""

from jbatch.studies import throughput

STUDIES = {throughput.NAME: throughput}
