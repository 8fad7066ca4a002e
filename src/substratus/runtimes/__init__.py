"""Container runtimes behind one interface (`base.Runtime`)."""
