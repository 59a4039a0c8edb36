from jbatch.cli import run

run()
