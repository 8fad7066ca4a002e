"""Images: content-addressed names, builds, and the contract checks on images."""
