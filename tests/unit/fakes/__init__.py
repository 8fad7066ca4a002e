"""Fakes shared by the unit tests: a whole local control plane on the fake runtime
(`controlplane`), and a contract-keeping image and server for `sub verify` (`verify`)."""
