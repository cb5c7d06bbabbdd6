"""Real redis server for the test suite, on a free loopback port."""
