"""The tools a person touches: service --help, loadtest option checking, run selection."""
