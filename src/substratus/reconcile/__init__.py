"""The reconcile core both backends share: pure planners, one `plan_for` over them, actions, typed
state and outcomes, status, the dependency index, the dispatcher, the work queue and its workers.
The local control plane (`substratus.local`) and the Kubernetes operator (`substratus.kube`) differ
only in how they observe the world, look up a referenced object and carry actions out."""
