"""Real backend servers (etcd, ...) started by the test suite on free loopback ports."""
