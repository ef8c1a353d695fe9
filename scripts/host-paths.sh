#!/bin/sh
# The host paths Debian's own tools make on their first use, made once by
# `make deps` (and by tests/conftest.py before its snapshot), so that the
# test that happens to be first on a fresh machine is not blamed for them:
# they are the host's, not a test's, and stay when the suite is done.
set -e
[ "$(id -u)" = 0 ] || exit 0
# libmount (mount(8), umount(8)) keeps its utab here and makes the
# directory the first time it mounts or unmounts anything
mkdir -p -m 0755 /run/mount
# `ip netns add` makes /run/netns a shared bind mount of itself on first
# use, so the namespace files mounted in it are seen by every mount namespace
mkdir -p -m 0755 /run/netns
if ! mountpoint -q /run/netns; then
    mount --bind /run/netns /run/netns
    mount --make-shared /run/netns
fi
