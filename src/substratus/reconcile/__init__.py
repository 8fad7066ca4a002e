"""The reconcile core both backends share: pure planners, actions, typed state and outcomes,
status, the dispatcher and the work queue. The local control plane (`substratus.local`) and the
Kubernetes operator (`substratus.kube`) differ only in how they observe the world, look up
referenced objects and carry actions out."""
