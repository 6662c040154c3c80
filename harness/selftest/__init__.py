"""The kernel's own cgroup selftests (tools/testing/selftests/cgroup) as a kharness suite."""
